//! Delivery to a container on the same host: straight into its namespace.

use aya_ebpf::{helpers::bpf_redirect_peer, programs::TcContext};
use overlay_common::{LocalEndpoint, Reason};

use crate::{
    headers::EthHdr,
    verdict::{self, Verdict},
};

/// `counter_slot`: the network's counters (`OVL_NET_COUNTS`).
pub fn deliver(ctx: &TcContext, eth: &EthHdr, endpoint: &LocalEndpoint, counter_slot: u32) -> Verdict {
    rewrite_destination(ctx, eth, endpoint)?;
    // The peer of the host-side veth is the container's eth0: redirect_peer skips the
    // host side's egress and backlog queue.
    // SAFETY: plain helper call.
    let result = unsafe { bpf_redirect_peer(endpoint.ifindex, 0) };
    verdict::redirected(result, Reason::DeliveredLocally, counter_slot)
}

/// Addresses the frame to the container's own MAC, whatever the sender believed.
#[inline(always)]
pub fn rewrite_destination(ctx: &TcContext, eth: &EthHdr, endpoint: &LocalEndpoint) -> Result<(), Reason> {
    let header = EthHdr { dst: endpoint.mac, ..*eth };
    ctx.store(0, &header, 0).map_err(|_| Reason::Truncated)
}
