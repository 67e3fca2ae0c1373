//! Simulated hosts for integration tests, the demo and the benchmark.
//!
//! A [`lab::Lab`] is a set of network namespaces made by this process: one underlay
//! namespace holding a bridge per L3 subnet, a router namespace when there is more than
//! one subnet, one namespace per host with `eth0` on the underlay, and one namespace per
//! container with `eth0` on a veth to its host. Nothing is connected to the root
//! namespace or the machine's interfaces. Everything is deleted when the lab is dropped,
//! whether the test passed, failed or panicked.

pub mod agent_bench;
pub mod bench;
pub mod bin;
pub mod cluster;
pub mod cmd;
pub mod datapath;
pub mod dns;
pub mod dns_bench;
pub mod dns_load;
pub mod docker;
pub mod etcd;
pub mod ipam;
pub mod ipam_bench;
pub mod kernel_vxlan;
pub mod lab;
pub mod mesh_bench;
pub mod packets;
pub mod scale;
pub mod traffic;
pub mod veth_bound;

pub use lab::{Container, ContainerSpec, Host, Lab};
