//! The benchmark's reference path: containers behind a veth, carried between hosts
//! with no overlay by one TC redirect each way (overlay-ebpf `bound.rs`): out of the
//! underlay readdressed to the other host, and into the container with
//! `redirect_peer`. It does what this datapath does minus the encapsulation, so it
//! is the most any overlay for veth-attached containers can reach on this kernel.

use anyhow::Context;
use overlay::{
    container::{format_mac, parse_mac},
    datapath::BoundHopSpec,
    netns,
};

use crate::{
    cmd,
    datapath::HostDatapath,
    lab::{Container, Host},
};

/// A reference container and its host; `datapath` indexes the host's datapath.
pub struct Placement<'a> {
    pub host: &'a Host,
    pub datapath: usize,
    pub container: &'a Container,
}

/// Programs every host so that every container reaches every other, and attaches the
/// program to each container's veth. The underlay's attachment is the caller's to
/// switch ([`attach_underlay`]), since it competes with this datapath's own program.
pub fn connect(dps: &mut [HostDatapath], placement: &[Placement]) -> anyhow::Result<()> {
    for p in placement {
        let veth_mac = mac_of(&p.host.ns, &p.container.host_interface)?;
        for other in placement {
            if other.container.ip != p.container.ip {
                // The program readdresses every frame: any MAC spares the container an ARP.
                let lladdr = format_mac(veth_mac);
                let ip = other.container.ip.to_string();
                cmd::ip(
                    &p.container.ns,
                    &["neigh", "replace", &ip, "lladdr", &lladdr, "dev", "eth0", "nud", "permanent"],
                )?;
            }
        }
        let local = BoundHopSpec {
            ip: p.container.ip,
            interface: p.container.host_interface.clone(),
            to_peer: true,
            dmac: p.container.mac,
            smac: veth_mac,
        };
        let interface = p.container.host_interface.clone();
        let dp = &mut dps[p.datapath];
        netns::run_in(&p.host.ns, || -> anyhow::Result<()> {
            dp.datapath.set_bound_hop(&local)?;
            dp.datapath.attach_bound(&interface)?;
            Ok(())
        })??;
        let there = mac_of(&p.host.ns, &p.host.interface)?;
        for other in placement.iter().filter(|o| o.datapath != p.datapath) {
            let remote = BoundHopSpec {
                ip: p.container.ip,
                interface: other.host.interface.clone(),
                to_peer: false,
                dmac: there,
                smac: mac_of(&other.host.ns, &other.host.interface)?,
            };
            let dp = &mut dps[other.datapath];
            netns::run_in(&other.host.ns, || dp.datapath.set_bound_hop(&remote))??;
        }
    }
    Ok(())
}

/// Attaches or detaches the reference program on every host's underlay interface.
pub fn attach_underlay(dps: &mut [HostDatapath], interface: &str, attached: bool) -> anyhow::Result<()> {
    for dp in dps {
        let datapath = &mut dp.datapath;
        netns::run_in(&dp.ns, || {
            if attached { datapath.attach_bound(interface) } else { datapath.detach_bound(interface) }
        })??;
    }
    Ok(())
}

/// The MAC address of `dev` in `ns`.
fn mac_of(ns: &str, dev: &str) -> anyhow::Result<[u8; 6]> {
    let out = cmd::ip(ns, &["-j", "link", "show", "dev", dev])?;
    let links: serde_json::Value = serde_json::from_str(&out)?;
    let address = links[0]["address"].as_str().with_context(|| format!("no MAC for {dev} in {ns}"))?;
    parse_mac(address).map_err(|e| anyhow::anyhow!("{dev} in {ns}: {e}"))
}
