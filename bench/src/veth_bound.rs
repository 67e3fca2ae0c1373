//! The benchmark's reference path: containers behind a veth, carried between hosts
//! with no overlay by one TC redirect each way (bench/ebpf `bound.rs`): out of the
//! underlay readdressed to the other host, and into the container with
//! `redirect_peer`. It does what this datapath does minus the encapsulation, so it
//! is the most any overlay for veth-attached containers can reach on this kernel.

use crate::{
    ebpf::{BenchEbpf, BoundHopSpec, Placement},
    links::{mac_of, pin_neighbour},
};

/// Programs every host so that every container reaches every other, and attaches the
/// program to each container's veth. The underlay's attachment is the caller's to
/// switch ([`attach_underlay`]), since it competes with this datapath's own program.
pub fn connect(objects: &mut [BenchEbpf], placement: &[Placement]) -> anyhow::Result<()> {
    for p in placement {
        let veth_mac = mac_of(&p.host.ns, &p.container.host_interface)?;
        for other in placement {
            if other.container.ip != p.container.ip {
                // The program readdresses every frame: any MAC spares the container an ARP.
                pin_neighbour(&p.container.ns, "eth0", other.container.ip, veth_mac)?;
            }
        }
        let local = BoundHopSpec {
            ip: p.container.ip,
            interface: p.container.host_interface.clone(),
            to_peer: true,
            dmac: p.container.mac,
            smac: veth_mac,
        };
        let object = &mut objects[p.host_index];
        object.set_bound_hop(&local)?;
        object.attach_bound(&p.container.host_interface)?;
        let there = mac_of(&p.host.ns, &p.host.interface)?;
        for other in placement.iter().filter(|o| o.host_index != p.host_index) {
            let remote = BoundHopSpec {
                ip: p.container.ip,
                interface: other.host.interface.clone(),
                to_peer: false,
                dmac: there,
                smac: mac_of(&other.host.ns, &other.host.interface)?,
            };
            objects[other.host_index].set_bound_hop(&remote)?;
        }
    }
    Ok(())
}

/// Attaches or detaches the reference program on every host's underlay interface.
pub fn attach_underlay(objects: &mut [BenchEbpf], interface: &str, attached: bool) -> anyhow::Result<()> {
    for object in objects {
        if attached { object.attach_bound(interface)? } else { object.detach_bound(interface)? }
    }
    Ok(())
}
