//! VXLAN arriving on the underlay. Anything not addressed to this host's VTEP on UDP
//! 4789 is passed to the host untouched; what is addressed to it is either a valid
//! packet from a member for a local container, decapsulated and delivered into it, or
//! dropped with the reason.

use aya_ebpf::{
    bindings::{BPF_F_ADJ_ROOM_FIXED_GSO, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC},
    helpers::bpf_redirect_peer,
    programs::TcContext,
};
use overlay_common::{Reason, VXLAN_PORT};

use crate::{
    fdb, headers,
    headers::{ETH_P_IP, EthHdr, IPPROTO_UDP, Ipv4Hdr, UdpHdr, VxlanHdr},
    local,
    verdict::{self, Verdict},
};

pub fn receive(ctx: &TcContext) -> Verdict {
    // Not ours unless it parses as IPv4/UDP to our VTEP on the VXLAN port.
    let Ok(eth) = headers::load::<EthHdr>(ctx, 0) else { return verdict::pass() };
    if eth.ether_type() != ETH_P_IP {
        return verdict::pass();
    }
    let Ok(outer) = headers::load::<Ipv4Hdr>(ctx, EthHdr::LEN) else { return verdict::pass() };
    if outer.proto != IPPROTO_UDP || !outer.is_valid() {
        return verdict::pass();
    }
    let Ok(cfg) = fdb::config() else { return verdict::pass() };
    if outer.daddr != cfg.vtep_ip {
        return verdict::pass();
    }
    if outer.is_fragment() {
        // A fragment's UDP header may be elsewhere; members never fragment VXLAN.
        return Err(Reason::Fragmented);
    }
    let udp_offset = EthHdr::LEN + outer.header_len();
    let udp: UdpHdr = headers::load(ctx, udp_offset)?;
    if u16::from_be(udp.dest) != VXLAN_PORT {
        return verdict::pass();
    }

    // VXLAN to us from here on: every failure is a counted drop.
    if !fdb::is_member(outer.saddr) {
        return Err(Reason::NotMember);
    }
    let vxlan_offset = udp_offset + UdpHdr::LEN;
    let vxlan: VxlanHdr = headers::load(ctx, vxlan_offset)?;
    if vxlan.flags & VxlanHdr::FLAG_VNI == 0 {
        return Err(Reason::Malformed);
    }
    let vni = vxlan.vni();
    let network = fdb::network(vni).ok_or(Reason::UnknownVni)?;
    let inner_eth_offset = vxlan_offset + VxlanHdr::LEN;
    let inner_eth: EthHdr = headers::load(ctx, inner_eth_offset)?;
    if inner_eth.ether_type() != ETH_P_IP {
        return Err(Reason::InnerNotIpv4);
    }
    let inner_ip_offset = inner_eth_offset + EthHdr::LEN;
    let inner_ip: Ipv4Hdr = headers::load(ctx, inner_ip_offset)?;
    if !inner_ip.is_valid() {
        return Err(Reason::Malformed);
    }
    // A member may only speak for the containers that live on it.
    match fdb::remote_endpoint(vni, inner_ip.saddr) {
        Some(sender) if sender.vtep == outer.saddr => {}
        _ => return Err(Reason::InnerSourceMismatch),
    }
    let endpoint = fdb::local_endpoint(vni, inner_ip.daddr).ok_or(Reason::NoLocalEndpoint)?;

    // Remove outer IPv4, UDP, VXLAN and the inner Ethernet header; the outer Ethernet
    // header stays in front and is rewritten to the inner addresses.
    let strip = (inner_ip_offset - EthHdr::LEN) as i32;
    ctx.adjust_room(-strip, BPF_ADJ_ROOM_MAC, u64::from(BPF_F_ADJ_ROOM_FIXED_GSO))
        .map_err(|_| Reason::AdjustRoomFailed)?;
    local::rewrite_destination(ctx, &inner_eth, &endpoint)?;
    // SAFETY: plain helper call.
    let result = unsafe { bpf_redirect_peer(endpoint.ifindex, 0) };
    verdict::redirected(result, Reason::Decapsulated, network.counter_slot)
}
