//! The one definition of the boundary between the eBPF datapath and userspace.
//!
//! Every map key and value is `#[repr(C)]`, has explicit padding fields (the kernel
//! compares keys byte for byte, so uninitialised padding would make lookups miss) and
//! has its size asserted at compile time. IPv4 addresses are stored as they appear on
//! the wire: the four octets reinterpreted as a native `u32` (see [`ipv4_key`]), which
//! is what a kernel-side load from the packet yields.
#![no_std]

pub mod abi;
pub mod reason;

pub use abi::*;
pub use reason::{Direction, Reason};
