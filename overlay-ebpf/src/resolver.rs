//! DNS between Docker containers and the host's resolver for them, which lives in a
//! namespace of its own behind a veth (`OVL_RESOLVER`; docs/docker.md, "Names scoped
//! per network"). dockerd's embedded DNS forwards a name it does not know from the
//! container's own namespace when its upstream is not a loopback address, so the query
//! leaves the container as any packet does, and here it is known which container asks:
//! its source address was checked against its veth.
//!
//! - A query (UDP or TCP to port 53 of the resolver's address) is addressed to the
//!   resolver's side of the veth and sent out of the host side, into the resolver's
//!   namespace. The asker's address and network are remembered for its answer.
//! - What comes back in through that veth: the resolver's answer to an asker is
//!   delivered straight into the asker's namespace; anything to the host side's own
//!   address (the host's own queries) goes to the host; the rest is dropped.
//!
//! The resolver's address is link-local, never a container's: a query is a packet for
//! an unknown destination, looked at before egress, so this path costs the overlay's
//! own packets nothing, and it needs no way out of the overlay (it works on internal
//! networks and with egress off).

use aya_ebpf::{
    helpers::{bpf_redirect, bpf_redirect_peer},
    macros::map,
    maps::LruHashMap,
    programs::TcContext,
};
use overlay_common::{Interface, Reason, ResolverConfig};

use crate::{
    fdb,
    headers::{self, ETH_P_IP, EthHdr, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr},
    maps::OVL_RESOLVER,
    verdict::{self, Verdict},
};

const DNS_PORT: u16 = 53;
/// Askers remembered at once, the least recently asking forgotten first: an answer to
/// a forgotten one is dropped, and its client asks again.
const ASKERS: u32 = 4096;

/// The network of a container address that asked the resolver. Only the programs read
/// and write it, so its layout lives here.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Asker {
    pub vni: u32,
}

#[map]
static RESOLVER_ASKERS: LruHashMap<u32, Asker> = LruHashMap::with_max_entries(ASKERS, 0);

/// The resolver, if this host has one.
#[inline(always)]
pub fn config() -> Option<ResolverConfig> {
    OVL_RESOLVER.get(0).copied().filter(|r| r.ip != 0)
}

/// A packet from the container on `iface` to no overlay address: `None` unless it is
/// for the resolver's address. A query (UDP or TCP to port 53) is sent to the resolver;
/// anything else for that address is an unknown destination (never egress: the address
/// is this host's own resolver, not a way out).
#[inline(always)]
pub fn query(ctx: &TcContext, eth: &EthHdr, ip: &Ipv4Hdr, iface: &Interface) -> Option<Verdict> {
    let resolver = config().filter(|r| r.ip == ip.daddr)?;
    Some(send_query(ctx, eth, ip, iface, &resolver))
}

fn send_query(ctx: &TcContext, eth: &EthHdr, ip: &Ipv4Hdr, iface: &Interface, resolver: &ResolverConfig) -> Verdict {
    if !matches!(ip.proto, IPPROTO_UDP | IPPROTO_TCP) || ip.is_fragment() {
        return Err(Reason::UnknownDestination);
    }
    // UDP and TCP both start with the source and destination ports.
    let ports: [u16; 2] = headers::load(ctx, EthHdr::LEN + ip.header_len())?;
    if u16::from_be(ports[1]) != DNS_PORT {
        return Err(Reason::UnknownDestination);
    }
    // Failing to remember only loses the answer; the query still goes.
    let _ = RESOLVER_ASKERS.insert(ip.saddr, Asker { vni: iface.vni }, 0);
    let header = EthHdr { dst: resolver.mac, ..*eth };
    ctx.store(0, &header, 0).map_err(|_| Reason::Truncated)?;
    // SAFETY: plain helper call.
    let result = unsafe { bpf_redirect(resolver.ifindex, 0) };
    verdict::redirected(result, Reason::ToResolver, iface.counter_slot)
}

/// What comes in through the resolver's veth (its host side's TC ingress).
pub fn from_resolver(ctx: &TcContext, resolver: &ResolverConfig) -> Verdict {
    let eth: EthHdr = headers::load(ctx, 0)?;
    if eth.ether_type() != ETH_P_IP {
        // ARP between the host side and the resolver.
        return verdict::pass();
    }
    let ip: Ipv4Hdr = headers::load(ctx, EthHdr::LEN)?;
    if ip.daddr == resolver.host_ip {
        return verdict::pass();
    }
    if ip.saddr != resolver.ip {
        return Err(Reason::ResolverNotAsked);
    }
    // SAFETY: copied out at once (a slot may be reused by a concurrent update).
    let asker = unsafe { RESOLVER_ASKERS.get(ip.daddr) }.copied().ok_or(Reason::ResolverNotAsked)?;
    let network = fdb::network(asker.vni).ok_or(Reason::UnknownVni)?;
    let endpoint = fdb::local_endpoint(asker.vni, ip.daddr).ok_or(Reason::NoLocalEndpoint)?;
    // From the network's gateway, where the container sent its query.
    let header = EthHdr { dst: endpoint.mac, src: network.gateway_mac, proto: eth.proto };
    ctx.store(0, &header, 0).map_err(|_| Reason::Truncated)?;
    // SAFETY: plain helper call.
    let result = unsafe { bpf_redirect_peer(endpoint.ifindex, 0) };
    verdict::redirected(result, Reason::FromResolver, network.counter_slot)
}
