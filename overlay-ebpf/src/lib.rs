//! The overlay datapath's packet paths, one module each, for the agent's object
//! (`main.rs`: its two TC entry points) and for the benchmark's object
//! (`bench/ebpf`), whose experiments reuse these checks and maps but are never part of
//! what the agent loads.
#![no_std]

pub mod arp;
pub mod counters;
pub mod decap;
pub mod egress;
pub mod encap;
pub mod fdb;
pub mod headers;
pub mod local;
pub mod maps;
pub mod next_hop;
pub mod resolver;
pub mod verdict;
