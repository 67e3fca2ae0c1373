//! The benchmark's own eBPF object (bench/ebpf), loaded on a simulated host next to the
//! datapath: the bound's program, the Cilium-style peer's and the XDP decapsulation
//! experiment. The agent never
//! loads any of it. Maps the experiments share with the datapath (the XDP program reads
//! the forwarding tables and bumps the counters) are adopted from the host's pins, so
//! the host's datapath must be loaded first; the benchmark's own maps are not pinned.
//! Links are held by this process, not pinned: they go when it does.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use anyhow::Context;
use aya::{
    Ebpf, EbpfLoader,
    maps::HashMap,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
};
use overlay::netns;
use overlay_bench_common::{BoundHop, FloorHop, TunnelConfig, TunnelEndpoint, map_names, program_names};
use overlay_common::ipv4_key;
use overlay_tests::lab::{Container, Host};

/// The object file built from bench/ebpf by this crate's build script.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/overlay-bench-ebpf.o"));

/// A container of one of the reference paths or peers the bench object carries, and its
/// host; `host_index` indexes the hosts' [`BenchEbpf`] objects.
pub struct Placement<'a> {
    pub host: &'a Host,
    pub host_index: usize,
    pub container: &'a Container,
}

/// Where the bound's program sends packets for one container address.
#[derive(Clone, Debug)]
pub struct BoundHopSpec {
    pub ip: Ipv4Addr,
    /// The interface the packet leaves by, in the host's namespace.
    pub interface: String,
    /// Into the namespace of `interface`'s veth peer (`redirect_peer`), not out of it.
    pub to_peer: bool,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

/// Where the floor's programs send packets for one container address.
#[derive(Clone, Debug)]
pub enum FloorHopSpec {
    /// On this host, behind the host-side veth `interface` (MAC `host_mac`).
    Local { ip: Ipv4Addr, interface: String, mac: [u8; 6], host_mac: [u8; 6] },
    /// Behind `remote_vtep`, reached out of `interface` from `smac` to `dmac`.
    Remote {
        ip: Ipv4Addr,
        mac: [u8; 6],
        vni: u32,
        local_vtep: Ipv4Addr,
        remote_vtep: Ipv4Addr,
        interface: String,
        smac: [u8; 6],
        dmac: [u8; 6],
    },
}

/// Where a container of the Cilium-style path lives.
pub enum TunnelAt<'a> {
    Local { host_interface: &'a str, host_mac: [u8; 6] },
    Remote { vtep: Ipv4Addr },
}

/// The benchmark's object on one host.
pub struct BenchEbpf {
    ebpf: Ebpf,
    /// The host's namespace: interfaces are looked up and programs attached in it.
    ns: String,
    /// TC links by (program, interface).
    tc_links: BTreeMap<(&'static str, String), SchedClassifierLinkId>,
    underlay_xdp: Option<XdpLinkId>,
}

impl BenchEbpf {
    /// Loads the object for the host whose namespace is `ns` and whose datapath pins its
    /// maps under `pin_dir` (like `bpftool prog loadall ... pinmaps PIN_DIR/maps`).
    pub fn load(ns: &str, pin_dir: &Path) -> anyhow::Result<Self> {
        let maps = pin_dir.join("maps");
        let ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps)
            .load(OBJECT)
            .with_context(|| format!("loading the benchmark's eBPF object against {}", maps.display()))?;
        Ok(BenchEbpf { ebpf, ns: ns.to_owned(), tc_links: BTreeMap::new(), underlay_xdp: None })
    }

    /// Adds or replaces a hop of the bound (`OVL_BOUND_HOPS`).
    pub fn set_bound_hop(&mut self, spec: &BoundHopSpec) -> anyhow::Result<()> {
        let ifindex = self.ifindex(&spec.interface)?;
        let hop = BoundHop { ifindex, to_peer: u32::from(spec.to_peer), dmac: spec.dmac, smac: spec.smac };
        let map = self.ebpf.map_mut(map_names::BOUND_HOPS).context("no bound hops map in the bench object")?;
        let mut hops: HashMap<_, u32, BoundHop> = HashMap::try_from(map)?;
        hops.insert(ipv4_key(spec.ip.octets()), hop, 0)?;
        Ok(())
    }

    /// Attaches the bound's program at TCX ingress of `interface` (no-op when it is).
    /// On the underlay, attach it only while the datapath's own program is detached:
    /// whichever runs first passes the other's packets to the host.
    pub fn attach_bound(&mut self, interface: &str) -> anyhow::Result<()> {
        self.attach_tc(program_names::BOUND_REDIRECT, interface)
    }

    /// Detaches what [`BenchEbpf::attach_bound`] attached to `interface` (no-op when nothing is).
    pub fn detach_bound(&mut self, interface: &str) -> anyhow::Result<()> {
        self.detach_tc(program_names::BOUND_REDIRECT, interface)
    }

