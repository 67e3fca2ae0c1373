//! The benchmark's eBPF object. Nothing here is part of the product: the agent's object
//! is overlay-ebpf's, and the agent never loads this one. Each program is a reference
//! path or an experiment that `cargo xtask bench` (or `underlay-hook-bench`) measures
//! against the datapath; the ones that reuse the datapath's maps adopt them from the
//! host's pins.
#![no_std]
#![no_main]

mod bound;
mod floor;
mod maps;
mod tunnel_peer;
mod xdp_decap;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

/// The datapath's decapsulation as XDP on the host's underlay interface, the
/// alternative to `overlay_from_underlay` kept for measuring the two (`xdp_decap.rs`).
#[xdp]
pub fn overlay_xdp_from_underlay(ctx: XdpContext) -> u32 {
    xdp_decap::run(&ctx)
}

/// The bound: the benchmark's reference path with no overlay (`bound.rs`).
#[classifier]
pub fn bench_bound_redirect(ctx: TcContext) -> i32 {
    bound::redirect(&ctx)
}

/// The floor: the bound plus VXLAN encapsulation, at the container's veth (`floor.rs`).
#[classifier]
pub fn bench_floor_encapsulate(ctx: TcContext) -> i32 {
    floor::encapsulate(&ctx)
}

/// The floor's decapsulation, at the underlay (`floor.rs`).
#[classifier]
pub fn bench_floor_decapsulate(ctx: TcContext) -> i32 {
    floor::decapsulate(&ctx)
}

/// Cilium-style tunnel mode, at the container's host-side veth (`tunnel_peer.rs`).
#[classifier]
pub fn peer_tunnel_from_container(ctx: TcContext) -> i32 {
    tunnel_peer::from_container(&ctx)
}

/// Cilium-style tunnel mode, at the collect_md VXLAN device (`tunnel_peer.rs`).
#[classifier]
pub fn peer_tunnel_from_overlay(ctx: TcContext) -> i32 {
    tunnel_peer::from_overlay(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it only satisfies no_std.
    loop {}
}
