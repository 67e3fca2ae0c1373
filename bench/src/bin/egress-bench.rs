//! EXPERIMENT: how a container reaches the outside world, measured side by side on one
//! agent host, with an outside host (TEST-NET) behind the lab's router: the choice of
//! docs/datapath.md "Egress through the host's stack: measured". Variants alternate
//! within each round (the order rotating), so drift on a busy machine hits them alike;
//! the medians and every run are printed, with ratios.
//!
//! - `host`: the agent host itself to the outside host, its own stack: what any way out
//!   of that host can hope for.
//! - `egress`: a container of the overlay, as shipped: the datapath hands its packets
//!   to the host's stack at `egress-door`, nftables masquerades them (the real agent,
//!   its table `ip overlay`), replies come back by conntrack and the /32 route.
//! - `gwbridge`: Docker's way (its overlay driver's `docker_gwbridge`): the container's
//!   second veth in a Linux bridge that holds the gateway address, forwarded and
//!   masqueraded by the host (a table of the bench's own, `ip bench_gwbridge`).
//!
//! ```text
//! cargo build --workspace --all-targets && target/debug/egress-bench [--runs 5]
//! ```
//!
//! The harness only starts iperf3 and ping: a debug build measures the kernel's paths
//! as a release one does.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use overlay_bench::datapath::median;
use overlay_tests::{
    ContainerSpec, Lab,
    cluster::{self, Scratch},
    cmd,
    outside::{PeerLog, tcp_request},
    stores::{Backend, StoreServer},
    traffic,
};

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const GW_SUBNET: &str = "172.18.0.0/16";
const GW_BRIDGE: &str = "gwbr";

#[derive(Parser)]
struct Args {
    /// Rounds; each round measures every variant once, in turn.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, default_value_t = 3)]
    tcp_seconds: u32,
    #[arg(long, default_value_t = 2)]
    udp_seconds: u32,
    #[arg(long, default_value_t = 200)]
    pings: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Host,
    Egress,
    Gwbridge,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Host, Variant::Egress, Variant::Gwbridge];
    fn label(self) -> &'static str {
        match self {
            Variant::Host => "host itself",
            Variant::Egress => "egress (this)",
            Variant::Gwbridge => "gwbridge (Docker)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    /// Single-stream TCP, the container sending.
    TcpOut,
    /// Single-stream TCP, the outside sending to the container (`iperf3 -R`): the replies'
    /// way, de-NATed by conntrack.
    TcpIn,
    /// 64-byte UDP, the container sending as fast as it can: what arrives outside.
    Udp64,
    /// `ping -i 0.01` to the outside host, mean round trip.
    Ping,
}

impl Metric {
    const ALL: [Metric; 4] = [Metric::TcpOut, Metric::TcpIn, Metric::Udp64, Metric::Ping];
    fn unit(self) -> &'static str {
        match self {
            Metric::TcpOut | Metric::TcpIn => "Gbit/s",
            Metric::Udp64 => "kpps",
            Metric::Ping => "us",
        }
    }
}

fn measure(lab: &Lab, client: &str, outside: &str, metric: Metric, a: &Args, port: u16) -> anyhow::Result<f64> {
    let (tcp, udp) = (a.tcp_seconds.to_string(), a.udp_seconds.to_string());
    match metric {
        Metric::TcpOut | Metric::TcpIn => {
            let mut extra = vec!["-t", tcp.as_str(), "-O", "1"];
            if metric == Metric::TcpIn {
                extra.push("-R");
            }
            let report = traffic::iperf3(lab, outside, OUTSIDE, client, port, &extra)?;
            Ok(traffic::tcp_bits_per_second(&report)? / 1e9)
        }
        Metric::Udp64 => {
            let report =
                traffic::iperf3(lab, outside, OUTSIDE, client, port, &["-u", "-l", "64", "-b", "0", "-t", &udp])?;
            Ok(traffic::udp_packets_per_second(&report)? / 1e3)
        }
        Metric::Ping => {
            let result = traffic::ping(client, OUTSIDE, a.pings, "0.01")?;
            if result.received * 10 < result.transmitted * 9 {
                bail!("ping lost {} of {}", result.transmitted - result.received, result.transmitted);
            }
            Ok(result.avg_rtt_ms.context("no ping reply")? * 1000.0)
        }
    }
}

/// Docker's gateway bridge on `host`, with the container `gw1` in it: the bridge holds
/// the gateway address, the host forwards from it and masquerades what leaves by
/// another interface (Docker's `MASQUERADE` rule for the bridge's subnet).
fn gwbridge(lab: &mut Lab, host: &str) -> anyhow::Result<String> {
    let gateway = Ipv4Addr::new(172, 18, 0, 1);
    let mut spec = ContainerSpec::new("gw1", Ipv4Addr::new(172, 18, 0, 2));
    (spec.prefix_len, spec.gateway, spec.mtu) = (16, Some(gateway), 1500);
    let container = lab.add_container(host, &spec)?;
    let ns = lab.host(host).ns.clone();
    cmd::ip(&ns, &["link", "add", GW_BRIDGE, "type", "bridge"])?;
    cmd::ip(&ns, &["addr", "add", &format!("{gateway}/16"), "dev", GW_BRIDGE])?;
    cmd::ip(&ns, &["link", "set", GW_BRIDGE, "up"])?;
    cmd::ip(&ns, &["link", "set", &container.host_interface, "master", GW_BRIDGE])?;
    cmd::run_in(&ns, &["sysctl", "-qw", &format!("net.ipv4.conf.{GW_BRIDGE}.forwarding=1")])?;
    let table = ["ip", "bench_gwbridge"];
    cmd::run_in(&ns, &["nft", "add", "table", table[0], table[1]])?;
    let hook = "{ type nat hook postrouting priority srcnat; }";
    cmd::run_in(&ns, &["nft", "add", "chain", table[0], table[1], "postrouting", hook])?;
    let rule = ["ip", "saddr", GW_SUBNET, "oifname", "!=", GW_BRIDGE, "masquerade"];
    cmd::run_in(&ns, &[&["nft", "add", "rule", table[0], table[1], "postrouting"][..], &rule[..]].concat())?;
    Ok(container.ns)
}

