//! The next hop towards a VTEP: the kernel's FIB and neighbour tables, through
//! `bpf_fib_lookup`, with its answers kept for a moment in a per-VTEP cache. The lookup
//! walks the routing trie and the neighbour table on every packet otherwise, and on a
//! cold cache it was a large part of a packet's time in the encapsulation.
//!
//! The cache is direct-mapped and per CPU: a VTEP has one slot (its address's low bits),
//! tagged with the address, in an array that each CPU has a copy of. Finding it is an
//! index, not a hash lookup, and no CPU ever reads a slot another is writing. Two VTEPs
//! on one slot only cost each other a FIB lookup.

use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup},
    helpers::{bpf_fib_lookup, bpf_ktime_get_ns},
    macros::map,
    maps::PerCpuArray,
    programs::TcContext,
};
use overlay_common::Reason;

use crate::headers::IPPROTO_UDP;

pub const AF_INET: u8 = 2;

/// How long a resolved next hop is used without asking the FIB again: a route or
/// neighbour change reaches the datapath within this time.
const CACHE_NS: u64 = 1_000_000_000;

/// How the encapsulated packet leaves for the VTEP.
pub enum NextHop {
    /// The FIB and neighbour tables answered: addresses known, a plain redirect.
    Resolved { ifindex: u32, smac: [u8; 6], dmac: [u8; 6] },
    /// Routed, but the next hop's MAC is not resolved yet: the kernel resolves it.
    Unresolved { ifindex: u32, gateway: u32 },
    /// The FIB helper only serves interfaces with IPv4 forwarding on, which a host need
    /// not enable for the overlay: the kernel's output route lookup is used instead.
    ByOutputRoute { ifindex: u32 },
}

/// A resolved next hop to `vtep` as the FIB gave it, and until when it is used
/// (`bpf_ktime_get_ns`). Only this program reads and writes it, so the layout lives
/// here, not in overlay-common.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CachedHop {
    pub expires_ns: u64,
    /// The slot's tag: 0 (no address) in a slot never filled.
    pub vtep: u32,
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub _pad: [u8; 4],
}

/// Slots of the cache (a power of two).
const SLOTS: u32 = 1024;

/// The next-hop cache: only this module uses it, so it is not pinned (a reloaded program
/// starts with an empty one) and not in overlay-common.
#[map]
static OVL_NEXT_HOPS: PerCpuArray<CachedHop> = PerCpuArray::with_max_entries(SLOTS, 0);

pub fn to_vtep(ctx: &TcContext, src: u32, dst: u32, ifindex: u32) -> Result<NextHop, Reason> {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    // The address's last octet and the bits above it: hosts of one subnet differ there.
    let slot = OVL_NEXT_HOPS.get_ptr_mut(u32::from_be(dst) & (SLOTS - 1));
    if let Some(slot) = slot {
        // SAFETY: this CPU's copy of the slot, which only this CPU touches, and only
        // while this program runs.
        let hop = unsafe { *slot };
        if hop.vtep == dst && hop.expires_ns > now {
            return Ok(NextHop::Resolved { ifindex: hop.ifindex, smac: hop.smac, dmac: hop.dmac });
        }
    }
    let hop = fib_lookup(ctx, src, dst, ifindex)?;
    if let (NextHop::Resolved { ifindex, smac, dmac }, Some(slot)) = (&hop, slot) {
        let entry = CachedHop {
            expires_ns: now + CACHE_NS,
            vtep: dst,
            ifindex: *ifindex,
            smac: *smac,
            dmac: *dmac,
            _pad: [0; 4],
        };
        // SAFETY: as above.
        unsafe { *slot = entry };
    }
    Ok(hop)
}

fn fib_lookup(ctx: &TcContext, src: u32, dst: u32, ifindex: u32) -> Result<NextHop, Reason> {
    // SAFETY: zeroed is a valid bpf_fib_lookup; the helper reads and writes only it.
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = IPPROTO_UDP;
    fib.ifindex = ifindex;
    fib.__bindgen_anon_3.ipv4_src = src;
    fib.__bindgen_anon_4.ipv4_dst = dst;
    // SAFETY: as above.
    let rc =
        unsafe { bpf_fib_lookup(ctx.skb.skb as *mut _, &mut fib, core::mem::size_of::<bpf_fib_lookup>() as i32, 0) };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(NextHop::Resolved { ifindex: fib.ifindex, smac: fib.smac, dmac: fib.dmac }),
        // SAFETY: after a lookup the kernel has put the next hop in ipv4_dst.
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            Ok(NextHop::Unresolved { ifindex: fib.ifindex, gateway: unsafe { fib.__bindgen_anon_4.ipv4_dst } })
        }
        BPF_FIB_LKUP_RET_FWD_DISABLED => Ok(NextHop::ByOutputRoute { ifindex }),
        _ => Err(Reason::NoRouteToVtep),
    }
}
