//! Every map of the datapath. Names and value types come from overlay-common, which
//! userspace uses too; all maps are pinned by name so a restarted agent adopts them.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use overlay_common::{
    BoundHop, Counter, Direction, EndpointKey, HostConfig, Interface, LocalEndpoint, Member, NetworkInfo, Reason,
    RemoteEndpoint, capacity,
};

use crate::next_hop::CachedHop;

#[map]
pub static OVL_CONFIG: Array<HostConfig> = Array::pinned(1, 0);

#[map]
pub static OVL_NETWORKS: HashMap<u32, NetworkInfo> = HashMap::pinned(capacity::NETWORKS, 0);

#[map]
pub static OVL_INTERFACES: HashMap<u32, Interface> = HashMap::pinned(capacity::INTERFACES, 0);

#[map]
pub static OVL_LOCAL_EPS: HashMap<EndpointKey, LocalEndpoint> = HashMap::pinned(capacity::LOCAL_ENDPOINTS, 0);

#[map]
pub static OVL_REMOTE_EPS: HashMap<EndpointKey, RemoteEndpoint> = HashMap::pinned(capacity::REMOTE_ENDPOINTS, 0);

#[map]
pub static OVL_MEMBERS: HashMap<u32, Member> = HashMap::pinned(capacity::MEMBERS, 0);

#[map]
pub static OVL_COUNTERS: PerCpuArray<Counter> = PerCpuArray::pinned(Reason::SLOTS * Direction::COUNT, 0);

#[map]
pub static OVL_NET_COUNTS: PerCpuArray<Counter> = PerCpuArray::pinned(capacity::NET_COUNTERS * Direction::COUNT, 0);

/// Next hops to VTEPs (`next_hop.rs`): a cache only this program uses, so not pinned; a
/// reloaded program starts with an empty one.
#[map]
pub static OVL_NEXT_HOPS: LruHashMap<u32, CachedHop> = LruHashMap::with_max_entries(capacity::MEMBERS, 0);

/// EXPERIMENT (`bound.rs`): filled by the benchmark only, so not pinned.
#[map]
pub static OVL_BOUND_HOPS: HashMap<u32, BoundHop> = HashMap::with_max_entries(64, 0);
