//! EXPERIMENT: TC or XDP for decapsulation on the underlay interface, measured side by
//! side on the same two simulated hosts (the setup of the bench's `datapath.rs`). The
//! XDP program is the bench object's (bench/ebpf `xdp_decap.rs`), not the agent's. The sending side
//! always encapsulates at TC; only the receiving hook changes. Variants alternate within
//! each round so drift on a busy machine hits them alike; the medians and every run
//! are printed, with ratios XDP/TC.
//!
//! ```text
//! cargo build --release -p overlay-bench && sudo target/release/underlay-hook-bench [--runs 5]
//! ```

use std::net::Ipv4Addr;

use anyhow::{Context, bail, ensure};
use overlay::netns;
use overlay_bench::{
    datapath::Metric,
    ebpf::BenchEbpf,
    experiment::{Ends, Rounds, Samples},
};
use overlay_common::{Direction, Reason};
use overlay_tests::{
    Container, ContainerSpec, Lab, cmd,
    datapath::{self, HostDatapath},
    traffic,
};

/// What this bench measures of each variant.
const METRICS: [Metric; 3] = [Metric::TcpThroughput, Metric::SmallPacketRate, Metric::Ping];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// Host to host, no program on the underlay, no overlay.
    Underlay,
    /// Today: TC ingress decap, redirect_peer; containers' eth0 as the lab makes them.
    Tc,
    /// TC decap under the conditions XDP needs (below): isolates their share.
    TcWire,
    /// XDP decap, XDP_REDIRECT to the host-side veth. Needs NAPI on the containers' eth0
    /// (GRO on) and full checksums on the wire: a veth underlay carries TCP with
    /// CHECKSUM_PARTIAL (never computed), which XDP_REDIRECT turns into a frame with a
    /// wrong checksum, so the hosts' eth0 computes checksums (`tx off`), as a NIC would.
    Xdp,
    /// As `TcWire`, but checksums (and segmentation) are done by the underlay bridge's
    /// port towards each host, like a NIC's TSO: the sending host keeps TSO.
    TcNic,
    /// As `Xdp`, with checksums and segmentation at the bridge port as in `TcNic`.
    XdpNic,
}

impl Variant {
    const ALL: [Variant; 6] =
        [Variant::Underlay, Variant::Tc, Variant::TcWire, Variant::Xdp, Variant::TcNic, Variant::XdpNic];
    fn label(self) -> &'static str {
        match self {
            Variant::Underlay => "raw underlay",
            Variant::Tc => "TC decap (today)",
            Variant::TcWire => "TC, GRO+wire csum",
            Variant::Xdp => "XDP, GRO+wire csum",
            Variant::TcNic => "TC, GRO+port csum",
            Variant::XdpNic => "XDP, GRO+port csum",
        }
    }
}

struct Setup<'a> {
    lab: &'a Lab,
    dps: &'a mut [HostDatapath],
    /// The bench object on each host, in the order of `dps`: it has the XDP program.
    objects: &'a mut [BenchEbpf],
    containers: [&'a Container; 2],
}

