//! A peer in the benchmark, built from the kernel primitives of Cilium's tunnel mode
//! (this code is our own): a TC program on the container's host-side veth answers ARP,
//! delivers to local containers with `bpf_redirect_peer`, and for a remote one sets the
//! tunnel metadata with `bpf_skb_set_tunnel_key` (VNI, remote VTEP, zero UDP checksum)
//! and redirects to one VXLAN device in external (collect_md) mode, which encapsulates.
//! On the receiving host that device decapsulates, and a TC program at its ingress
//! reads the tunnel key and delivers with `bpf_redirect_peer`. What Cilium adds on top
//! (policy, conntrack, identities) is left out, so this is the design at its cheapest.

use aya_ebpf::{
    bindings::{BPF_F_ZERO_CSUM_TX, TC_ACT_OK, TC_ACT_SHOT, bpf_tunnel_key},
    helpers::{bpf_redirect, bpf_redirect_peer, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key},
    programs::TcContext,
};
use overlay_bench_common::TunnelEndpoint;
use overlay_ebpf::headers::{self, ArpHdr, ETH_P_ARP, ETH_P_IP, EthHdr, Ipv4Hdr};

use crate::maps::{PEER_TUNNEL_CFG, PEER_TUNNEL_EPS};

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct ArpFrame {
    eth: EthHdr,
    arp: ArpHdr,
}

#[inline(always)]
fn endpoint(ip: u32) -> Option<TunnelEndpoint> {
    // SAFETY: copied out at once (see overlay-ebpf's fdb.rs).
    unsafe { PEER_TUNNEL_EPS.get(ip).copied() }
}

/// TC ingress of a container's host-side veth.
pub fn from_container(ctx: &TcContext) -> i32 {
    let Ok(eth) = headers::load::<EthHdr>(ctx, 0) else { return TC_ACT_SHOT };
    match eth.ether_type() {
        ETH_P_ARP => answer_arp(ctx, &eth),
        ETH_P_IP => {
            let Ok(ip) = headers::load::<Ipv4Hdr>(ctx, EthHdr::LEN) else { return TC_ACT_SHOT };
            // The sender must be the container behind this veth.
            // SAFETY: the context's skb pointer is valid for the whole program run.
            let ifindex = unsafe { (*ctx.skb.skb).ifindex };
            match endpoint(ip.saddr) {
                Some(source) if source.vtep == 0 && source.ifindex == ifindex => {}
                _ => return TC_ACT_SHOT,
            }
            let Some(destination) = endpoint(ip.daddr) else { return TC_ACT_SHOT };
            if destination.vtep == 0 {
                return deliver(ctx, &eth, &destination);
            }
            let Some(cfg) = PEER_TUNNEL_CFG.get(0) else { return TC_ACT_SHOT };
            // SAFETY: zeroed is a valid key; the helper reads only `size` bytes of it.
            let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
            key.tunnel_id = cfg.vni;
            // The helper takes the address in host byte order.
            key.__bindgen_anon_1.remote_ipv4 = u32::from_be(destination.vtep);
            key.tunnel_ttl = 64;
            let size = core::mem::size_of::<bpf_tunnel_key>() as u32;
            // SAFETY: plain helper calls; the key lives on this stack frame.
            unsafe {
                if bpf_skb_set_tunnel_key(ctx.skb.skb, &mut key, size, u64::from(BPF_F_ZERO_CSUM_TX)) != 0 {
                    return TC_ACT_SHOT;
                }
                bpf_redirect(cfg.vxlan_ifindex, 0) as i32
            }
        }
        _ => TC_ACT_SHOT,
    }
}

/// TC ingress of the collect_md VXLAN device: the frame the device decapsulated.
pub fn from_overlay(ctx: &TcContext) -> i32 {
    // SAFETY: zeroed is a valid key; the helper writes only `size` bytes of it.
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    let size = core::mem::size_of::<bpf_tunnel_key>() as u32;
    // SAFETY: plain helper call.
    if unsafe { bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, size, 0) } != 0 {
        return TC_ACT_SHOT;
    }
    match PEER_TUNNEL_CFG.get(0) {
        Some(cfg) if cfg.vni == key.tunnel_id => {}
        _ => return TC_ACT_SHOT,
    }
    let Ok(eth) = headers::load::<EthHdr>(ctx, 0) else { return TC_ACT_SHOT };
    if eth.ether_type() != ETH_P_IP {
        return TC_ACT_OK;
    }
    let Ok(ip) = headers::load::<Ipv4Hdr>(ctx, EthHdr::LEN) else { return TC_ACT_SHOT };
    match endpoint(ip.daddr) {
        Some(destination) if destination.vtep == 0 => deliver(ctx, &eth, &destination),
        _ => TC_ACT_SHOT,
    }
}

/// Readdresses the frame to the container and puts it into the container's namespace.
#[inline(always)]
fn deliver(ctx: &TcContext, eth: &EthHdr, destination: &TunnelEndpoint) -> i32 {
    let header = EthHdr { dst: destination.mac, src: destination.host_mac, proto: eth.proto };
    if ctx.store(0, &header, 0).is_err() {
        return TC_ACT_SHOT;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(destination.ifindex, 0) as i32 }
}

/// Every ARP request from a container is answered with the MAC of its host-side veth,
/// as Cilium does: all its traffic goes through the host.
fn answer_arp(ctx: &TcContext, eth: &EthHdr) -> i32 {
    let Ok(request) = headers::load::<ArpHdr>(ctx, EthHdr::LEN) else { return TC_ACT_SHOT };
    if !request.is_ipv4_ethernet_request() || request.tpa == request.spa {
        return TC_ACT_SHOT;
    }
    let Some(source) = endpoint(request.spa) else { return TC_ACT_SHOT };
    let reply = ArpFrame {
        eth: EthHdr { dst: eth.src, src: source.host_mac, proto: ETH_P_ARP.to_be() },
        arp: ArpHdr {
            op: ArpHdr::REPLY.to_be(),
            sha: source.host_mac,
            spa: request.tpa,
            tha: request.sha,
            tpa: request.spa,
            ..request
        },
    };
    if ctx.store(0, &reply, 0).is_err() {
        return TC_ACT_SHOT;
    }
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(source.ifindex, 0) as i32 }
}
