//! EXPERIMENT, the alternative to overlay-ebpf's `decap.rs`: the same VXLAN checks
//! (`decap::classify`), then the decapsulation as an XDP program on the underlay
//! interface (`overlay_xdp_from_underlay`). It strips the outer headers with `bpf_xdp_adjust_head`
//! and `XDP_REDIRECT`s the inner frame to the container's host-side veth (the veth then
//! hands it to its peer, the container's eth0, which must have NAPI: GRO on, or an XDP
//! program of its own). Kept only to measure XDP against TC decapsulation (the bench's
//! `underlay-hook-bench`, results in docs/datapath.md); it is not in the agent's object.

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT},
    helpers::{bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use overlay_common::{Direction, Reason};

use overlay_ebpf::{
    decap,
    headers::EthHdr,
    verdict::{self, Forward, NO_NETWORK, Verdict},
};

/// Runs the checks and counts the result as the TC programs do (`verdict::count`), as
/// an XDP action.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u32;
    let verdict = receive(ctx);
    verdict::count(Direction::FromUnderlay, bytes, &verdict);
    match verdict {
        Ok(forward) => forward.action as u32,
        Err(_) => XDP_DROP,
    }
}

#[inline(always)]
fn receive(ctx: &XdpContext) -> Verdict {
    let Some(delivery) = decap::classify(ctx)? else {
        return Ok(Forward { reason: Reason::PassedToHost, action: XDP_PASS as i32, net_slot: NO_NETWORK });
    };
    // Drop outer Ethernet, IPv4, UDP and VXLAN: the inner Ethernet header becomes the
    // frame's, and only its destination is rewritten (as local::rewrite_destination).
    // SAFETY: plain helper call on this program's own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, delivery.inner_eth_offset as i32) } != 0 {
        return Err(Reason::AdjustRoomFailed);
    }
    let start = ctx.data();
    if start + EthHdr::LEN > ctx.data_end() {
        return Err(Reason::Truncated);
    }
    let header = EthHdr { dst: delivery.endpoint.mac, ..delivery.inner_eth };
    // SAFETY: checked against data_end just above.
    unsafe { core::ptr::write_unaligned(start as *mut EthHdr, header) };
    // SAFETY: plain helper call.
    let result = unsafe { bpf_redirect(delivery.endpoint.ifindex, 0) };
    if result == i64::from(XDP_REDIRECT) {
        Ok(Forward { reason: Reason::Decapsulated, action: XDP_REDIRECT as i32, net_slot: delivery.endpoint.counter_slot })
    } else {
        Err(Reason::RedirectFailed)
    }
}
