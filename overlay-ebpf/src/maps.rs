//! Every map that userspace fills or reads. Names and value types come from
//! overlay-common, which userspace uses too; all of them are pinned by name so a
//! restarted agent adopts them. (The next-hop cache, which only the programs use, lives
//! with its code in `next_hop.rs`, and the resolver's askers in `resolver.rs`.)

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use overlay_common::{
    Counter, Direction, EgressDevice, EndpointKey, HostConfig, Interface, LocalEndpoint, Member, NetworkInfo, Reason,
    RemoteEndpoint, ResolverConfig, Subnet, capacity,
};

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

/// Keyed by prefix length and address as on the wire: a lookup of an address finds the
/// overlay subnet that holds it.
#[map]
pub static OVL_SUBNETS: LpmTrie<u32, Subnet> = LpmTrie::pinned(capacity::SUBNETS, 0);

#[map]
pub static OVL_EGRESS: Array<EgressDevice> = Array::pinned(1, 0);

#[map]
pub static OVL_RESOLVER: Array<ResolverConfig> = Array::pinned(1, 0);