fn egress_packets(lab: &Lab, host: &str) -> anyhow::Result<u64> {
    let h = lab.host(host);
    let out = cluster::overlay(h, &["stats", "--format", "json", "--pin-dir", h.pin_dir.to_str().unwrap_or_default()])?;
    ensure!(out.status.success(), "overlay stats: {}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let reasons = stats["reasons"].as_array().into_iter().flatten();
    Ok(reasons.filter(|r| r["reason"] == "egress").filter_map(|r| r["packets"].as_u64()).sum())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut lab = Lab::builder("egbench")
        .host("store01", "192.168.1.140/24")
        .host("agt01", "192.168.1.141/24")
        .outside("outside", "203.0.113.10/24")
        .build()?;
    let scratch = Scratch::new("egbench")?;
    let server = StoreServer::start(Backend::Etcd, lab.host("store01"))?;
    let store = server.url("bench");
    let agent = cluster::start_container_agent(&scratch, &store, &lab, "agt01")?;
    let result = (|| -> anyhow::Result<()> {
        cluster::wait_for_list(lab.host("store01"), &store, &[lab.host("agt01")], Duration::from_secs(30))?;
        cluster::overlay_ok(&lab, "agt01", &store, &["network", "create", "--subnet", "10.77.5.0/24", "web"])?;
        let (c1, _) = cluster::run_container(&lab, &store, "agt01", "c1", "web", &[])?;
        let gw1 = gwbridge(&mut lab, "agt01")?;
        let host = lab.host("agt01").clone();
        let outside = lab.host("outside").ns.clone();
        let client = |v: Variant| match v {
            Variant::Host => host.ns.clone(),
            Variant::Egress => c1.clone(),
            Variant::Gwbridge => gw1.clone(),
        };

        // Each variant reaches the outside as the host's address; the container of the
        // overlay by the datapath's egress.
        let log = PeerLog::start(&outside, OUTSIDE, 7000)?;
        let before = egress_packets(&lab, "agt01")?;
        for v in Variant::ALL {
            let answer = tcp_request(&client(v), SocketAddrV4::new(OUTSIDE, 7000), Duration::from_secs(3))
                .with_context(|| format!("{}: TCP to the outside host", v.label()))?;
            ensure!(answer.starts_with(&format!("hello {}:", host.ip)), "{}: the outside saw {answer}", v.label());
        }
        drop(log);
        let egress = egress_packets(&lab, "agt01")? - before;
        ensure!(egress > 0, "nothing counted as egress");
        eprintln!("  check: all three reach {OUTSIDE} as {}; egress packets counted: {egress}", host.ip);

        let mut samples: Vec<(Variant, Metric, Vec<f64>)> = Vec::new();
        for v in Variant::ALL {
            for m in Metric::ALL {
                samples.push((v, m, Vec::new()));
            }
        }
        let mut port = 5600u16;
        for round in 0..args.runs {
            for i in 0..Variant::ALL.len() {
                let variant = Variant::ALL[(i + round) % Variant::ALL.len()];
                for metric in Metric::ALL {
                    port += 1;
                    let value = measure(&lab, &client(variant), &outside, metric, &args, port)
                        .with_context(|| format!("{} {metric:?} round {round}", variant.label()))?;
                    eprintln!("  round {round} {:<18} {metric:?}: {value:.2} {}", variant.label(), metric.unit());
                    samples.iter_mut().find(|(v, m, _)| *v == variant && *m == metric).expect("slot").2.push(value);
                    lab.stop_children();
                }
            }
        }

        let med =
            |v: Variant, m: Metric| median(&samples.iter().find(|(sv, sm, _)| *sv == v && *sm == m).expect("slot").2);
        println!(
            "{:<18} {:<8} {:>9} {:<6} {:>9} {:>11}  runs",
            "variant", "metric", "median", "unit", "vs host", "vs egress"
        );
        for (variant, metric, runs) in &samples {
            let m = median(runs);
            let runs: Vec<String> = runs.iter().map(|v| format!("{v:.2}")).collect();
            println!(
                "{:<18} {:<8} {:>9.2} {:<6} {:>9.3} {:>11.3}  [{}]",
                variant.label(),
                format!("{metric:?}"),
                m,
                metric.unit(),
                m / med(Variant::Host, *metric),
                m / med(Variant::Egress, *metric),
                runs.join(", ")
            );
        }
        Ok(())
    })();
    let result = cluster::report(result, &[&agent], "");
    drop(agent);
    drop(server);
    result
}
