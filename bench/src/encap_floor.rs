//! The benchmark's floor: containers behind a veth, carried between hosts in VXLAN by
//! the least an eBPF datapath can do (bench/ebpf `floor.rs`): the bound's one lookup
//! and redirect each way plus making room for, writing and stripping the outer
//! headers. Where the bound tells what any overlay of veth-attached containers can
//! reach, the floor tells what a VXLAN one can; this datapath does the same kernel
//! work and adds its checks, counters and next-hop cache. The floor's veths get the
//! datapath's headroom for the 50 bytes (ports of the host's `encap-room` bridge, see
//! overlay-userspace `datapath/headroom.rs`): without it every packet's head is
//! reallocated, and the floor would not be the least work.

use overlay_bench_common::program_names;
use overlay_tests::{cmd, lab::Host};

use crate::{
    ebpf::{BenchEbpf, FloorHopSpec, Placement},
    links::{mac_of, pin_neighbour},
};

/// Programs every host so that every container reaches every other across hosts (the
/// floor has no local delivery), and attaches the encapsulation to each container's
/// veth. The underlay's attachment is the caller's to switch ([`attach_underlay`]).
pub fn connect(objects: &mut [BenchEbpf], vni: u32, placement: &[Placement]) -> anyhow::Result<()> {
    for p in placement {
        let veth_mac = mac_of(&p.host.ns, &p.container.host_interface)?;
        let underlay_mac = mac_of(&p.host.ns, &p.host.interface)?;
        lend_headroom(p.host, &p.container.host_interface)?;
        let object = &mut objects[p.host_index];
        object.set_floor_hop(&FloorHopSpec::Local {
            ip: p.container.ip,
            interface: p.container.host_interface.clone(),
            mac: p.container.mac,
            host_mac: veth_mac,
        })?;
        object.attach_tc(program_names::FLOOR_ENCAPSULATE, &p.container.host_interface)?;
        for other in placement.iter().filter(|o| o.host_index != p.host_index) {
            // The program readdresses every frame: any MAC spares the container an ARP.
            pin_neighbour(&p.container.ns, "eth0", other.container.ip, veth_mac)?;
            objects[p.host_index].set_floor_hop(&FloorHopSpec::Remote {
                ip: other.container.ip,
                mac: other.container.mac,
                vni,
                local_vtep: p.host.ip,
                remote_vtep: other.host.ip,
                interface: p.host.interface.clone(),
                smac: underlay_mac,
                dmac: mac_of(&other.host.ns, &other.host.interface)?,
            })?;
        }
    }
    Ok(())
}

/// Makes `interface` a port of the bridge the host's datapath made for headroom, as the
/// datapath does its own veths (IPv6 off first, so the port sends nothing).
fn lend_headroom(host: &Host, interface: &str) -> anyhow::Result<()> {
    let ipv6 = format!("net.ipv6.conf.{interface}.disable_ipv6=1");
    cmd::run_in(&host.ns, &["sysctl", "-qw", &ipv6])?;
    cmd::ip(&host.ns, &["link", "set", interface, "master", overlay::datapath::HEADROOM_BRIDGE])?;
    Ok(())
}

/// Attaches or detaches the floor's decapsulation on every host's underlay interface.
pub fn attach_underlay(objects: &mut [BenchEbpf], interface: &str, attached: bool) -> anyhow::Result<()> {
    for object in objects {
        if attached {
            object.attach_tc(program_names::FLOOR_DECAPSULATE, interface)?
        } else {
            object.detach_tc(program_names::FLOOR_DECAPSULATE, interface)?
        }
    }
    Ok(())
}
