//! Every path the datapath figures compare, built once on the same two simulated hosts
//! (`h1`, `h2`): the raw underlay, the bound (`veth_bound`), the floor (`encap_floor`),
//! Docker's kernel
//! VXLAN+bridge, Flannel's vxlan backend (`flannel_peer`), Cilium's tunnel mode
//! (`tunnel_peer`) and this datapath. [`Paths::select`] leaves on the underlay only the
//! program the path being measured needs; [`Paths::ends`] names its client and server.

use std::net::Ipv4Addr;

use overlay_bench_common::program_names as bench_programs;
use overlay_common::program_names;
use overlay_tests::{Container, ContainerSpec, Host, Lab, datapath::HostDatapath, kernel_vxlan::KernelVxlan};
use serde::Serialize;

use crate::{
    ebpf::{BenchEbpf, Placement},
    encap_floor, flannel_peer,
    program_cost::ProgramAt,
    tunnel_peer, veth_bound,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// Host to host: what the containers' traffic would get with no container at all.
    Underlay,
    /// Containers behind a veth, one TC redirect each way, no overlay (`veth_bound`):
    /// the bound for any overlay of veth-attached containers.
    VethBound,
    /// The bound plus VXLAN and nothing else (`encap_floor`): the least work of an eBPF
    /// VXLAN overlay, so the most it can reach.
    EncapFloor,
    /// Docker's overlay driver: bridge + kernel VXLAN, static FDB, proxy ARP.
    KernelVxlan,
    /// Flannel's vxlan backend: bridge, routed subnets, `flannel.1` (`flannel_peer`).
    FlannelStyle,
    /// Cilium's tunnel mode: set_tunnel_key, collect_md VXLAN, redirect_peer (`tunnel_peer`).
    CiliumStyle,
    /// This datapath (overlay-ebpf).
    Ebpf,
}

impl PathKind {
    pub const ALL: [PathKind; 7] = [
        PathKind::Underlay,
        PathKind::VethBound,
        PathKind::EncapFloor,
        PathKind::KernelVxlan,
        PathKind::FlannelStyle,
        PathKind::CiliumStyle,
        PathKind::Ebpf,
    ];
    /// The overlays this datapath is compared with.
    pub const PEERS: [PathKind; 3] = [PathKind::KernelVxlan, PathKind::FlannelStyle, PathKind::CiliumStyle];

    pub fn label(self) -> &'static str {
        match self {
            PathKind::Underlay => "raw underlay",
            PathKind::VethBound => "veth, no overlay",
            PathKind::EncapFloor => "veth + bare VXLAN",
            PathKind::KernelVxlan => "kernel VXLAN+bridge",
            PathKind::FlannelStyle => "Flannel-style vxlan",
            PathKind::CiliumStyle => "Cilium-style tunnel",
            PathKind::Ebpf => "eBPF overlay (this)",
        }
    }

    /// The column heading of the markdown tables.
    pub fn heading(self) -> &'static str {
        match self {
            PathKind::Underlay => "raw underlay",
            PathKind::VethBound => "bound: veth, no overlay",
            PathKind::EncapFloor => "floor: bound + bare VXLAN",
            PathKind::KernelVxlan => "kernel VXLAN+bridge (Docker)",
            PathKind::FlannelStyle => "Flannel-style",
            PathKind::CiliumStyle => "Cilium-style",
            PathKind::Ebpf => "this datapath",
        }
    }
}

/// The two ends of one path: client side and server side namespaces and the server's address.
pub struct Ends {
    pub client_ns: String,
    pub server_ns: String,
    pub server_ip: Ipv4Addr,
}

/// The lab with every path built; dropping it tears the lab down (the programs and the
/// datapaths first: fields drop in order).
pub struct Paths {
    objects: Vec<BenchEbpf>,
    dps: Vec<HostDatapath>,
    pub lab: Lab,
    pub h1: Host,
    pub h2: Host,
    /// Client and server container of each overlay path, and of the bound.
    kernel: [Container; 2],
    flannel: Vec<Container>,
    ebpf: [Container; 2],
    cilium: [Container; 2],
    bound: [Container; 2],
    floor: [Container; 2],
}

