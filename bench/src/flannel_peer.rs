//! The Flannel-style peer of the benchmark (its vxlan backend, built from the same
//! kernel primitives): containers on a bridge per host, each host with its own container
//! subnet, and the other hosts' subnets routed through a `flannel.1`-style VXLAN device
//! with learning off and, per remote host, a static neighbour (the remote device's
//! address on the subnet's `.0`) and a static FDB entry (its MAC → the host).

use std::net::Ipv4Addr;

use overlay::container::format_mac;
use overlay_tests::{
    ContainerSpec, Lab, cmd,
    lab::{Container, Host},
};

use crate::links::{mac_of, pin_neighbour};

pub const BRIDGE: &str = "cni0";
pub const DEVICE: &str = "flannel.1";
/// Flannel's default port (the kernel's historical VXLAN port).
pub const PORT: u16 = 8472;
pub const VNI: u32 = 1;

/// One host of the path: its container subnet is `subnet.0/24`.
pub struct Member<'a> {
    pub host: &'a Host,
    pub subnet: [u8; 3],
}

fn address(subnet: [u8; 3], last: u8) -> Ipv4Addr {
    Ipv4Addr::new(subnet[0], subnet[1], subnet[2], last)
}

/// Builds the path on every member and one container (`NAME-N`, address `.2`) on each,
/// and returns the containers in the order of `members`.
pub fn connect(lab: &mut Lab, name: &str, members: &[Member]) -> anyhow::Result<Vec<Container>> {
    let mut containers = Vec::new();
    let port = PORT.to_string();
    let vni = VNI.to_string();
    for (i, m) in members.iter().enumerate() {
        let ns = &m.host.ns;
        let gateway = address(m.subnet, 1);
        cmd::ip(ns, &["link", "add", BRIDGE, "type", "bridge"])?;
        cmd::ip(ns, &["addr", "add", &format!("{gateway}/24"), "dev", BRIDGE])?;
        cmd::ip(ns, &["link", "set", BRIDGE, "up"])?;
        let spec = ContainerSpec {
            gateway: Some(gateway),
            ..ContainerSpec::new(&format!("{name}{}", i + 1), address(m.subnet, 2))
        };
        let container = lab.add_container(&m.host.name, &spec)?;
        cmd::ip(ns, &["link", "set", &container.host_interface, "master", BRIDGE])?;
        let local = m.host.ip.to_string();
        cmd::ip(
            ns,
            &[
                "link",
                "add",
                DEVICE,
                "type",
                "vxlan",
                "id",
                &vni,
                "local",
                &local,
                "dev",
                &m.host.interface,
                "dstport",
                &port,
                "nolearning",
            ],
        )?;
        cmd::ip(ns, &["addr", "add", &format!("{}/32", address(m.subnet, 0)), "dev", DEVICE])?;
        cmd::ip(ns, &["link", "set", DEVICE, "up"])?;
        containers.push(container);
    }
    for m in members {
        for other in members.iter().filter(|o| o.host.ns != m.host.ns) {
            let remote_mac = mac_of(&other.host.ns, DEVICE)?;
            let remote_device = address(other.subnet, 0).to_string();
            let ns = &m.host.ns;
            cmd::ip(
                ns,
                &[
                    "route",
                    "add",
                    &format!("{}/24", address(other.subnet, 0)),
                    "via",
                    &remote_device,
                    "dev",
                    DEVICE,
                    "onlink",
                ],
            )?;
            pin_neighbour(ns, DEVICE, &remote_device, remote_mac)?;
            let remote_host = other.host.ip.to_string();
            cmd::run(&[
                "bridge",
                "-n",
                ns,
                "fdb",
                "append",
                &format_mac(remote_mac),
                "dev",
                DEVICE,
                "dst",
                &remote_host,
                "self",
                "permanent",
            ])?;
        }
    }
    Ok(containers)
}
