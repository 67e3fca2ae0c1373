//! The datapath figures of `cargo xtask bench`: the same simulated hosts carry traffic
//! over the raw underlay, the kernel's VXLAN+bridge path and this datapath, round after
//! round, so drift on a busy machine hits them alike. A fourth path is the bound:
//! containers behind a veth carried by one TC redirect each way with no overlay
//! (`veth_bound`), which is this datapath minus the encapsulation.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path};

use anyhow::Context;
use serde::Serialize;

use overlay_tests::{ContainerSpec, Lab, datapath::HostDatapath, kernel_vxlan::KernelVxlan, traffic};

use crate::{ebpf::BenchEbpf, veth_bound};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// Host to host: what the containers' traffic would get with no container at all.
    Underlay,
    /// Containers behind a veth, one TC redirect each way, no overlay (`veth_bound`):
    /// the bound for any overlay of veth-attached containers.
    VethBound,
    KernelVxlan,
    Ebpf,
}

impl PathKind {
    pub const ALL: [PathKind; 4] = [PathKind::Underlay, PathKind::VethBound, PathKind::KernelVxlan, PathKind::Ebpf];
    pub fn label(self) -> &'static str {
        match self {
            PathKind::Underlay => "raw underlay",
            PathKind::VethBound => "veth, no overlay",
            PathKind::KernelVxlan => "kernel VXLAN+bridge",
            PathKind::Ebpf => "eBPF overlay (this)",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    TcpThroughput,
    SmallPacketRate,
    RoundTrip,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::TcpThroughput, Metric::SmallPacketRate, Metric::RoundTrip];
    pub fn unit(self) -> &'static str {
        match self {
            Metric::TcpThroughput => "Gbit/s",
            Metric::SmallPacketRate => "kpps",
            Metric::RoundTrip => "us",
        }
    }
    /// Whether a larger figure is better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Metric::RoundTrip)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub path: PathKind,
    pub metric: Metric,
    pub unit: &'static str,
    pub median: f64,
    pub runs: Vec<f64>,
    /// median / underlay median for the same metric.
    pub ratio_to_underlay: f64,
    /// median / the bound's (`PathKind::VethBound`) median for the same metric.
    pub ratio_to_veth_bound: f64,
}

pub struct Options {
    pub runs: usize,
    pub tcp_seconds: u32,
    pub udp_seconds: u32,
    pub pings: u32,
}

