//! Simulated hosts for integration tests, the demo and the benchmark (the bench crate,
//! `bench/`, measures on them; nothing here measures).
//!
//! A [`lab::Lab`] is a set of network namespaces made by this process: one underlay
//! namespace holding a bridge per L3 subnet, a router namespace when there is more than
//! one subnet, one namespace per host with `eth0` on the underlay, and one namespace per
//! container with `eth0` on a veth to its host. Nothing is connected to the root
//! namespace or the machine's interfaces. Everything is deleted when the lab is dropped,
//! whether the test passed, failed or panicked.

pub mod cluster;
pub mod cmd;
pub mod datapath;
pub mod dns;
pub mod dns_load;
pub mod docker;
pub mod engine;
pub mod etcd;
pub mod faults;
pub mod ipam;
pub mod kernel_vxlan;
pub mod lab;
pub mod outside;
pub mod overlay_binary;
pub mod packets;
pub mod pki;
pub mod stores;
pub mod traffic;
pub mod zookeeper;

pub use lab::{Container, ContainerSpec, Host, Lab};