    /// Adds or replaces a hop of the floor (`OVL_FLOOR_HOPS`).
    pub fn set_floor_hop(&mut self, spec: &FloorHopSpec) -> anyhow::Result<()> {
        let (ip, hop) = match spec {
            FloorHopSpec::Local { ip, interface, mac, host_mac } => (
                *ip,
                FloorHop {
                    ifindex: self.ifindex(interface)?,
                    to_peer: 1,
                    dmac: *mac,
                    smac: *host_mac,
                    ..Default::default()
                },
            ),
            FloorHopSpec::Remote { ip, mac, vni, local_vtep, remote_vtep, interface, smac, dmac } => (
                *ip,
                FloorHop {
                    ifindex: self.ifindex(interface)?,
                    to_peer: 0,
                    local_vtep: ipv4_key(local_vtep.octets()),
                    remote_vtep: ipv4_key(remote_vtep.octets()),
                    vni: *vni,
                    dmac: *dmac,
                    smac: *smac,
                    inner_dmac: *mac,
                    _pad: [0; 2],
                },
            ),
        };
        let map = self.ebpf.map_mut(map_names::FLOOR_HOPS).context("no floor hops map in the bench object")?;
        let mut hops: HashMap<_, u32, FloorHop> = HashMap::try_from(map)?;
        hops.insert(ipv4_key(ip.octets()), hop, 0)?;
        Ok(())
    }

    /// The Cilium-style path's host configuration: its collect_md VXLAN device and VNI.
    pub fn set_tunnel_config(&mut self, vxlan_interface: &str, vni: u32) -> anyhow::Result<()> {
        let config = TunnelConfig { vxlan_ifindex: self.ifindex(vxlan_interface)?, vni };
        let map = self.ebpf.map_mut(map_names::TUNNEL_CONFIG).context("no tunnel config map in the bench object")?;
        let mut array: aya::maps::Array<_, TunnelConfig> = aya::maps::Array::try_from(map)?;
        array.set(0, config, 0)?;
        Ok(())
    }

    /// A container of the Cilium-style path: local behind `host_interface` (whose MAC
    /// is looked up here), or remote behind `vtep`.
    pub fn set_tunnel_endpoint(&mut self, ip: Ipv4Addr, mac: [u8; 6], at: TunnelAt<'_>) -> anyhow::Result<()> {
        let endpoint = match at {
            TunnelAt::Local { host_interface, host_mac } => {
                TunnelEndpoint { vtep: 0, ifindex: self.ifindex(host_interface)?, mac, host_mac }
            }
            TunnelAt::Remote { vtep } => {
                TunnelEndpoint { vtep: ipv4_key(vtep.octets()), ifindex: 0, mac, host_mac: [0; 6] }
            }
        };
        let map =
            self.ebpf.map_mut(map_names::TUNNEL_ENDPOINTS).context("no tunnel endpoint map in the bench object")?;
        let mut endpoints: HashMap<_, u32, TunnelEndpoint> = HashMap::try_from(map)?;
        endpoints.insert(ipv4_key(ip.octets()), endpoint, 0)?;
        Ok(())
    }

    /// Attaches a TC program of the object at TCX ingress of `interface` (no-op when it is).
    pub fn attach_tc(&mut self, program: &'static str, interface: &str) -> anyhow::Result<()> {
        let key = (program, interface.to_owned());
        if self.tc_links.contains_key(&key) {
            return Ok(());
        }
        let loaded = classifier(&mut self.ebpf, program)?;
        let options = TcAttachOptions::TcxOrder(LinkOrder::default());
        let link = netns::run_in(&self.ns, || loaded.attach_with_options(interface, TcAttachType::Ingress, options))?
            .with_context(|| format!("attaching {program} to {interface}"))?;
        self.tc_links.insert(key, link);
        Ok(())
    }

    /// Detaches what [`BenchEbpf::attach_tc`] attached (no-op when nothing is).
    pub fn detach_tc(&mut self, program: &'static str, interface: &str) -> anyhow::Result<()> {
        let Some(link) = self.tc_links.remove(&(program, interface.to_owned())) else { return Ok(()) };
        classifier(&mut self.ebpf, program)?.detach(link)?;
        Ok(())
    }

    /// Attaches the XDP decapsulation to the underlay interface (like `ip link set DEV
    /// xdp obj ...`), no-op when it is. Containers must have NAPI on their eth0 (GRO
    /// on, or an XDP program) or redirected frames are dropped by the veth.
    pub fn attach_underlay_xdp(&mut self, interface: &str) -> anyhow::Result<()> {
        if self.underlay_xdp.is_some() {
            return Ok(());
        }
        let program = xdp(&mut self.ebpf)?;
        let link = netns::run_in(&self.ns, || program.attach(interface, XdpMode::default()))?
            .with_context(|| format!("attaching XDP to {interface}"))?;
        self.underlay_xdp = Some(link);
        Ok(())
    }

    /// Detaches what [`BenchEbpf::attach_underlay_xdp`] attached (no-op when nothing is).
    pub fn detach_underlay_xdp(&mut self) -> anyhow::Result<()> {
        let Some(link) = self.underlay_xdp.take() else { return Ok(()) };
        xdp(&mut self.ebpf)?.detach(link)?;
        Ok(())
    }

    fn ifindex(&self, interface: &str) -> anyhow::Result<u32> {
        netns::run_in(&self.ns, || nix::net::if_::if_nametoindex(interface))?
            .with_context(|| format!("no interface {interface} in {}", self.ns))
    }
}

/// A TC program of the object, loaded the first time it is asked for.
fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut SchedClassifier> {
    let program: &mut SchedClassifier =
        ebpf.program_mut(name).with_context(|| format!("no program {name} in the bench object"))?.try_into()?;
    if program.fd().is_err() {
        program.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(program)
}

/// The XDP decapsulation, loaded the first time it is asked for.
fn xdp(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    let name = program_names::FROM_UNDERLAY_XDP;
    let program: &mut Xdp =
        ebpf.program_mut(name).with_context(|| format!("no program {name} in the bench object"))?.try_into()?;
    if program.fd().is_err() {
        program.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(program)
}
