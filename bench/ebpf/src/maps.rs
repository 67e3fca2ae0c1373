//! Maps of the benchmark's own programs. None is pinned: the benchmark fills them, and
//! they go with its process.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap},
};
use overlay_bench_common::{BoundHop, FloorHop, TunnelConfig, TunnelEndpoint};

/// The bound's hops (`bound.rs`), by container address.
#[map]
pub static OVL_BOUND_HOPS: HashMap<u32, BoundHop> = HashMap::with_max_entries(64, 0);

/// The floor's hops (`floor.rs`), by container address.
#[map]
pub static OVL_FLOOR_HOPS: HashMap<u32, FloorHop> = HashMap::with_max_entries(64, 0);

/// The Cilium-style path's configuration (`tunnel_peer.rs`).
#[map]
pub static PEER_TUNNEL_CFG: Array<TunnelConfig> = Array::with_max_entries(1, 0);

/// The Cilium-style path's containers, local and remote, by address (`tunnel_peer.rs`).
#[map]
pub static PEER_TUNNEL_EPS: HashMap<u32, TunnelEndpoint> = HashMap::with_max_entries(64, 0);
