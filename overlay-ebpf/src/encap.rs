//! VXLAN encapsulation of a container's packet for a container on another host.
//!
//! The outer headers are made room for with one `bpf_skb_adjust_room` that tells the
//! kernel what it inserts (IPv4 + UDP + an inner Ethernet header), so a GSO super-packet
//! stays one: the NIC or the GSO layer cuts it into UDP-tunnel segments later. Declaring
//! the VXLAN header as part of the L2 encap length (14 + 8) breaks GSO on this kernel,
//! so the encap L2 length is the inner Ethernet header alone.

use aya_ebpf::{
    bindings::{
        BPF_ADJ_ROOM_ENCAP_L2_SHIFT, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_redir_neigh,
    },
    helpers::{bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use overlay_common::{ENCAP_OVERHEAD, Reason, RemoteEndpoint, VXLAN_PORT};

use crate::{
    fdb,
    headers::{self, ETH_P_IP, EthHdr, IPPROTO_TCP, IPPROTO_UDP, Ipv4Hdr, UdpHdr, VxlanHdr},
    next_hop::{self, AF_INET, NextHop},
    verdict::{self, Verdict},
};

/// Outer UDP source ports come from this range (Linux's default ephemeral range, as the
/// kernel's VXLAN driver uses), so underlay ECMP and RSS spread flows.
const SPORT_MIN: u32 = 32768;
const SPORT_MAX: u32 = 60999;

/// The `bpf_skb_adjust_room` flags of an encapsulation (the benchmark's floor path uses
/// them too, so both make room the same way).
pub const ADJ_ROOM_FLAGS: u64 = (BPF_F_ADJ_ROOM_FIXED_GSO
    | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH) as u64
    | ((EthHdr::LEN as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT);

/// Everything in front of the inner IPv4 header after encapsulation.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Encapsulation {
    pub outer_eth: EthHdr,
    pub outer_ip: Ipv4Hdr,
    pub udp: UdpHdr,
    pub vxlan: VxlanHdr,
    pub inner_eth: EthHdr,
}

const _: () = assert!(core::mem::size_of::<Encapsulation>() == EthHdr::LEN + ENCAP_OVERHEAD as usize);

pub fn to_remote(
    ctx: &TcContext,
    eth: &EthHdr,
    ip: &Ipv4Hdr,
    vni: u32,
    remote: &RemoteEndpoint,
    counter_slot: u32,
) -> Verdict {
    let cfg = fdb::config()?;
    // Route first, so a packet we cannot send is dropped before it is modified.
    let hop = next_hop::to_vtep(ctx, cfg.vtep_ip, remote.vtep, cfg.underlay_ifindex)?;
    let source_port = flow_source_port(ctx, ip);

    ctx.adjust_room(ENCAP_OVERHEAD as i32, BPF_ADJ_ROOM_MAC, ADJ_ROOM_FLAGS).map_err(|_| Reason::AdjustRoomFailed)?;

    let len = ctx.len();
    // Keep the inner DSCP so the underlay can honour it; ECN is not propagated.
    let outer_ip = outer_ipv4(len, ip.tos & 0xfc, cfg.vtep_ip, remote.vtep);
    let headers = Encapsulation {
        // Zero MACs are filled in by bpf_redirect_neigh.
        outer_eth: match hop {
            NextHop::Resolved { smac, dmac, .. } => EthHdr { dst: dmac, src: smac, proto: ETH_P_IP.to_be() },
            _ => EthHdr { dst: [0; 6], src: [0; 6], proto: ETH_P_IP.to_be() },
        },
        outer_ip,
        udp: vxlan_udp(len, source_port as u16),
        vxlan: VxlanHdr::new(vni),
        inner_eth: EthHdr { dst: remote.mac, src: eth.src, proto: ETH_P_IP.to_be() },
    };
    ctx.store(0, &headers, 0).map_err(|_| Reason::Truncated)?;

    // SAFETY: plain helper calls; the params struct lives on this stack frame.
    let result = match hop {
        NextHop::Resolved { ifindex, .. } => unsafe { bpf_redirect(ifindex, 0) },
        NextHop::Unresolved { ifindex, gateway } => unsafe {
            let mut params: bpf_redir_neigh = core::mem::zeroed();
            params.nh_family = u32::from(AF_INET);
            params.__bindgen_anon_1.ipv4_nh = gateway;
            bpf_redirect_neigh(ifindex, &mut params, core::mem::size_of::<bpf_redir_neigh>() as i32, 0)
        },
        NextHop::ByOutputRoute { ifindex } => unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) },
    };
    verdict::redirected(result, Reason::Encapsulated, counter_slot)
}

/// The outer IPv4 header of an encapsulated packet of `len` bytes (its outer Ethernet
/// header included), checksummed.
#[inline(always)]
pub fn outer_ipv4(len: u32, tos: u8, saddr: u32, daddr: u32) -> Ipv4Hdr {
    let mut ip = Ipv4Hdr {
        version_ihl: 0x45,
        tos,
        tot_len: ((len - EthHdr::LEN as u32) as u16).to_be(),
        id: 0,
        frag_off: 0,
        ttl: 64,
        proto: IPPROTO_UDP,
        check: 0,
        saddr,
        daddr,
    };
    ip.check = ip.checksum();
    ip
}

/// The UDP header of an encapsulated packet of `len` bytes, to the VXLAN port.
#[inline(always)]
pub fn vxlan_udp(len: u32, source_port: u16) -> UdpHdr {
    UdpHdr {
        source: source_port.to_be(),
        dest: VXLAN_PORT.to_be(),
        len: ((len - (EthHdr::LEN + Ipv4Hdr::LEN) as u32) as u16).to_be(),
        // RFC 7348 allows zero over IPv4; the kernel's VXLAN also sends zero by default.
        check: 0,
    }
}

/// The outer source port: a hash of the inner flow, so one flow keeps one underlay path.
/// A socket's packets carry the hash the kernel gave their flow; for the others (ICMP,
/// raw sockets) the addresses, protocol and ports are mixed here, which costs far less
/// than `bpf_get_hash_recalc`'s run of the flow dissector.
#[inline(always)]
fn flow_source_port(ctx: &TcContext, ip: &Ipv4Hdr) -> u32 {
    // SAFETY: the context's skb pointer is valid for the whole program run.
    let mut hash = unsafe { (*ctx.skb.skb).hash };
    if hash == 0 {
        let ports: u32 = if ip.proto == IPPROTO_UDP || ip.proto == IPPROTO_TCP {
            headers::load(ctx, EthHdr::LEN + ip.header_len()).unwrap_or(0)
        } else {
            0
        };
        hash = mix(ip.saddr ^ ip.daddr.rotate_left(16) ^ ports ^ u32::from(ip.proto));
    }
    SPORT_MIN + (((u64::from(hash)) * u64::from(SPORT_MAX - SPORT_MIN + 1)) >> 32) as u32
}

/// A 32-bit finaliser (as in MurmurHash3's fmix32): every input bit moves every output bit.
#[inline(always)]
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