impl Paths {
    pub fn build() -> anyhow::Result<Paths> {
        let mut lab = Lab::builder("bench").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
        let (h1, h2) = (lab.host("h1").clone(), lab.host("h2").clone());
        // Hosts forward IPv4, as dockerd makes every Docker host do: the datapath then gets
        // the next hop's MACs from the FIB helper (and caches them), see docs/datapath.md.
        // Flannel's routed subnets need it too.
        for host in [&h1, &h2] {
            overlay_tests::cmd::run_in(&host.ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        }

        // Kernel path: what Docker's overlay driver builds.
        const KERNEL_VNI: u32 = 10;
        let k1 = lab.add_container("h1", &ContainerSpec::new("k1", Ipv4Addr::new(10, 0, 8, 2)))?;
        let k2 = lab.add_container("h2", &ContainerSpec::new("k2", Ipv4Addr::new(10, 0, 8, 3)))?;
        for (host, local, remote, remote_host) in [(&h1, &k1, &k2, &h2), (&h2, &k2, &k1, &h1)] {
            let kernel = KernelVxlan::create(host, KERNEL_VNI, host.ip)?;
            kernel.attach(local)?;
            kernel.add_remote(remote, remote_host.ip)?;
        }

        // Flannel-style: a subnet per host.
        let flannel = flannel_peer::connect(
            &mut lab,
            "f",
            &[
                flannel_peer::Member { host: &h1, subnet: [10, 0, 5] },
                flannel_peer::Member { host: &h2, subnet: [10, 0, 6] },
            ],
        )?;

        // This datapath.
        const VNI: u32 = 20;
        let e1 = lab.add_container("h1", &ContainerSpec::new("e1", Ipv4Addr::new(10, 0, 9, 2)))?;
        let e2 = lab.add_container("h2", &ContainerSpec::new("e2", Ipv4Addr::new(10, 0, 9, 3)))?;
        let mut dps = vec![HostDatapath::start(&h1)?, HostDatapath::start(&h2)?];
        overlay_tests::datapath::full_mesh(&mut dps, VNI, Ipv4Addr::new(10, 0, 9, 1), &[(0, &e1), (1, &e2)])?;
        // The bench's own programs, after the datapath: the XDP experiment adopts its maps.
        let mut objects = vec![BenchEbpf::load(&h1.ns, &h1.pin_dir)?, BenchEbpf::load(&h2.ns, &h2.pin_dir)?];

        // Cilium-style: the tunnel MTU, as this datapath's.
        let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 4, 2)))?;
        let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 4, 3)))?;
        tunnel_peer::connect(
            &mut objects,
            &[
                Placement { host: &h1, host_index: 0, container: &c1 },
                Placement { host: &h2, host_index: 1, container: &c2 },
            ],
        )?;

        // The bound: no overlay, so the full 1500-byte MTU.
        let mut bound = |host: &str, name: &str, ip: Ipv4Addr| {
            lab.add_container(host, &ContainerSpec { mtu: 1500, ..ContainerSpec::new(name, ip) })
        };
        let b1 = bound("h1", "b1", Ipv4Addr::new(10, 0, 7, 2))?;
        let b2 = bound("h2", "b2", Ipv4Addr::new(10, 0, 7, 3))?;
        veth_bound::connect(
            &mut objects,
            &[
                Placement { host: &h1, host_index: 0, container: &b1 },
                Placement { host: &h2, host_index: 1, container: &b2 },
            ],
        )?;

        // The floor: VXLAN, so the tunnel MTU.
        const FLOOR_VNI: u32 = 30;
        let f1 = lab.add_container("h1", &ContainerSpec::new("v1", Ipv4Addr::new(10, 0, 3, 2)))?;
        let f2 = lab.add_container("h2", &ContainerSpec::new("v2", Ipv4Addr::new(10, 0, 3, 3)))?;
        encap_floor::connect(
            &mut objects,
            FLOOR_VNI,
            &[
                Placement { host: &h1, host_index: 0, container: &f1 },
                Placement { host: &h2, host_index: 1, container: &f2 },
            ],
        )?;
        Ok(Paths {
            objects,
            dps,
            lab,
            h1,
            h2,
            kernel: [k1, k2],
            flannel,
            ebpf: [e1, e2],
            cilium: [c1, c2],
            bound: [b1, b2],
            floor: [f1, f2],
        })
    }

    /// The client (on h1) and server (on h2) of `path`.
    pub fn ends(&self, path: PathKind) -> Ends {
        let (client, server) = match path {
            PathKind::Underlay => {
                return Ends { client_ns: self.h1.ns.clone(), server_ns: self.h2.ns.clone(), server_ip: self.h2.ip };
            }
            PathKind::VethBound => (&self.bound[0], &self.bound[1]),
            PathKind::EncapFloor => (&self.floor[0], &self.floor[1]),
            PathKind::KernelVxlan => (&self.kernel[0], &self.kernel[1]),
            PathKind::FlannelStyle => (&self.flannel[0], &self.flannel[1]),
            PathKind::CiliumStyle => (&self.cilium[0], &self.cilium[1]),
            PathKind::Ebpf => (&self.ebpf[0], &self.ebpf[1]),
        };
        Ends { client_ns: client.ns.clone(), server_ns: server.ns.clone(), server_ip: server.ip }
    }

    /// The programs whose run time is measured under the 64-byte load: the sender's on
    /// the client's veth, the receiver's where the traffic arrives on the server's host.
    pub fn programs(&self, path: PathKind) -> Vec<ProgramAt> {
        let at = |program, place, ns: &str, interface: &str| ProgramAt {
            program,
            place,
            ns: ns.to_owned(),
            interface: interface.to_owned(),
        };
        let (h1, h2) = (&self.h1, &self.h2);
        match path {
            PathKind::Ebpf => vec![
                at(program_names::FROM_CONTAINER, "sender, container veth", &h1.ns, &self.ebpf[0].host_interface),
                at(program_names::FROM_UNDERLAY, "receiver, underlay eth0", &h2.ns, &h2.interface),
            ],
            PathKind::CiliumStyle => vec![
                at(
                    bench_programs::TUNNEL_FROM_CONTAINER,
                    "sender, container veth",
                    &h1.ns,
                    &self.cilium[0].host_interface,
                ),
                at(
                    bench_programs::TUNNEL_FROM_OVERLAY,
                    "receiver, collect_md VXLAN device",
                    &h2.ns,
                    tunnel_peer::DEVICE,
                ),
            ],
            PathKind::VethBound => vec![
                at(bench_programs::BOUND_REDIRECT, "sender, container veth", &h1.ns, &self.bound[0].host_interface),
                at(bench_programs::BOUND_REDIRECT, "receiver, underlay eth0", &h2.ns, &h2.interface),
            ],
            PathKind::EncapFloor => vec![
                at(bench_programs::FLOOR_ENCAPSULATE, "sender, container veth", &h1.ns, &self.floor[0].host_interface),
                at(bench_programs::FLOOR_DECAPSULATE, "receiver, underlay eth0", &h2.ns, &h2.interface),
            ],
            _ => Vec::new(),
        }
    }

    /// Leaves on the hosts' underlay interface (the same name on every host) only the
    /// program `path` needs, if any. The underlay programs are attached only while their
    /// path is measured: the kernel path's VXLAN would otherwise be ours to judge, the raw
    /// underlay is measured with no program in its way, and whichever of the two programs
    /// runs first passes the other's packets to the host.
    pub fn select(&mut self, path: PathKind) -> anyhow::Result<()> {
        let interface = self.h1.interface.clone();
        veth_bound::attach_underlay(&mut self.objects, &interface, false)?;
        encap_floor::attach_underlay(&mut self.objects, &interface, false)?;
        for dp in self.dps.iter_mut() {
            let datapath = &mut dp.datapath;
            overlay::netns::run_in(&dp.ns, || {
                if path == PathKind::Ebpf { datapath.attach_underlay() } else { datapath.detach_underlay() }
            })??;
        }
        if path == PathKind::VethBound {
            veth_bound::attach_underlay(&mut self.objects, &interface, true)?;
        }
        if path == PathKind::EncapFloor {
            encap_floor::attach_underlay(&mut self.objects, &interface, true)?;
        }
        Ok(())
    }
}
