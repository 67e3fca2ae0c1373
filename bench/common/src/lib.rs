//! The boundary between the benchmark's eBPF object (`bench/ebpf`) and the benchmark:
//! program and map names, keys and values of the reference paths and experiments the
//! agent never loads. Laid out as overlay-common is: `#[repr(C)]`, explicit padding,
//! sizes asserted at compile time, IPv4 addresses as on the wire.
#![no_std]

use core::mem::size_of;

/// Names of the programs in the benchmark's object.
pub mod program_names {
    /// The bound: veth-attached containers, one redirect each way, no overlay
    /// (see [`super::BoundHop`]).
    pub const BOUND_REDIRECT: &str = "bench_bound_redirect";
    /// The datapath's decapsulation as XDP on the underlay interface, to measure the
    /// hook against TC (`underlay-hook-bench`). It reads the datapath's pinned maps.
    pub const FROM_UNDERLAY_XDP: &str = "overlay_xdp_from_underlay";
}

/// Names of the maps only the benchmark's programs use (not pinned).
pub mod map_names {
    pub const BOUND_HOPS: &str = "OVL_BOUND_HOPS";
}

/// `OVL_BOUND_HOPS[ip]`: where the bound's program sends a packet for container address
/// `ip` with no encapsulation: readdressed to `dmac` from `smac`, then redirected out of
/// `ifindex`, or into its peer's namespace when `to_peer` is 1. It is the least a
/// datapath for veth-attached containers does.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoundHop {
    pub ifindex: u32,
    pub to_peer: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

const _: () = {
    assert!(size_of::<BoundHop>() == 20);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: #[repr(C)], Copy, made only of integers and byte arrays with no padding:
    // any bit pattern is valid.
    unsafe impl aya::Pod for BoundHop {}
}
