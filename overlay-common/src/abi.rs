//! Map names, keys and values shared by the kernel and userspace sides.

use core::mem::size_of;

/// UDP destination port of VXLAN (IANA, RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// Bytes the encapsulation adds: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const ENCAP_OVERHEAD: u32 = 50;

/// Names of the maps, as declared in overlay-ebpf/src/maps.rs. Userspace checks at load
/// time that the object file defines every one of them.
pub mod map_names {
    pub const CONFIG: &str = "OVL_CONFIG";
    pub const NETWORKS: &str = "OVL_NETWORKS";
    pub const INTERFACES: &str = "OVL_INTERFACES";
    pub const LOCAL_ENDPOINTS: &str = "OVL_LOCAL_EPS";
    pub const REMOTE_ENDPOINTS: &str = "OVL_REMOTE_EPS";
    pub const MEMBERS: &str = "OVL_MEMBERS";
    pub const COUNTERS: &str = "OVL_COUNTERS";
    pub const NET_COUNTERS: &str = "OVL_NET_COUNTS";
    pub const SUBNETS: &str = "OVL_SUBNETS";
    pub const EGRESS: &str = "OVL_EGRESS";
    pub const RESOLVER: &str = "OVL_RESOLVER";

    pub const ALL: [&str; 11] = [
        CONFIG,
        NETWORKS,
        INTERFACES,
        LOCAL_ENDPOINTS,
        REMOTE_ENDPOINTS,
        MEMBERS,
        COUNTERS,
        NET_COUNTERS,
        SUBNETS,
        EGRESS,
        RESOLVER,
    ];
}

/// Names of the TC programs in the agent's object file (the only programs in it).
pub mod program_names {
    /// TC ingress of the host side of a container's veth: packets leaving the container.
    pub const FROM_CONTAINER: &str = "overlay_from_container";
    /// TC ingress of the host's underlay interface: VXLAN arriving from other hosts.
    pub const FROM_UNDERLAY: &str = "overlay_from_underlay";
}

/// Capacity of the maps. Userspace reports a full map as an error naming the limit.
pub mod capacity {
    pub const NETWORKS: u32 = 4096;
    pub const INTERFACES: u32 = 4096;
    pub const LOCAL_ENDPOINTS: u32 = 4096;
    pub const REMOTE_ENDPOINTS: u32 = 65536;
    pub const MEMBERS: u32 = 1024;
    /// Networks whose per-network counters are kept (indexed by a slot, not by VNI).
    pub const NET_COUNTERS: u32 = 4096;
    /// Subnets of the cluster's overlay networks (all of them, not only this host's).
    pub const SUBNETS: u32 = 4096;
}

/// The IPv4 address as a map key/value: its four octets as they are on the wire.
#[inline(always)]
pub const fn ipv4_key(octets: [u8; 4]) -> u32 {
    u32::from_ne_bytes(octets)
}

/// The octets of an address stored with [`ipv4_key`].
#[inline(always)]
pub const fn ipv4_octets(key: u32) -> [u8; 4] {
    key.to_ne_bytes()
}

/// `OVL_CONFIG[0]`: this host's part of the overlay.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// The address this host's VTEP sends from and receives on ([`ipv4_key`]).
    pub vtep_ip: u32,
    /// The interface VXLAN leaves by when the FIB has no better answer.
    pub underlay_ifindex: u32,
}

/// `OVL_NETWORKS[vni]`: an overlay network present on this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Gateway address of the subnet ([`ipv4_key`]); ARP for it is answered with `gateway_mac`.
    pub gateway: u32,
    pub gateway_mac: [u8; 6],
    pub _pad: [u8; 2],
    /// Index into `OVL_NET_COUNTS` for this network's counters.
    pub counter_slot: u32,
}

/// `Interface::counter_slot` while the interface's network is not on this host: its
/// packets are dropped as [`crate::Reason::UnknownVni`].
pub const NO_NETWORK_SLOT: u32 = u32::MAX;

/// `OVL_INTERFACES[ifindex]`: the host side of a local container's veth, with what the
/// container's packets need of its network (a copy of `OVL_NETWORKS[vni]`, kept in step
/// by userspace), so that one lookup serves every packet it sends.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    pub vni: u32,
    /// The only source address the container may send from ([`ipv4_key`]).
    pub ip: u32,
    /// The network's gateway ([`ipv4_key`]); ARP for it is answered with `gateway_mac`.
    pub gateway: u32,
    /// The network's `OVL_NET_COUNTS` slot, or [`NO_NETWORK_SLOT`].
    pub counter_slot: u32,
    pub mac: [u8; 6],
    pub gateway_mac: [u8; 6],
}