/// The two ends of one path: client side and server side namespaces and the server's address.
struct Ends {
    client_ns: String,
    server_ns: String,
    server_ip: Ipv4Addr,
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

pub fn run(options: &Options) -> anyhow::Result<Vec<Record>> {
    let mut lab = Lab::builder("bench").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let (h1, h2) = (lab.host("h1").clone(), lab.host("h2").clone());
    // Hosts forward IPv4, as dockerd makes every Docker host do: the datapath then gets
    // the next hop's MACs from the FIB helper (and caches them), see docs/datapath.md.
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

    // This datapath.
    const VNI: u32 = 20;
    let e1 = lab.add_container("h1", &ContainerSpec::new("e1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let e2 = lab.add_container("h2", &ContainerSpec::new("e2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(&h1)?, HostDatapath::start(&h2)?];
    overlay_tests::datapath::full_mesh(&mut dps, VNI, Ipv4Addr::new(10, 0, 9, 1), &[(0, &e1), (1, &e2)])?;
    let mut objects = vec![BenchEbpf::load(&h1.ns, &h1.pin_dir)?, BenchEbpf::load(&h2.ns, &h2.pin_dir)?];

    // The bound: no overlay, so the full 1500-byte MTU.
    let mut bound = |host: &str, name: &str, ip: Ipv4Addr| {
        lab.add_container(host, &ContainerSpec { mtu: 1500, ..ContainerSpec::new(name, ip) })
    };
    let b1 = bound("h1", "b1", Ipv4Addr::new(10, 0, 7, 2))?;
    let b2 = bound("h2", "b2", Ipv4Addr::new(10, 0, 7, 3))?;
    veth_bound::connect(
        &mut objects,
        &[
            veth_bound::Placement { host: &h1, host_index: 0, container: &b1 },
            veth_bound::Placement { host: &h2, host_index: 1, container: &b2 },
        ],
    )?;

    let ends = |path: PathKind| match path {
        PathKind::Underlay => Ends { client_ns: h1.ns.clone(), server_ns: h2.ns.clone(), server_ip: h2.ip },
        PathKind::VethBound => Ends { client_ns: b1.ns.clone(), server_ns: b2.ns.clone(), server_ip: b2.ip },
        PathKind::KernelVxlan => Ends { client_ns: k1.ns.clone(), server_ns: k2.ns.clone(), server_ip: k2.ip },
        PathKind::Ebpf => Ends { client_ns: e1.ns.clone(), server_ns: e2.ns.clone(), server_ip: e2.ip },
    };

    let mut samples: Vec<(PathKind, Metric, Vec<f64>)> = Vec::new();
    for path in PathKind::ALL {
        for metric in Metric::ALL {
            samples.push((path, metric, Vec::new()));
        }
    }
    let mut port = 5300u16;
    for round in 0..options.runs {
        for path in PathKind::ALL {
            // The underlay programs are attached only while their path is measured: the
            // kernel path's VXLAN would otherwise be ours to judge, the raw underlay is
            // measured with no program in its way, and whichever of the two programs runs
            // first passes the other's packets to the host.
            set_underlay_program(&mut dps, &mut objects, &h1.interface, path)?;
            let e = ends(path);
            // Warm neighbour caches so the first run does not pay for ARP.
            traffic::ping(&e.client_ns, e.server_ip, 1, "0.2")?;
            for metric in Metric::ALL {
                port += 1;
                let value = measure(&lab, &e, metric, options, port)
                    .with_context(|| format!("{} {metric:?} round {round}", path.label()))?;
                eprintln!("  round {round} {:<22} {metric:?}: {value:.2} {}", path.label(), metric.unit());
                samples
                    .iter_mut()
                    .find(|(p, m, _)| *p == path && *m == metric)
                    .expect("every pair has a slot")
                    .2
                    .push(value);
            }
            lab.stop_children();
        }
    }
    set_underlay_program(&mut dps, &mut objects, &h1.interface, PathKind::Ebpf)?;

    let median_of = |path: PathKind, metric: Metric| {
        samples.iter().find(|(p, m, _)| *p == path && *m == metric).map_or(f64::NAN, |(_, _, v)| median(v))
    };
    Ok(samples
        .iter()
        .map(|(path, metric, runs)| {
            let med = median(runs);
            Record {
                path: *path,
                metric: *metric,
                unit: metric.unit(),
                median: med,
                ratio_to_underlay: med / median_of(PathKind::Underlay, *metric),
                ratio_to_veth_bound: med / median_of(PathKind::VethBound, *metric),
                runs: runs.clone(),
            }
        })
        .collect())
}

/// Leaves on the hosts' underlay interface (`interface`, the same on every host) only the
/// program `path` needs, if any.
fn set_underlay_program(
    dps: &mut [HostDatapath],
    objects: &mut [BenchEbpf],
    interface: &str,
    path: PathKind,
) -> anyhow::Result<()> {
    veth_bound::attach_underlay(objects, interface, false)?;
    for dp in dps.iter_mut() {
        let datapath = &mut dp.datapath;
        overlay::netns::run_in(&dp.ns, || {
            if path == PathKind::Ebpf { datapath.attach_underlay() } else { datapath.detach_underlay() }
        })??;
    }
    if path == PathKind::VethBound {
        veth_bound::attach_underlay(objects, interface, true)?;
    }
    Ok(())
}

/// iperf3's client and server on different CPUs (`-A client,server`), when there are
/// two: left to the scheduler, they share a CPU in some runs and not in others, which
/// moved single figures by a third on the 2-CPU machine this was written on.
fn cpu_pinning() -> &'static [&'static str] {
    match std::thread::available_parallelism() {
        Ok(n) if n.get() >= 2 => &["-A", "0,1"],
        _ => &[],
    }
}

fn measure(lab: &Lab, e: &Ends, metric: Metric, o: &Options, port: u16) -> anyhow::Result<f64> {
    match metric {
        Metric::TcpThroughput => {
            let t = o.tcp_seconds.to_string();
            let args = [&["-t", &t, "-O", "1"], cpu_pinning()].concat();
            let report = traffic::iperf3(lab, &e.server_ns, e.server_ip, &e.client_ns, port, &args)?;
            Ok(traffic::tcp_bits_per_second(&report)? / 1e9)
        }
        Metric::SmallPacketRate => {
            let t = o.udp_seconds.to_string();
            let args = [&["-u", "-l", "64", "-b", "0", "-t", &t], cpu_pinning()].concat();
            let report = traffic::iperf3(lab, &e.server_ns, e.server_ip, &e.client_ns, port, &args)?;
            Ok(traffic::udp_packets_per_second(&report)? / 1e3)
        }
        Metric::RoundTrip => {
            let result = traffic::ping(&e.client_ns, e.server_ip, o.pings, "0.01")?;
            let rtt = result.avg_rtt_ms.context("no ping reply")?;
            Ok(rtt * 1000.0)
        }
    }
}

/// The figures as a text table with ratios, as printed by the benchmark.
pub fn table(records: &[Record]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<18} {:>12} {:>11} {:>11}  runs",
        "path", "metric", "median", "vs underlay", "vs bound"
    );
    for r in records {
        let runs: Vec<String> = r.runs.iter().map(|v| format!("{v:.2}")).collect();
        let _ = writeln!(
            out,
            "{:<22} {:<18} {:>8.2} {:<4} {:>10.3} {:>11.3}  [{}]",
            r.path.label(),
            format!("{:?}", r.metric),
            r.median,
            r.unit,
            r.ratio_to_underlay,
            r.ratio_to_veth_bound,
            runs.join(", ")
        );
    }
    out
}

