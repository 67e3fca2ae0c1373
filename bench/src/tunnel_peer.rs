//! The Cilium-style peer of the benchmark (tunnel mode, built from the same kernel
//! primitives; bench/ebpf `tunnel_peer.rs` has the programs): on every host one VXLAN
//! device in external (collect_md) mode, a TC program on each container's host-side
//! veth that sets the tunnel key and redirects to it, and one on the device's ingress
//! that delivers with `bpf_redirect_peer`. ARP is answered in eBPF.

use overlay_bench_common::program_names;
use overlay_tests::cmd;

use crate::{
    ebpf::{BenchEbpf, Placement, TunnelAt},
    links::mac_of,
};

/// The collect_md device on every host.
pub const DEVICE: &str = "vxlan-md";
/// Its UDP port. Cilium's default is 8472; a collect_md device cannot share a port with
/// the other paths' VXLAN devices, so this one has its own (the port costs nothing).
pub const PORT: u16 = 8473;
pub const VNI: u32 = 30;

/// Creates the device on every host, fills the tables so that every container reaches
/// every other, and attaches both programs.
pub fn connect(objects: &mut [BenchEbpf], placement: &[Placement]) -> anyhow::Result<()> {
    let port = PORT.to_string();
    for (index, object) in objects.iter_mut().enumerate() {
        let Some(host) = placement.iter().find(|p| p.host_index == index).map(|p| p.host) else { continue };
        cmd::ip(&host.ns, &["link", "add", DEVICE, "type", "vxlan", "external", "dstport", &port, "nolearning"])?;
        cmd::ip(&host.ns, &["link", "set", DEVICE, "up"])?;
        object.set_tunnel_config(DEVICE, VNI)?;
        object.attach_tc(program_names::TUNNEL_FROM_OVERLAY, DEVICE)?;
    }
    for p in placement {
        let host_mac = mac_of(&p.host.ns, &p.container.host_interface)?;
        let at = TunnelAt::Local { host_interface: &p.container.host_interface, host_mac };
        let object = &mut objects[p.host_index];
        object.set_tunnel_endpoint(p.container.ip, p.container.mac, at)?;
        object.attach_tc(program_names::TUNNEL_FROM_CONTAINER, &p.container.host_interface)?;
        for other in placement.iter().filter(|o| o.host_index != p.host_index) {
            objects[other.host_index].set_tunnel_endpoint(
                p.container.ip,
                p.container.mac,
                TunnelAt::Remote { vtep: p.host.ip },
            )?;
        }
    }
    Ok(())
}