/// Key of `OVL_LOCAL_EPS` and `OVL_REMOTE_EPS`: an address within one network.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub vni: u32,
    pub ip: u32,
}

/// `OVL_LOCAL_EPS[(vni, ip)]`: a container on this host. It carries its network's
/// counter slot (a copy of `OVL_NETWORKS[vni].counter_slot`, kept in step by userspace,
/// as [`Interface`] does), so a packet received for it needs no lookup of the network.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalEndpoint {
    /// Host side of the container's veth: packets are redirected to its peer.
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    /// The network's `OVL_NET_COUNTS` slot, or [`NO_NETWORK_SLOT`] while the network is
    /// not on this host.
    pub counter_slot: u32,
}

/// `OVL_REMOTE_EPS[(vni, ip)]`: a container on another host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteEndpoint {
    /// The VTEP of the host it lives on ([`ipv4_key`]).
    pub vtep: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `OVL_RESOLVER[0]`: the host's resolver for Docker containers, in a namespace of its
/// own behind a veth (docs/docker.md). A container's DNS query to `ip` (UDP or TCP port
/// 53) is sent out of the host side `ifindex`, addressed to `mac`; the resolver's answer
/// comes back in through that veth and is delivered to the container that asked.
/// All zero: there is no such resolver.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolverConfig {
    /// The resolver's address, inside its namespace ([`ipv4_key`]); 0: none.
    pub ip: u32,
    /// The host side's address on the same veth ([`ipv4_key`]): the host's own queries
    /// come from it, and answers to it go to the host.
    pub host_ip: u32,
    /// The host side of the veth (where the answers come in).
    pub ifindex: u32,
    /// The MAC of the resolver's side of the veth.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `OVL_MEMBERS[vtep]`: a host allowed to send us VXLAN. The value is reserved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub _reserved: u32,
}

/// `OVL_SUBNETS[prefix]` (an LPM trie keyed by prefix length and [`ipv4_key`]): the
/// subnet of an overlay network of the cluster. A container's packet whose destination
/// is in none of them is off the overlay: it leaves through egress if the container's
/// own subnet has [`Subnet::EGRESS`]. Subnets never overlap (the cluster refuses it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subnet {
    pub vni: u32,
    /// [`Subnet::EGRESS`], or 0 for an internal network.
    pub flags: u32,
}

impl Subnet {
    /// The network reaches addresses off the overlay through its host (not `--internal`).
    pub const EGRESS: u32 = 1;
}

/// `OVL_EGRESS[0]`: the device through which a container's packets for addresses off
/// the overlay enter the host's stack. Not the container's own veth: that is a port of
/// the headroom bridge, which would take the frame and drop it. The packet is
/// redirected to this device's ingress addressed to its MAC, so the stack takes it as
/// received there and routes it. `ifindex` 0: no egress on this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EgressDevice {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// One counter cell: `OVL_COUNTERS[Reason::slot(direction)]` and
/// `OVL_NET_COUNTS[network slot * Direction::COUNT + direction]`, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = {
    assert!(size_of::<HostConfig>() == 8);
    assert!(size_of::<NetworkInfo>() == 16);
    assert!(size_of::<Interface>() == 28);
    assert!(size_of::<EndpointKey>() == 8);
    assert!(size_of::<LocalEndpoint>() == 16);
    assert!(size_of::<RemoteEndpoint>() == 12);
    assert!(size_of::<Member>() == 4);
    assert!(size_of::<Counter>() == 16);
    assert!(size_of::<Subnet>() == 8);
    assert!(size_of::<EgressDevice>() == 12);
    assert!(size_of::<ResolverConfig>() == 20);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)], Copy, made only of integers and byte arrays,
    // with every padding byte an explicit field: any bit pattern is valid.
    unsafe impl aya::Pod for HostConfig {}
    unsafe impl aya::Pod for NetworkInfo {}
    unsafe impl aya::Pod for Interface {}
    unsafe impl aya::Pod for EndpointKey {}
    unsafe impl aya::Pod for LocalEndpoint {}
    unsafe impl aya::Pod for RemoteEndpoint {}
    unsafe impl aya::Pod for Member {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for Subnet {}
    unsafe impl aya::Pod for EgressDevice {}
    unsafe impl aya::Pod for ResolverConfig {}
}