impl Setup<'_> {
    fn hooks(&mut self, tc: bool, xdp: bool) -> anyhow::Result<()> {
        for (dp, object) in self.dps.iter_mut().zip(self.objects.iter_mut()) {
            let datapath = &mut dp.datapath;
            // Never both at once: detach first, then attach.
            if !tc {
                netns::run_in(&dp.ns, || datapath.detach_underlay())??;
            }
            if !xdp {
                object.detach_underlay_xdp()?;
            }
            if tc {
                netns::run_in(&dp.ns, || datapath.attach_underlay())??;
            }
            if xdp {
                object.attach_underlay_xdp(&datapath.config().underlay_interface)?;
            }
        }
        Ok(())
    }

    fn container_gro(&self, on: bool) -> anyhow::Result<()> {
        for c in self.containers {
            cmd::run_in(&c.ns, &["ethtool", "-K", "eth0", "gro", if on { "on" } else { "off" }])?;
        }
        Ok(())
    }

    /// Whether the hosts' underlay eth0 leaves checksums to the receiver (veth default).
    fn underlay_tx_offload(&self, on: bool) -> anyhow::Result<()> {
        for dp in self.dps.iter() {
            cmd::run_in(&dp.ns, &["ethtool", "-K", "eth0", "tx", if on { "on" } else { "off" }])?;
        }
        Ok(())
    }

    /// Whether the underlay bridge's ports towards the hosts leave checksums to the
    /// receiver (veth default).
    fn bridge_port_tx_offload(&self, on: bool) -> anyhow::Result<()> {
        for i in 0..self.dps.len() {
            let port = format!("h{i}");
            cmd::run_in(&self.lab.underlay, &["ethtool", "-K", &port, "tx", if on { "on" } else { "off" }])?;
        }
        Ok(())
    }

    fn select(&mut self, variant: Variant) -> anyhow::Result<()> {
        self.underlay_tx_offload(!matches!(variant, Variant::TcWire | Variant::Xdp))?;
        self.bridge_port_tx_offload(!matches!(variant, Variant::TcNic | Variant::XdpNic))?;
        match variant {
            Variant::Underlay => {
                self.hooks(false, false)?;
                self.container_gro(false)
            }
            Variant::Tc => {
                self.hooks(true, false)?;
                self.container_gro(false)
            }
            Variant::TcWire | Variant::TcNic => {
                self.hooks(true, false)?;
                self.container_gro(true)
            }
            Variant::Xdp | Variant::XdpNic => {
                self.hooks(false, true)?;
                self.container_gro(true)
            }
        }
    }

    fn decapsulated(&mut self) -> anyhow::Result<u64> {
        let mut total = 0;
        for dp in self.dps.iter_mut() {
            total += dp.counters()?.packets(Reason::Decapsulated, Direction::FromUnderlay);
        }
        Ok(total)
    }

    /// Ping and TCP both ways between the containers, and the decapsulation counters
    /// must have moved on both hosts; fails loudly otherwise.
    fn check_overlay(&mut self, variant: Variant, port: &mut u16) -> anyhow::Result<()> {
        let before = self.decapsulated()?;
        let [a, b] = self.containers;
        for (from, to) in [(a, b), (b, a)] {
            traffic::ping_ok(&from.ns, to.ip, 5)
                .with_context(|| format!("{}: ping {} -> {}", variant.label(), from.name, to.name))?;
            *port += 1;
            let report = traffic::iperf3(self.lab, &to.ns, to.ip, &from.ns, *port, &["-t", "1"])
                .with_context(|| format!("{}: TCP {} -> {}", variant.label(), from.name, to.name))?;
            let bps = traffic::tcp_bits_per_second(&report)?;
            ensure!(bps > 1e6, "{}: TCP {} -> {} only {bps} bit/s", variant.label(), from.name, to.name);
            eprintln!(
                "  check {:<22} {} -> {}: ping 5/5, TCP {:.2} Gbit/s",
                variant.label(),
                from.name,
                to.name,
                bps / 1e9
            );
        }
        self.lab.stop_children();
        let decapsulated = self.decapsulated()? - before;
        ensure!(decapsulated > 0, "{}: nothing counted as decapsulated", variant.label());
        eprintln!("  check {:<22} decapsulated packets counted: {decapsulated}", variant.label());
        Ok(())
    }
}

fn measure(ends: &Ends, metric: Metric, r: &Rounds, port: u16) -> anyhow::Result<f64> {
    match metric {
        Metric::TcpThroughput => ends.tcp(r, port, false),
        Metric::SmallPacketRate => ends.small_udp(r, port),
        Metric::Ping => ends.ping(r),
        other => bail!("{other:?} is not measured by this bench"),
    }
}

