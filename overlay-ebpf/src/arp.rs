//! ARP requests from containers are answered here, from the forwarding tables: nothing
//! is flooded to the host or across the underlay.

use aya_ebpf::{helpers::bpf_redirect, programs::TcContext};
use overlay_common::{Interface, Reason};

use crate::{
    fdb::{self, Destination},
    headers::{self, ArpHdr, ETH_P_ARP, EthHdr},
    verdict::{self, Verdict},
};

#[repr(C, packed)]
#[derive(Clone, Copy)]
struct ArpFrame {
    eth: EthHdr,
    arp: ArpHdr,
}

pub fn answer(ctx: &TcContext, eth: &EthHdr, iface: &Interface, ifindex: u32) -> Verdict {
    let request: ArpHdr = headers::load(ctx, EthHdr::LEN)?;
    // Only requests for someone else's address get an answer: a container probing its
    // own address (duplicate address detection) must hear nothing back.
    if !request.is_ipv4_ethernet_request() || request.tpa == iface.ip {
        return Err(Reason::ArpNotAnswered);
    }
    let target_mac = if request.tpa == iface.gateway {
        iface.gateway_mac
    } else {
        match fdb::destination(iface.vni, request.tpa) {
            Destination::Local(endpoint) => endpoint.mac,
            Destination::Remote(endpoint) => endpoint.mac,
            Destination::Unknown => return Err(Reason::ArpNotAnswered),
        }
    };
    let reply = ArpFrame {
        eth: EthHdr { dst: eth.src, src: target_mac, proto: ETH_P_ARP.to_be() },
        arp: ArpHdr {
            op: ArpHdr::REPLY.to_be(),
            sha: target_mac,
            spa: request.tpa,
            tha: request.sha,
            tpa: request.spa,
            ..request
        },
    };
    ctx.store(0, &reply, 0).map_err(|_| Reason::Truncated)?;
    // Out of the same veth: back into the container that asked.
    // SAFETY: plain helper call.
    let result = unsafe { bpf_redirect(ifindex, 0) };
    verdict::redirected(result, Reason::ArpAnswered, iface.counter_slot)
}
