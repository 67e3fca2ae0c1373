//! The eBPF datapath of a simulated host, driven directly through the typed API (the
//! agent does the same from the cluster store).

use std::net::Ipv4Addr;

use anyhow::Context;
use overlay::{
    datapath::{
        CounterSnapshot, Datapath, DatapathConfig, LocalEndpointSpec, NetworkSpec, RemoteEndpointSpec, ensure_bpffs,
    },
    netns,
};

use crate::lab::{BPFFS, Container, Host};

/// The gateway MAC the tests give every network (locally administered).
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// A host's datapath. Calls that look up interfaces run inside the host's namespace.
pub struct HostDatapath {
    pub datapath: Datapath,
    pub ns: String,
    pub vtep: Ipv4Addr,
}

impl HostDatapath {
    /// Loads and attaches the datapath on `host`'s underlay interface.
    pub fn start(host: &Host) -> anyhow::Result<Self> {
        ensure_bpffs(std::path::Path::new(BPFFS))?;
        let config = DatapathConfig {
            pin_dir: host.pin_dir.clone(),
            vtep_ip: host.ip,
            underlay_interface: host.interface.clone(),
        };
        let datapath = netns::run_in(&host.ns, move || -> anyhow::Result<Datapath> {
            let mut datapath = Datapath::load(config)?;
            datapath.attach_underlay()?;
            Ok(datapath)
        })?
        .with_context(|| format!("starting the datapath on {}", host.name))?;
        Ok(HostDatapath { datapath, ns: host.ns.clone(), vtep: host.ip })
    }

    pub fn add_network(&mut self, vni: u32, gateway: Ipv4Addr) -> anyhow::Result<()> {
        self.datapath.add_network(NetworkSpec { vni, gateway, gateway_mac: GATEWAY_MAC })?;
        Ok(())
    }

    /// Attaches to `container`'s veth and makes it a local endpoint of `vni`.
    pub fn add_local(&mut self, vni: u32, container: &Container) -> anyhow::Result<()> {
        let spec = local_spec(vni, container);
        let datapath = &mut self.datapath;
        netns::run_in(&self.ns, move || datapath.add_local_endpoint(&spec))??;
        Ok(())
    }

    pub fn remove_local(&mut self, vni: u32, container: &Container) -> anyhow::Result<()> {
        let spec = local_spec(vni, container);
        let datapath = &mut self.datapath;
        netns::run_in(&self.ns, move || datapath.remove_local_endpoint(&spec))??;
        Ok(())
    }

    /// Makes `container`, living behind `vtep`, reachable from this host.
    pub fn add_remote(&mut self, vni: u32, container: &Container, vtep: Ipv4Addr) -> anyhow::Result<()> {
        self.datapath.add_remote_endpoint(RemoteEndpointSpec { vni, ip: container.ip, mac: container.mac, vtep })?;
        Ok(())
    }

    pub fn add_member(&mut self, vtep: Ipv4Addr) -> anyhow::Result<()> {
        self.datapath.add_member(vtep)?;
        Ok(())
    }

    pub fn counters(&mut self) -> anyhow::Result<CounterSnapshot> {
        Ok(self.datapath.counters()?)
    }
}

/// The datapath entry for a lab container on `vni`: the same fields the agent's
/// [`overlay::endpoint::EndpointRecord::local_spec`] fills from a record.
fn local_spec(vni: u32, container: &Container) -> LocalEndpointSpec {
    LocalEndpointSpec { vni, ip: container.ip, mac: container.mac, host_interface: container.host_interface.clone() }
}

/// Programs a full mesh: every host is a member of every other host and knows every
/// container of `vni` on the others. `placement` pairs each container with its host's
/// index in `datapaths`.
pub fn full_mesh(
    datapaths: &mut [HostDatapath],
    vni: u32,
    gateway: Ipv4Addr,
    placement: &[(usize, &Container)],
) -> anyhow::Result<()> {
    let vteps: Vec<Ipv4Addr> = datapaths.iter().map(|d| d.vtep).collect();
    for (i, dp) in datapaths.iter_mut().enumerate() {
        dp.add_network(vni, gateway)?;
        for (j, vtep) in vteps.iter().enumerate() {
            if i != j {
                dp.add_member(*vtep)?;
            }
        }
        for (host_index, container) in placement {
            if *host_index == i {
                dp.add_local(vni, container)?;
            } else {
                dp.add_remote(vni, container, vteps[*host_index])?;
            }
        }
    }
    Ok(())
}

/// The names of the programs attached at the TCX ingress of `interface` in namespace
/// `ns`, as the kernel reports them (`BPF_PROG_QUERY`; the first 15 bytes of each name).
/// This bpftool's `net show` does not list TCX links, so it cannot answer this.
pub fn tcx_ingress_programs(ns: &str, interface: &str) -> anyhow::Result<Vec<String>> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let (_, programs) = netns::run_in(ns, || SchedClassifier::query_tcx(interface, TcAttachType::Ingress))?
        .with_context(|| format!("TCX ingress programs of {interface} in {ns}"))?;
    Ok(programs.iter().map(|p| p.name_as_str().unwrap_or("?").to_owned()).collect())
}

/// Whether the kernel still has the BPF link `id` (`bpftool link show id ID`).
pub fn link_exists(id: u32) -> bool {
    aya::programs::loaded_links().filter_map(Result::ok).any(|link| link.id() == id)
}

/// The ID of the link pinned at `pin` (`bpftool link show pinned PIN`).
pub fn pinned_link_id(pin: &std::path::Path) -> anyhow::Result<u32> {
    let link = aya::programs::links::PinnedLink::from_pin(pin).with_context(|| format!("{}", pin.display()))?;
    Ok(aya::programs::links::FdLink::from(link).info()?.id())
}
