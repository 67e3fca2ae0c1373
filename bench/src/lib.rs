//! `cargo xtask bench` (`overlay-bench`) and the experiments measured beside it
//! (`underlay-hook-bench`, `egress-bench`), on the simulated hosts of the tests' harness (overlay-tests).
//! The harness builds labs, hosts, containers and daemons; this crate measures on them,
//! with its own eBPF object for the reference paths (bench/ebpf), which the agent never
//! loads.

pub mod agents;
pub mod datapath;
pub mod dns;
pub mod ebpf;
pub mod encap_floor;
pub mod experiment;
pub mod faults;
pub mod flannel_peer;
pub mod idle;
pub mod ipam;
pub mod links;
pub mod mesh;
pub mod paths;
pub mod program_cost;
pub mod rr;
pub mod tables;
pub mod tunnel_peer;
pub mod veth_bound;
