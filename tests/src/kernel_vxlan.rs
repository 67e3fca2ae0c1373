//! The path Docker's overlay driver builds, on a simulated host: a Linux bridge with a
//! kernel VXLAN device (no learning, proxy ARP, static FDB and neighbour entries).

use std::net::Ipv4Addr;

use overlay::container::format_mac;

use crate::{
    cmd,
    lab::{Container, Host},
};

/// The bridge and VXLAN device of one network on one host.
pub struct KernelVxlan {
    pub ns: String,
    pub bridge: String,
    pub vxlan: String,
}

impl KernelVxlan {
    /// Creates `vx-VNI` (local `local`, UDP 4789, MTU 1450) enslaved to `br-VNI`.
    pub fn create(host: &Host, vni: u32, local: Ipv4Addr) -> anyhow::Result<Self> {
        let ns = host.ns.clone();
        let bridge = format!("br-{vni}");
        let vxlan = format!("vx-{vni}");
        let vni_s = vni.to_string();
        let local_s = local.to_string();
        cmd::ip(&ns, &["link", "add", &bridge, "type", "bridge"])?;
        cmd::ip(
            &ns,
            &[
                "link",
                "add",
                &vxlan,
                "type",
                "vxlan",
                "id",
                &vni_s,
                "dstport",
                "4789",
                "local",
                &local_s,
                "dev",
                &host.interface,
                "nolearning",
                "proxy",
            ],
        )?;
        cmd::ip(&ns, &["link", "set", &vxlan, "mtu", "1450", "master", &bridge, "up"])?;
        cmd::ip(&ns, &["link", "set", &bridge, "up"])?;
        Ok(KernelVxlan { ns, bridge, vxlan })
    }

    /// Puts a container's host-side veth on the bridge.
    pub fn attach(&self, container: &Container) -> anyhow::Result<()> {
        cmd::ip(&self.ns, &["link", "set", &container.host_interface, "master", &self.bridge])?;
        Ok(())
    }

    /// A container behind `vtep`: `bridge fdb append MAC dev vx dst VTEP` and
    /// `ip neigh add IP lladdr MAC dev vx nud permanent`.
    pub fn add_remote(&self, container: &Container, vtep: Ipv4Addr) -> anyhow::Result<()> {
        let mac = format_mac(container.mac);
        let vtep = vtep.to_string();
        cmd::run(&[
            "bridge",
            "-n",
            &self.ns,
            "fdb",
            "append",
            &mac,
            "dev",
            &self.vxlan,
            "dst",
            &vtep,
            "self",
            "permanent",
        ])?;
        cmd::ip(
            &self.ns,
            &["neigh", "add", &container.ip.to_string(), "lladdr", &mac, "dev", &self.vxlan, "nud", "permanent"],
        )?;
        Ok(())
    }
}
