//! VXLAN arriving on the underlay. Anything not addressed to this host's VTEP on UDP
//! 4789 is passed to the host untouched; what is addressed to it is either a valid
//! packet from a member for a local container, decapsulated and delivered into it, or
//! dropped with the reason.

use aya_ebpf::{
    bindings::{BPF_F_ADJ_ROOM_FIXED_GSO, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC},
    helpers::bpf_redirect_peer,
    programs::TcContext,
};
use overlay_common::{LocalEndpoint, NO_NETWORK_SLOT, Reason, VXLAN_PORT};

use crate::{
    fdb,
    headers::{ETH_P_IP, EthHdr, Frame, IPPROTO_UDP, Ipv4Hdr, UdpHdr, VxlanHdr},
    local,
    verdict::{self, Verdict},
};

/// A VXLAN packet that passed every check, and where its inner frame goes.
pub struct Delivery {
    /// The inner Ethernet header, and where it starts: everything before it is stripped.
    pub inner_eth: EthHdr,
    pub inner_eth_offset: usize,
    /// The receiving container; its network's counters are its `counter_slot`.
    pub endpoint: LocalEndpoint,
}

/// The checks both underlay hooks make. `Ok(None)`: not VXLAN for this host's VTEP, to
/// be passed to the host untouched. `Err`: VXLAN for us that is dropped, with the reason.
#[inline(always)]
pub fn classify<F: Frame>(frame: &F) -> Result<Option<Delivery>, Reason> {
    // Not ours unless it parses as IPv4/UDP to our VTEP on the VXLAN port.
    let Ok(eth) = frame.header::<EthHdr>(0) else { return Ok(None) };
    if eth.ether_type() != ETH_P_IP {
        return Ok(None);
    }
    let Ok(outer) = frame.header::<Ipv4Hdr>(EthHdr::LEN) else { return Ok(None) };
    if outer.proto != IPPROTO_UDP || !outer.is_valid() {
        return Ok(None);
    }
    let Ok(cfg) = fdb::config() else { return Ok(None) };
    if outer.daddr != cfg.vtep_ip {
        return Ok(None);
    }
    if outer.is_fragment() {
        // A fragment's UDP header may be elsewhere; members never fragment VXLAN.
        return Err(Reason::Fragmented);
    }
    let udp_offset = EthHdr::LEN + outer.header_len();
    let udp: UdpHdr = frame.header(udp_offset)?;
    if u16::from_be(udp.dest) != VXLAN_PORT {
        return Ok(None);
    }

    // VXLAN to us from here on: every failure is a counted drop.
    if !fdb::is_member(outer.saddr) {
        return Err(Reason::NotMember);
    }
    let vxlan_offset = udp_offset + UdpHdr::LEN;
    let vxlan: VxlanHdr = frame.header(vxlan_offset)?;
    if vxlan.flags & VxlanHdr::FLAG_VNI == 0 {
        return Err(Reason::Malformed);
    }
    let vni = vxlan.vni();
    // The network is not looked up on the way to a delivery: the receiving endpoint
    // carries its counter slot, and the sender's endpoint exists only in a network of
    // this host. A packet that fails is dropped as of an unknown VNI if that is what it
    // is, whatever else is wrong with it.
    inner(frame, vni, outer.saddr, vxlan_offset + VxlanHdr::LEN)
        .map(Some)
        .map_err(|reason| if fdb::network(vni).is_none() { Reason::UnknownVni } else { reason })
}

/// The checks of the inner frame, which starts at `inner_eth_offset`, sent by `vtep`.
#[inline(always)]
fn inner<F: Frame>(frame: &F, vni: u32, vtep: u32, inner_eth_offset: usize) -> Result<Delivery, Reason> {
    let inner_eth: EthHdr = frame.header(inner_eth_offset)?;
    if inner_eth.ether_type() != ETH_P_IP {
        return Err(Reason::InnerNotIpv4);
    }
    let inner_ip: Ipv4Hdr = frame.header(inner_eth_offset + EthHdr::LEN)?;
    if !inner_ip.is_valid() {
        return Err(Reason::Malformed);
    }
    // A member may only speak for the containers that live on it.
    match fdb::remote_endpoint(vni, inner_ip.saddr) {
        Some(sender) if sender.vtep == vtep => {}
        _ => return Err(Reason::InnerSourceMismatch),
    }
    let endpoint = fdb::local_endpoint(vni, inner_ip.daddr).ok_or(Reason::NoLocalEndpoint)?;
    if endpoint.counter_slot == NO_NETWORK_SLOT {
        return Err(Reason::UnknownVni);
    }
    Ok(Delivery { inner_eth, inner_eth_offset, endpoint })
}

/// TC ingress of the underlay: decapsulates with `adjust_room`, which keeps a GSO
/// super-packet whole, and hands the inner frame to the container with `redirect_peer`.
pub fn receive(ctx: &TcContext) -> Verdict {
    let Some(delivery) = classify(ctx)? else { return verdict::pass() };
    // Remove outer IPv4, UDP, VXLAN and the inner Ethernet header; the outer Ethernet
    // header stays in front and is rewritten to the inner addresses.
    let strip = delivery.inner_eth_offset as i32;
    ctx.adjust_room(-strip, BPF_ADJ_ROOM_MAC, u64::from(BPF_F_ADJ_ROOM_FIXED_GSO))
        .map_err(|_| Reason::AdjustRoomFailed)?;
    local::rewrite_destination(ctx, &delivery.inner_eth, &delivery.endpoint)?;
    // SAFETY: plain helper call.
    let result = unsafe { bpf_redirect_peer(delivery.endpoint.ifindex, 0) };
    verdict::redirected(result, Reason::Decapsulated, delivery.endpoint.counter_slot)
}