fn main() -> anyhow::Result<()> {
    let rounds = Rounds::from_command_line(
        "TC or XDP for decapsulation on the underlay, measured side by side (docs/datapath.md)",
    );
    let mut lab = Lab::builder("hook").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let (h1, h2) = (lab.host("h1").clone(), lab.host("h2").clone());
    const VNI: u32 = 20;
    let e1 = lab.add_container("h1", &ContainerSpec::new("e1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let e2 = lab.add_container("h2", &ContainerSpec::new("e2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(&h1)?, HostDatapath::start(&h2)?];
    datapath::full_mesh(&mut dps, VNI, Ipv4Addr::new(10, 0, 9, 1), &[(0, &e1), (1, &e2)])?;
    let mut objects = vec![BenchEbpf::load(&h1.ns, &h1.pin_dir)?, BenchEbpf::load(&h2.ns, &h2.pin_dir)?];
    let mut setup = Setup { lab: &lab, dps: &mut dps, objects: &mut objects, containers: [&e1, &e2] };
    let mut port = 5400u16;

    // What XDP on a veth changes: the underlay-side peer loses software GSO, and
    // without NAPI on the container's eth0 redirected frames are dropped.
    let peer_gso = || -> anyhow::Result<String> {
        let out = cmd::run_in(&lab.underlay, &["ethtool", "-k", "h1"])?;
        Ok(out.lines().filter(|l| l.contains("segmentation-offload:")).map(str::trim).collect::<Vec<_>>().join("; "))
    };
    eprintln!("underlay peer of h2 eth0, no XDP: {}", peer_gso()?);
    setup.hooks(false, true)?;
    setup.container_gro(false)?;
    eprintln!("underlay peer of h2 eth0, XDP on: {}", peer_gso()?);
    let no_napi = traffic::ping(&e1.ns, e2.ip, 5, "0.05")?;
    eprintln!(
        "XDP decap with GRO off on the container (no NAPI): ping {}/{} replies",
        no_napi.received, no_napi.transmitted
    );

    for variant in [Variant::Tc, Variant::TcWire, Variant::Xdp, Variant::TcNic, Variant::XdpNic] {
        setup.select(variant)?;
        setup.check_overlay(variant, &mut port)?;
    }

    let mut samples = Samples::new(&Variant::ALL, &METRICS);
    for round in 0..rounds.runs {
        // Rotate the order each round, so no variant always runs first after a switch.
        for i in 0..Variant::ALL.len() {
            let variant = Variant::ALL[(i + round) % Variant::ALL.len()];
            setup.select(variant)?;
            let (client, server, ip) = match variant {
                Variant::Underlay => (h1.ns.clone(), h2.ns.clone(), h2.ip),
                _ => (e1.ns.clone(), e2.ns.clone(), e2.ip),
            };
            traffic::ping(&client, ip, 1, "0.2")?;
            for metric in METRICS {
                port += 1;
                let ends = Ends { lab: &lab, client: &client, server: &server, ip };
                let value = measure(&ends, metric, &rounds, port)
                    .with_context(|| format!("{} {metric:?} round {round}", variant.label()))?;
                eprintln!("  round {round} {:<22} {metric:?}: {value:.2} {}", variant.label(), metric.unit());
                samples.push(variant, metric, value);
                lab.stop_children();
            }
        }
    }
    // Leave the datapath as the product runs it.
    setup.select(Variant::Tc)?;

    let med = |v: Variant, m: Metric| samples.median(v, m);
    print!("{}", samples.table(Variant::label, Metric::unit, &[("vs TC", Variant::Tc), ("vs ul", Variant::Underlay)]));
    for metric in METRICS {
        println!(
            "XDP/TC {metric:?}: {:.3} against TC as today, {:.3} against TC under the same wire conditions",
            med(Variant::Xdp, metric) / med(Variant::Tc, metric),
            med(Variant::Xdp, metric) / med(Variant::TcWire, metric)
        );
        println!(
            "XDP/TC {metric:?}, checksums at the bridge port: {:.3}",
            med(Variant::XdpNic, metric) / med(Variant::TcNic, metric)
        );
    }
    // `objects` and `dps` are dropped before `lab`: the programs go before the namespaces.
    Ok(())
}
