//! A container's packet for an address that no container of its network has.
//!
//! Inside any overlay subnet of the cluster it is dropped: overlay traffic goes between
//! containers through the tables, never through egress (another network's subnet is no
//! way around the VNI). Off the overlay, it leaves through the host: the packet is
//! handed to the host's stack, as received on the host's egress device (`OVL_EGRESS`),
//! which routes it and masquerades it to the host's own address (the agent's nftables
//! rules, `overlay-userspace/src/egress/`), and whose conntrack brings the replies back
//! to the container by its /32 route. An internal network has no way out.
//!
//! A masqueraded packet leaves with a member's address, so VXLAN sent this way to a
//! member's VTEP would pass the member check there. UDP to the VXLAN port of a member
//! or of this host is dropped here, and so are later fragments of UDP to them, whose
//! port cannot be seen (the first fragment carries it and is checked like any packet).

use aya_ebpf::{
    bindings::{BPF_F_INGRESS, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::{bpf_fib_lookup, bpf_redirect},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use overlay_common::{Interface, Reason, Subnet, VXLAN_PORT};

use crate::{
    fdb,
    headers::{self, EthHdr, IPPROTO_UDP, Ipv4Hdr, UdpHdr},
    maps::{OVL_EGRESS, OVL_SUBNETS},
    next_hop::AF_INET,
    verdict::{self, Verdict},
};

/// The overlay subnet holding `ip` ([`overlay_common::ipv4_key`]), if any.
#[inline(always)]
fn subnet_of(ip: u32) -> Option<Subnet> {
    // Copied out at once, as in fdb.rs (aya-ebpf's LpmTrie::get is not marked unsafe).
    OVL_SUBNETS.get(Key::new(32, ip)).copied()
}

/// What `from_container` does with a destination that no container of the network has.
pub fn to_host(ctx: &TcContext, ip: &Ipv4Hdr, iface: &Interface) -> Verdict {
    // A datapath whose subnets are not programmed (tables written by hand, as the
    // datapath tests do) has no egress: every unknown destination is just unknown.
    let own = match subnet_of(iface.ip) {
        Some(own) if own.vni == iface.vni => own,
        _ => return Err(Reason::UnknownDestination),
    };
    if subnet_of(ip.daddr).is_some() {
        return Err(Reason::UnknownDestination);
    }
    if own.flags & Subnet::EGRESS == 0 {
        return Err(Reason::NoEgress);
    }
    if ip.proto == IPPROTO_UDP && may_carry_vxlan_to_cluster(ctx, ip, iface)? {
        return Err(Reason::EgressVxlan);
    }
    let device = match OVL_EGRESS.get(0) {
        Some(device) if device.ifindex != 0 => *device,
        _ => return Err(Reason::NoEgress),
    };
    // Addressed to the device, so the stack takes the frame as its own there, and
    // routes it on as received from that device (not from the container's veth, which
    // is a bridge port: a frame passed up from it goes to the bridge, which drops it).
    ctx.store(0, &device.mac, 0).map_err(|_| Reason::Truncated)?;
    // SAFETY: plain helper call.
    let result = unsafe { bpf_redirect(device.ifindex, u64::from(BPF_F_INGRESS)) };
    verdict::redirected(result, Reason::Egress, iface.counter_slot)
}

/// Whether a UDP packet goes, or may go, to the VXLAN port of a member or of this host.
#[inline(always)]
fn may_carry_vxlan_to_cluster(ctx: &TcContext, ip: &Ipv4Hdr, iface: &Interface) -> Result<bool, Reason> {
    let later_fragment = u16::from_be(ip.frag_off) & 0x1fff != 0;
    let to_vxlan_port = !later_fragment && {
        let udp: UdpHdr = headers::load(ctx, EthHdr::LEN + ip.header_len())?;
        u16::from_be(udp.dest) == VXLAN_PORT
    };
    if !later_fragment && !to_vxlan_port {
        return Ok(false);
    }
    if fdb::is_member(ip.daddr) || fdb::config().is_ok_and(|cfg| cfg.vtep_ip == ip.daddr) {
        return Ok(true);
    }
    // Any other address of this host: the FIB forwards only what is not local. What it
    // does not forward (local, unreachable, forwarding off) cannot go out anyway.
    Ok(!forwarded(ctx, ip, iface))
}

#[inline(always)]
fn forwarded(ctx: &TcContext, ip: &Ipv4Hdr, iface: &Interface) -> bool {
    // SAFETY: the context's skb pointer is valid for the whole program run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: zeroed is a valid bpf_fib_lookup; the helper reads and writes only it.
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = IPPROTO_UDP;
    fib.ifindex = ifindex;
    fib.__bindgen_anon_3.ipv4_src = iface.ip;
    fib.__bindgen_anon_4.ipv4_dst = ip.daddr;
    // SAFETY: as above.
    let rc =
        unsafe { bpf_fib_lookup(ctx.skb.skb as *mut _, &mut fib, core::mem::size_of::<bpf_fib_lookup>() as i32, 0) };
    matches!(rc as u32, BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH)
}
