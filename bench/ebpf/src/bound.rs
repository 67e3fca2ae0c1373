//! The bound, attached only by the benchmark: the least a datapath for veth-attached
//! containers can do to carry a packet between hosts. No overlay: a container's address
//! is looked up in `OVL_BOUND_HOPS`, the frame is readdressed and redirected, out of the
//! underlay (at the host side of the container's veth) or into the container's
//! namespace with `redirect_peer` (at the underlay). VXLAN can only add work to this,
//! so the benchmark measures it as the bound for this datapath.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::{bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};

use overlay_ebpf::headers::{self, ETH_P_IP, EthHdr, Ipv4Hdr};

use crate::maps::OVL_BOUND_HOPS;

pub fn redirect(ctx: &TcContext) -> i32 {
    // Anything else goes on to the next TCX program, or to the host if there is none.
    let next = TC_ACT_UNSPEC;
    let Ok(eth) = headers::load::<EthHdr>(ctx, 0) else { return next };
    if eth.ether_type() != ETH_P_IP {
        return next;
    }
    let Ok(ip) = headers::load::<Ipv4Hdr>(ctx, EthHdr::LEN) else { return next };
    // SAFETY: copied out at once (see overlay-ebpf's fdb.rs).
    let Some(hop) = (unsafe { OVL_BOUND_HOPS.get(ip.daddr).copied() }) else { return next };
    if ctx.store(0, &EthHdr { dst: hop.dmac, src: hop.smac, proto: eth.proto }, 0).is_err() {
        return TC_ACT_SHOT;
    }
    // SAFETY: plain helper calls.
    let action =
        unsafe { if hop.to_peer != 0 { bpf_redirect_peer(hop.ifindex, 0) } else { bpf_redirect(hop.ifindex, 0) } };
    action as i32
}
