//! A container behind a veth with no overlay at all: each host routes its containers'
//! addresses and its peers' containers over the underlay (proxy ARP on the host side of
//! the veth, a /32 route per container, IPv4 forwarding on, as on every Docker host).
//!
//! No encapsulation and no eBPF: the benchmark measures it as the bound for any
//! datapath whose containers sit behind a veth, which is what Docker gives a container.
//! What this path loses against the raw underlay is the veth's, not the overlay's.

use crate::{
    cmd,
    lab::{Container, Host},
};

/// Programs `placement` (each container with the host it lives on) so that every
/// container reaches every other through the hosts' routing tables.
pub fn connect(placement: &[(&Host, &Container)]) -> anyhow::Result<()> {
    for (host, container) in placement {
        cmd::run_in(&host.ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let proxy_arp = format!("net.ipv4.conf.{}.proxy_arp=1", container.host_interface);
        cmd::run_in(&host.ns, &["sysctl", "-qw", &proxy_arp])?;
        let local = format!("{}/32", container.ip);
        cmd::ip(&host.ns, &["route", "add", &local, "dev", &container.host_interface])?;
        for (other_host, other) in placement {
            if other_host.ns != host.ns {
                let remote = format!("{}/32", other.ip);
                cmd::ip(&host.ns, &["route", "add", &remote, "via", &other_host.ip.to_string()])?;
            }
        }
    }
    Ok(())
}
