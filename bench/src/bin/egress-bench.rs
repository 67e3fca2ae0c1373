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

use anyhow::{Context, ensure};
use overlay_bench::experiment::{Ends, Rounds, Samples};
use overlay_tests::{
    ContainerSpec, Lab,
    cluster::{self, Scratch},
    cmd,
    outside::{PeerLog, tcp_request},
    stores::{Backend, StoreServer},
};

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const GW_SUBNET: &str = "172.18.0.0/16";
const GW_BRIDGE: &str = "gwbr";

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

fn measure(ends: &Ends, metric: Metric, r: &Rounds, port: u16) -> anyhow::Result<f64> {
    match metric {
        Metric::TcpOut => ends.tcp(r, port, false),
        Metric::TcpIn => ends.tcp(r, port, true),
        Metric::Udp64 => ends.small_udp(r, port),
        Metric::Ping => ends.ping(r),
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
    Ok(cluster::reason_packets(&cluster::stats(lab, host)?, "egress"))
}

fn main() -> anyhow::Result<()> {
    let rounds = Rounds::from_command_line(
        "A container's way out, measured: the host itself, egress as shipped and Docker's gateway bridge, to an outside host (docs/datapath.md)",
    );
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

        let mut samples = Samples::new(&Variant::ALL, &Metric::ALL);
        let mut port = 5600u16;
        for round in 0..rounds.runs {
            for i in 0..Variant::ALL.len() {
                let variant = Variant::ALL[(i + round) % Variant::ALL.len()];
                let ends = Ends { lab: &lab, client: &client(variant), server: &outside, ip: OUTSIDE };
                for metric in Metric::ALL {
                    port += 1;
                    let value = measure(&ends, metric, &rounds, port)
                        .with_context(|| format!("{} {metric:?} round {round}", variant.label()))?;
                    eprintln!("  round {round} {:<18} {metric:?}: {value:.2} {}", variant.label(), metric.unit());
                    samples.push(variant, metric, value);
                    lab.stop_children();
                }
            }
        }
        let against = [("vs host", Variant::Host), ("vs egress", Variant::Egress)];
        print!("{}", samples.table(Variant::label, Metric::unit, &against));
        Ok(())
    })();
    let result = cluster::report(result, &[&agent], "");
    drop(agent);
    drop(server);
    result
}
