//! The floor, attached only by the benchmark: the bound (`bound.rs`) plus VXLAN and
//! nothing else, the least an eBPF VXLAN datapath for veth-attached containers can do.
//! The sender makes room for the outer headers with the same `bpf_skb_adjust_room` as
//! the datapath's `encap.rs`, writes them from one map entry and redirects to the
//! underlay; the receiver strips them and delivers with `redirect_peer`. Nothing is
//! checked, counted or routed: no membership, no source check, no next-hop cache. The
//! gap from the bound to the floor is what VXLAN itself costs on this kernel; the gap
//! from the floor to the datapath is what the datapath adds.

use aya_ebpf::{
    bindings::{BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_SHOT, TC_ACT_UNSPEC, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC},
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};
use overlay_bench_common::FloorHop;
use overlay_common::{ENCAP_OVERHEAD, VXLAN_PORT};
use overlay_ebpf::{
    encap::{ADJ_ROOM_FLAGS, Encapsulation, outer_ipv4, vxlan_udp},
    headers::{self, ETH_P_IP, EthHdr, IPPROTO_UDP, Ipv4Hdr, UdpHdr, VxlanHdr},
};

use crate::maps::OVL_FLOOR_HOPS;

/// One fixed outer source port: the floor spreads no flows.
const SOURCE_PORT: u16 = 49152;

#[inline(always)]
fn hop(ip: u32) -> Option<FloorHop> {
    // SAFETY: copied out at once (see overlay-ebpf's fdb.rs).
    unsafe { OVL_FLOOR_HOPS.get(ip).copied() }
}

/// TC ingress of a container's host-side veth.
pub fn encapsulate(ctx: &TcContext) -> i32 {
    let next = TC_ACT_UNSPEC;
    let Ok(eth) = headers::load::<EthHdr>(ctx, 0) else { return next };
    if eth.ether_type() != ETH_P_IP {
        return next;
    }
    let Ok(ip) = headers::load::<Ipv4Hdr>(ctx, EthHdr::LEN) else { return next };
    let Some(hop) = hop(ip.daddr) else { return next };
    if hop.to_peer != 0 {
        return next;
    }
    if ctx.adjust_room(ENCAP_OVERHEAD as i32, BPF_ADJ_ROOM_MAC, ADJ_ROOM_FLAGS).is_err() {
        return TC_ACT_SHOT;
    }
    let len = ctx.len();
    let headers = Encapsulation {
        outer_eth: EthHdr { dst: hop.dmac, src: hop.smac, proto: ETH_P_IP.to_be() },
        outer_ip: outer_ipv4(len, 0, hop.local_vtep, hop.remote_vtep),
        udp: vxlan_udp(len, SOURCE_PORT),
        vxlan: VxlanHdr::new(hop.vni),
        inner_eth: EthHdr { dst: hop.inner_dmac, src: eth.src, proto: ETH_P_IP.to_be() },
    };
    if ctx.store(0, &headers, 0).is_err() {
        return TC_ACT_SHOT;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(hop.ifindex, 0) as i32 }
}

/// TC ingress of the underlay: VXLAN to UDP 4789 with a plain 20-byte outer IPv4 header
/// is decapsulated; anything else goes on to the host.
pub fn decapsulate(ctx: &TcContext) -> i32 {
    let next = TC_ACT_UNSPEC;
    let Ok(eth) = headers::load::<EthHdr>(ctx, 0) else { return next };
    if eth.ether_type() != ETH_P_IP {
        return next;
    }
    let Ok(outer) = headers::load::<Ipv4Hdr>(ctx, EthHdr::LEN) else { return next };
    if outer.version_ihl != 0x45 || outer.proto != IPPROTO_UDP {
        return next;
    }
    let Ok(udp) = headers::load::<UdpHdr>(ctx, EthHdr::LEN + Ipv4Hdr::LEN) else { return next };
    if u16::from_be(udp.dest) != VXLAN_PORT {
        return next;
    }
    let inner_ip_offset = EthHdr::LEN + ENCAP_OVERHEAD as usize;
    let Ok(inner) = headers::load::<Ipv4Hdr>(ctx, inner_ip_offset) else { return next };
    let Some(hop) = hop(inner.daddr) else { return next };
    if hop.to_peer == 0 {
        return next;
    }
    // The outer IPv4, UDP and VXLAN headers and the inner Ethernet header go; the outer
    // Ethernet header stays and is readdressed.
    let strip = ENCAP_OVERHEAD as i32;
    if ctx.adjust_room(-strip, BPF_ADJ_ROOM_MAC, u64::from(BPF_F_ADJ_ROOM_FIXED_GSO)).is_err() {
        return TC_ACT_SHOT;
    }
    if ctx.store(0, &EthHdr { dst: hop.dmac, src: hop.smac, proto: ETH_P_IP.to_be() }, 0).is_err() {
        return TC_ACT_SHOT;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(hop.ifindex, 0) as i32 }
}
