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
    /// Cilium-style tunnel mode, TC ingress of a container's host-side veth: ARP
    /// answered, local delivery, or `bpf_skb_set_tunnel_key` and a redirect to the
    /// collect_md VXLAN device (see [`super::TunnelEndpoint`]).
    pub const TUNNEL_FROM_CONTAINER: &str = "peer_tunnel_from_container";
    /// Cilium-style tunnel mode, TC ingress of the collect_md VXLAN device: the
    /// decapsulated frame delivered with `bpf_redirect_peer`.
    pub const TUNNEL_FROM_OVERLAY: &str = "peer_tunnel_from_overlay";
    /// The floor, TC ingress of a container's host-side veth: the bound plus VXLAN
    /// encapsulation and nothing else (see [`super::FloorHop`]).
    pub const FLOOR_ENCAPSULATE: &str = "bench_floor_encapsulate";
    /// The floor, TC ingress of the underlay: VXLAN on port 4789 decapsulated and
    /// delivered with `bpf_redirect_peer`, nothing checked.
    pub const FLOOR_DECAPSULATE: &str = "bench_floor_decapsulate";
}

/// Names of the maps only the benchmark's programs use (not pinned).
pub mod map_names {
    pub const BOUND_HOPS: &str = "OVL_BOUND_HOPS";
    pub const TUNNEL_CONFIG: &str = "PEER_TUNNEL_CFG";
    pub const TUNNEL_ENDPOINTS: &str = "PEER_TUNNEL_EPS";
    pub const FLOOR_HOPS: &str = "OVL_FLOOR_HOPS";
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

/// `OVL_FLOOR_HOPS[ip]`: where the floor's programs send a packet for container address
/// `ip`. `to_peer` 1: the container is on this host; the decapsulated frame is
/// readdressed to `dmac` from `smac` and goes into the namespace of `ifindex`'s veth
/// peer. `to_peer` 0: it is behind the VTEP `remote_vtep`; the frame is encapsulated in
/// VXLAN `vni` from `local_vtep`, inner destination MAC `inner_dmac`, outer Ethernet
/// `smac` to `dmac`, and redirected out of `ifindex`. One lookup each way, as the
/// bound's, and everything the headers need in it, so the floor does only what every
/// VXLAN datapath in eBPF must: make room, write the headers, redirect.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloorHop {
    pub ifindex: u32,
    pub to_peer: u32,
    pub local_vtep: u32,
    pub remote_vtep: u32,
    pub vni: u32,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    pub inner_dmac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `PEER_TUNNEL_CFG[0]`: the Cilium-style path's host configuration.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelConfig {
    /// The collect_md VXLAN device that encapsulates (`ip link add ... type vxlan external`).
    pub vxlan_ifindex: u32,
    /// The VNI every tunnelled packet carries (Cilium puts the source identity there).
    pub vni: u32,
}

/// `PEER_TUNNEL_EPS[ip]`: a container of the Cilium-style path, on this host (`vtep`
/// 0: behind the host-side veth `ifindex`, whose MAC is `host_mac`) or on the host
/// whose VTEP is `vtep` (like Cilium's endpoint map and ipcache in one table).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelEndpoint {
    pub vtep: u32,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub host_mac: [u8; 6],
}

const _: () = {
    assert!(size_of::<BoundHop>() == 20);
    assert!(size_of::<FloorHop>() == 40);
    assert!(size_of::<TunnelConfig>() == 8);
    assert!(size_of::<TunnelEndpoint>() == 20);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: #[repr(C)], Copy, made only of integers and byte arrays with no padding:
    // any bit pattern is valid.
    unsafe impl aya::Pod for BoundHop {}
    unsafe impl aya::Pod for FloorHop {}
    unsafe impl aya::Pod for TunnelConfig {}
    unsafe impl aya::Pod for TunnelEndpoint {}
}
