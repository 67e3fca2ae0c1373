//! The agent's object: the two TC programs of the overlay datapath and nothing else.
//! Each entry point only dispatches; the work of each packet path lives in its own
//! module of the library (`lib.rs`), and `verdict::finish` is the one place a result
//! becomes a TC action and a counter. The benchmark's experiments are another object
//! (`bench/ebpf`).
#![no_std]
#![no_main]

use aya_ebpf::{macros::classifier, programs::TcContext};
use overlay_common::{Direction, NO_NETWORK_SLOT, Reason};
use overlay_ebpf::{
    arp, decap, egress, encap,
    fdb::{self, Destination},
    headers::{self, ETH_P_ARP, ETH_P_IP, EthHdr, Ipv4Hdr},
    local, resolver,
    verdict::{self, Verdict},
};

/// TC ingress of the host side of a container's veth: every frame the container sends;
/// and of the resolver's veth: its answers to containers.
#[classifier]
pub fn overlay_from_container(ctx: TcContext) -> i32 {
    let bytes = ctx.len();
    verdict::finish(Direction::FromContainer, bytes, from_container(&ctx))
}

/// TC ingress of the host's underlay interface: VXLAN for us is decapsulated, the rest
/// goes to the host stack untouched.
#[classifier]
pub fn overlay_from_underlay(ctx: TcContext) -> i32 {
    let bytes = ctx.len();
    verdict::finish(Direction::FromUnderlay, bytes, decap::receive(&ctx))
}

fn from_container(ctx: &TcContext) -> Verdict {
    // SAFETY: the context's skb pointer is valid for the whole program run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // One lookup: the interface carries its network's gateway and counter slot.
    let Some(iface) = fdb::interface(ifindex) else {
        // The resolver's veth is the one interface that is not a container's.
        return match resolver::config() {
            Some(r) if r.ifindex == ifindex => resolver::from_resolver(ctx, &r),
            _ => Err(Reason::UnknownInterface),
        };
    };
    if iface.counter_slot == NO_NETWORK_SLOT {
        return Err(Reason::UnknownVni);
    }
    let eth: EthHdr = headers::load(ctx, 0)?;
    match eth.ether_type() {
        ETH_P_ARP => arp::answer(ctx, &eth, &iface, ifindex),
        ETH_P_IP => {
            let ip: Ipv4Hdr = headers::load(ctx, EthHdr::LEN)?;
            if ip.saddr != iface.ip {
                return Err(Reason::SpoofedSource);
            }
            match fdb::destination(iface.vni, ip.daddr) {
                Destination::Local(endpoint) => local::deliver(ctx, &eth, &endpoint, iface.counter_slot),
                Destination::Remote(endpoint) => {
                    encap::to_remote(ctx, &eth, &ip, iface.vni, &endpoint, iface.counter_slot)
                }
                Destination::Unknown => match resolver::query(ctx, &eth, &ip, &iface) {
                    Some(verdict) => verdict,
                    None => egress::to_host(ctx, &ip, &iface),
                },
            }
        }
        _ => Err(Reason::UnsupportedProtocol),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it only satisfies no_std.
    loop {}
}