/// A grouped bar chart of the ratios to the underlay, as SVG.
pub fn svg_chart(records: &[Record], title: &str) -> String {
    let (width, height) = (760.0, 360.0);
    let (left, bottom, top) = (60.0, 300.0, 50.0);
    let max_ratio = records.iter().map(|r| r.ratio_to_underlay).filter(|r| r.is_finite()).fold(1.2_f64, f64::max);
    let scale = (bottom - top) / max_ratio;
    let colors = ["#7f7f7f", "#bcbd22", "#d62728", "#1f77b4"];
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        width / 2.0
    );
    let y1 = bottom - scale;
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{y1}\" y2=\"{y1}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">1.0</text>",
        width - 20.0,
        left - 6.0,
        y1 + 4.0
    );
    let _ =
        writeln!(svg, "<line x1=\"{left}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\" stroke=\"black\"/>", width - 20.0);
    let group_width = (width - left - 20.0) / Metric::ALL.len() as f64;
    for (g, metric) in Metric::ALL.iter().enumerate() {
        let gx = left + g as f64 * group_width;
        let better = if metric.higher_is_better() { "higher is better" } else { "lower is better" };
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{metric:?} ({better})</text>",
            gx + group_width / 2.0,
            bottom + 20.0
        );
        for (i, path) in PathKind::ALL.iter().enumerate() {
            let Some(r) = records.iter().find(|r| r.path == *path && r.metric == *metric) else { continue };
            let ratio = if r.ratio_to_underlay.is_finite() { r.ratio_to_underlay } else { 0.0 };
            let bar_w = group_width / (PathKind::ALL.len() as f64 + 1.0);
            let x = gx + bar_w * (i as f64 + 0.5);
            let h = ratio * scale;
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>",
                bottom - h,
                bar_w * 0.9,
                colors[i]
            );
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{ratio:.2}</text>",
                x + bar_w * 0.45,
                bottom - h - 4.0
            );
        }
    }
    for (i, path) in PathKind::ALL.iter().enumerate() {
        let x = left + i as f64 * 170.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            height - 30.0,
            colors[i],
            x + 16.0,
            height - 20.0,
            path.label()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Writes the JSON document (`{"datapath": [records…], …other sections}`) and the chart.
pub fn write_outputs(
    records: &[Record],
    sections: serde_json::Map<String, serde_json::Value>,
    json: &Path,
    chart: &Path,
    title: &str,
) -> anyhow::Result<()> {
    for path in [json, chart] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut document = serde_json::Map::new();
    document.insert("datapath".into(), serde_json::to_value(records)?);
    document.extend(sections);
    std::fs::write(json, serde_json::to_string_pretty(&document)?)?;
    std::fs::write(chart, svg_chart(records, title))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
