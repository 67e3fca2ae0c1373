//! The datapath figures of `cargo xtask bench`: the same two simulated hosts carry
//! traffic over every path, round after round; in a round each figure is taken of every
//! path in turn before the next figure (the order of the paths rotating each round), so
//! drift on a busy machine hits them alike:
//! - the raw underlay (host to host), and the bound: containers behind a veth carried by
//!   one TC redirect each way with no overlay (`veth_bound`), this datapath minus the
//!   encapsulation;
//! - the floor: the bound plus bare VXLAN (`encap_floor`), the least an eBPF VXLAN
//!   datapath does;
//! - the overlays a container user picks instead, built from the kernel primitives
//!   their projects use: Docker's (kernel VXLAN + bridge), Flannel's vxlan backend
//!   (`flannel_peer`) and Cilium's tunnel mode (`tunnel_peer`);
//! - this datapath.
//!
//! `paths` builds them. Each path is measured for single-stream TCP, the 64-byte UDP
//! rate, UDP and TCP request/response (`rr`), the same with idle CPUs keeping their tick
//! (`idle`), and ping; the eBPF paths also for each program's run time per packet under
//! the 64-byte load (`program_cost`).

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context;
use overlay_tests::{Lab, traffic};
use serde::Serialize;

pub use crate::paths::{Ends, PathKind};
use crate::{
    idle,
    paths::Paths,
    program_cost::{self, Cost},
    rr::{self, Protocol},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    TcpThroughput,
    SmallPacketRate,
    /// UDP request/response, 1 byte each way, one in flight: the mean round trip.
    UdpRr,
    /// The same over one TCP connection.
    TcpRr,
    /// `UdpRr` with idle CPUs keeping their scheduler tick (`idle::KeptTick`): the
    /// same cost of waking an idle CPU for every path, so what remains is the paths'.
    UdpRrTickKept,
    /// `TcpRr` with the tick kept.
    TcpRrTickKept,
    /// `ping -i 0.01`, in whole microseconds: a secondary figure.
    Ping,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::TcpThroughput,
        Metric::SmallPacketRate,
        Metric::UdpRr,
        Metric::TcpRr,
        Metric::UdpRrTickKept,
        Metric::TcpRrTickKept,
        Metric::Ping,
    ];
    /// The request/response figures.
    pub const RR: [Metric; 4] = [Metric::UdpRr, Metric::TcpRr, Metric::UdpRrTickKept, Metric::TcpRrTickKept];
    pub fn unit(self) -> &'static str {
        match self {
            Metric::TcpThroughput => "Gbit/s",
            Metric::SmallPacketRate => "kpps",
            Metric::UdpRr | Metric::TcpRr | Metric::UdpRrTickKept | Metric::TcpRrTickKept | Metric::Ping => "us",
        }
    }
    /// Whether a larger figure is better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::TcpThroughput | Metric::SmallPacketRate)
    }
    fn label(self) -> &'static str {
        match self {
            Metric::TcpThroughput => "single-stream TCP",
            Metric::SmallPacketRate => "64-byte UDP rate",
            Metric::UdpRr => "UDP request/response, mean",
            Metric::TcpRr => "TCP request/response, mean",
            Metric::UdpRrTickKept => "UDP request/response, tick kept, mean",
            Metric::TcpRrTickKept => "TCP request/response, tick kept, mean",
            Metric::Ping => "ping round trip",
        }
    }
}

/// One measurement: the figure, and for request/response also its p99 and rate.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub value: f64,
    pub p99_us: Option<f64>,
    pub transactions_per_second: Option<f64>,
    /// Request/response only: idle periods that stopped the scheduler tick, per
    /// transaction (`idle::TickStops`).
    pub tick_stops: Option<f64>,
}

impl Sample {
    fn plain(value: f64) -> Self {
        Sample { value, p99_us: None, transactions_per_second: None, tick_stops: None }
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
    /// Request/response only: the median over the rounds of each round's p99 (µs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    /// Request/response only: the median of the rounds' transactions per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions_per_second: Option<f64>,
    /// Request/response only: the median of the rounds' idle periods that stopped the
    /// scheduler tick, per transaction (two idle CPUs are woken per transaction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick_stops_per_transaction: Option<f64>,
}

/// One eBPF program's run time per packet under the 64-byte load, over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramCostRecord {
    pub path: PathKind,
    pub program: &'static str,
    pub place: &'static str,
    pub median_ns_per_packet: f64,
    pub runs_ns_per_packet: Vec<f64>,
    /// Program runs counted in each round (about the packets of the load).
    pub runs_packets: Vec<u64>,
}

/// What [`run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub records: Vec<Record>,
    pub program_costs: Vec<ProgramCostRecord>,
}

pub struct Options {
    pub runs: usize,
    /// The paths measured, in `PathKind::ALL`'s order (every one by default).
    pub paths: Vec<PathKind>,
    /// The figures measured, in `Metric::ALL`'s order (every one by default).
    pub metrics: Vec<Metric>,
    pub tcp_seconds: u32,
    pub udp_seconds: u32,
    pub rr_seconds: u32,
    pub pings: u32,
}

impl Options {
    /// `--quick`: 5 short rounds.
    pub fn quick() -> Options {
        Options { runs: 5, tcp_seconds: 2, udp_seconds: 1, rr_seconds: 1, pings: 50, ..Options::full() }
    }

    /// The default: 9 longer rounds of every path and figure.
    pub fn full() -> Options {
        Options {
            runs: 9,
            paths: PathKind::ALL.to_vec(),
            metrics: Metric::ALL.to_vec(),
            tcp_seconds: 4,
            udp_seconds: 3,
            rr_seconds: 2,
            pings: 200,
        }
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

pub fn run(options: &Options) -> anyhow::Result<Results> {
    let mut paths = Paths::build()?;
    let mut samples: Vec<(PathKind, Metric, Vec<Sample>)> = Vec::new();
    for &path in &options.paths {
        for &metric in &options.metrics {
            samples.push((path, metric, Vec::new()));
        }
    }
    let mut costs: Vec<(PathKind, usize, Vec<Cost>)> = Vec::new();
    let mut port = 5300u16;
    let mut selected: Option<PathKind> = None;
    let mut select = |paths: &mut Paths, path: PathKind| -> anyhow::Result<Ends> {
        if selected != Some(path) {
            paths.select(path)?;
            selected = Some(path);
        }
        let e = paths.ends(path);
        // Warm neighbour caches so the first run does not pay for ARP.
        traffic::ping(&e.client_ns, e.server_ip, 1, "0.2")?;
        Ok(e)
    };
    for round in 0..options.runs {
        let order = round_order(round, &options.paths);
        // One figure of every path, then the next figure: the samples of one figure are
        // seconds apart, not a round apart, so drift of the machine hits the paths alike.
        for &metric in &options.metrics {
            for &path in &order {
                let e = select(&mut paths, path)?;
                port += 1;
                let sample = measure(&paths.lab, &e, metric, options, port)
                    .with_context(|| format!("{} {metric:?} round {round}", path.label()))?;
                eprintln!("  round {round} {:<22} {metric:?}: {:.2} {}", path.label(), sample.value, metric.unit());
                samples
                    .iter_mut()
                    .find(|(p, m, _)| *p == path && *m == metric)
                    .expect("every pair has a slot")
                    .2
                    .push(sample);
                paths.lab.stop_children();
            }
        }
        if !options.metrics.contains(&Metric::SmallPacketRate) {
            continue;
        }
        for &path in &order {
            let at = paths.programs(path);
            if at.is_empty() {
                continue;
            }
            let e = select(&mut paths, path)?;
            // A load of its own: the statistics cost each run two clock reads, which
            // the figures above must not pay.
            port += 1;
            let (_, measured) =
                program_cost::measure(&at, || measure(&paths.lab, &e, Metric::SmallPacketRate, options, port))
                    .with_context(|| format!("{} program cost round {round}", path.label()))?;
            for cost in &measured {
                eprintln!("  round {round} {:<22} {}: {:.0} ns/packet", path.label(), cost.program, cost.ns_per_run);
            }
            costs.push((path, round, measured));
            paths.lab.stop_children();
        }
    }

    let median_of = |path: PathKind, metric: Metric| {
        samples
            .iter()
            .find(|(p, m, _)| *p == path && *m == metric)
            .map_or(f64::NAN, |(_, _, v)| median(&v.iter().map(|s| s.value).collect::<Vec<_>>()))
    };
    let records = samples
        .iter()
        .map(|(path, metric, runs)| {
            let values: Vec<f64> = runs.iter().map(|s| s.value).collect();
            let med = median(&values);
            let extra = |f: fn(&Sample) -> Option<f64>| {
                let v: Vec<f64> = runs.iter().filter_map(f).collect();
                if v.is_empty() { None } else { Some(median(&v)) }
            };
            Record {
                path: *path,
                metric: *metric,
                unit: metric.unit(),
                median: med,
                ratio_to_underlay: med / median_of(PathKind::Underlay, *metric),
                ratio_to_veth_bound: med / median_of(PathKind::VethBound, *metric),
                p99_us: extra(|s| s.p99_us),
                transactions_per_second: extra(|s| s.transactions_per_second),
                tick_stops_per_transaction: extra(|s| s.tick_stops),
                runs: values,
            }
        })
        .collect();
    let mut program_costs: Vec<ProgramCostRecord> = Vec::new();
    for &path in &options.paths {
        for (index, at) in paths.programs(path).iter().enumerate() {
            let of_path: Vec<&Cost> =
                costs.iter().filter(|(p, _, _)| *p == path).filter_map(|(_, _, c)| c.get(index)).collect();
            if of_path.is_empty() {
                continue;
            }
            let ns: Vec<f64> = of_path.iter().map(|c| c.ns_per_run).collect();
            program_costs.push(ProgramCostRecord {
                path,
                program: at.program,
                place: at.place,
                median_ns_per_packet: median(&ns),
                runs_ns_per_packet: ns,
                runs_packets: of_path.iter().map(|c| c.runs).collect(),
            });
        }
    }
    Ok(Results { records, program_costs })
}

/// The order of the paths in `round`: rotated each round, so no path always runs first
/// after a switch, and reversed every other round, so no path always runs right after
/// the same one (whatever a path leaves behind, its successor would otherwise always pay).
pub fn round_order(round: usize, paths: &[PathKind]) -> Vec<PathKind> {
    let n = paths.len();
    let mut order: Vec<PathKind> = (0..n).map(|i| paths[(i + round / 2) % n]).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
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

/// Measures one figure of one path.
pub fn measure(lab: &Lab, e: &Ends, metric: Metric, o: &Options, port: u16) -> anyhow::Result<Sample> {
    let rr = |protocol, keep_tick: bool| -> anyhow::Result<Sample> {
        let duration = Duration::from_secs(u64::from(o.rr_seconds));
        let _kept = if keep_tick {
            let Some(kept) = idle::KeptTick::hold()? else {
                eprintln!("  (no cpuidle governor that keeps the tick here: the tick-kept figures are left out)");
                return Ok(Sample::plain(f64::NAN));
            };
            Some(kept)
        } else {
            None
        };
        let before = idle::TickStops::read();
        let report = rr::run(protocol, &e.client_ns, &e.server_ns, e.server_ip, port, duration)?;
        let after = idle::TickStops::read();
        anyhow::ensure!(report.transactions > 0, "no {protocol:?} transaction completed");
        Ok(Sample {
            value: report.mean_us,
            p99_us: Some(report.p99_us),
            transactions_per_second: Some(report.transactions_per_second),
            tick_stops: before.zip(after).and_then(|(b, a)| b.per_transaction(a, report.transactions)),
        })
    };
    match metric {
        Metric::TcpThroughput => {
            let t = o.tcp_seconds.to_string();
            let args = [&["-t", &t, "-O", "1"], cpu_pinning()].concat();
            let report = traffic::iperf3(lab, &e.server_ns, e.server_ip, &e.client_ns, port, &args)?;
            Ok(Sample::plain(traffic::tcp_bits_per_second(&report)? / 1e9))
        }
        Metric::SmallPacketRate => {
            let t = o.udp_seconds.to_string();
            let args = [&["-u", "-l", "64", "-b", "0", "-t", &t], cpu_pinning()].concat();
            let report = traffic::iperf3(lab, &e.server_ns, e.server_ip, &e.client_ns, port, &args)?;
            Ok(Sample::plain(traffic::udp_packets_per_second(&report)? / 1e3))
        }
        Metric::UdpRr => rr(Protocol::Udp, false),
        Metric::TcpRr => rr(Protocol::Tcp, false),
        Metric::UdpRrTickKept => rr(Protocol::Udp, true),
        Metric::TcpRrTickKept => rr(Protocol::Tcp, true),
        Metric::Ping => {
            let result = traffic::ping(&e.client_ns, e.server_ip, o.pings, "0.01")?;
            let rtt = result.avg_rtt_ms.context("no ping reply")?;
            Ok(Sample::plain(rtt * 1000.0))
        }
    }
}

/// The figures of every round as a text table, as printed while the benchmark runs.
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
            "{:<22} {:<18} {:>8.2} {:<6} {:>8.3} {:>11.3}  [{}]",
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

/// The record of `path` and `metric`, if it was measured (a figure this machine could
/// not take has no finite median).
fn find(records: &[Record], path: PathKind, metric: Metric) -> Option<&Record> {
    records.iter().find(|r| r.path == path && r.metric == metric && r.median.is_finite())
}

fn figure(metric: Metric, value: f64) -> String {
    match metric {
        Metric::TcpThroughput => format!("{value:.2} Gbit/s"),
        Metric::SmallPacketRate => format!("{value:.0} kpps"),
        Metric::Ping => format!("{value:.0} µs"),
        Metric::UdpRr | Metric::TcpRr | Metric::UdpRrTickKept | Metric::TcpRrTickKept => format!("{value:.1} µs"),
    }
}

/// The README's tables, in markdown: every path's medians, then every path's ratio to
/// the bound with this datapath's to its best peer, then the request/response detail
/// and the programs' cost per packet.
pub fn markdown(results: &Results) -> String {
    let records = &results.records;
    let mut out = String::new();
    let headings: Vec<&str> = PathKind::ALL.iter().map(|p| p.heading()).collect();
    let _ = writeln!(out, "| metric | {} |", headings.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(headings.len()));
    for metric in Metric::ALL {
        let cells: Vec<String> = PathKind::ALL
            .iter()
            .map(|p| find(records, *p, metric).map_or("–".into(), |r| figure(metric, r.median)))
            .collect();
        let _ = writeln!(out, "| {} | {} |", metric.label(), cells.join(" | "));
    }
    let _ = writeln!(out);
    let ratio_paths: Vec<PathKind> = PathKind::ALL.iter().copied().filter(|p| *p != PathKind::VethBound).collect();
    let ratio_headings: Vec<&str> = ratio_paths.iter().map(|p| p.heading()).collect();
    let _ = writeln!(out, "| ratio to the bound | {} | this / best peer | this / floor |", ratio_headings.join(" | "));
    let _ = writeln!(out, "|---|{}---|---|", "---|".repeat(ratio_headings.len()));
    for metric in Metric::ALL {
        let cells: Vec<String> = ratio_paths
            .iter()
            .map(|p| find(records, *p, metric).map_or("–".into(), |r| format!("{:.2}", r.ratio_to_veth_bound)))
            .collect();
        let best_peer = PathKind::PEERS
            .iter()
            .filter_map(|p| find(records, *p, metric).map(|r| r.median))
            .filter(|v| v.is_finite())
            .reduce(|a, b| if metric.higher_is_better() { a.max(b) } else { a.min(b) });
        let ours = find(records, PathKind::Ebpf, metric).map(|r| r.median);
        let vs_best = match (ours, best_peer) {
            (Some(ours), Some(best)) => format!("{:.2}", ours / best),
            _ => "–".into(),
        };
        let vs_floor = match (ours, find(records, PathKind::EncapFloor, metric)) {
            (Some(ours), Some(floor)) => format!("{:.2}", ours / floor.median),
            _ => "–".into(),
        };
        let _ = writeln!(out, "| {} | {} | {vs_best} | {vs_floor} |", metric.label(), cells.join(" | "));
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| request/response: transactions/s, p99, tick stops per transaction | {} |",
        headings.join(" | ")
    );
    let _ = writeln!(out, "|---|{}", "---|".repeat(headings.len()));
    for metric in Metric::RR {
        let cells: Vec<String> = PathKind::ALL
            .iter()
            .map(|p| match find(records, *p, metric) {
                Some(Record {
                    transactions_per_second: Some(tps),
                    p99_us: Some(p99),
                    tick_stops_per_transaction,
                    ..
                }) => {
                    let stops = tick_stops_per_transaction.map_or("–".into(), |t| format!("{t:.2}"));
                    format!("{tps:.0}/s, p99 {p99:.1} µs, {stops}")
                }
                _ => "–".into(),
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", metric.label().trim_end_matches(", mean"), cells.join(" | "));
    }
    if !results.program_costs.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "| eBPF program, under the 64-byte load | path | where | ns per packet (median) |");
        let _ = writeln!(out, "|---|---|---|---|");
        for c in &results.program_costs {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {:.0} |",
                c.program,
                c.path.heading(),
                c.place,
                c.median_ns_per_packet
            );
        }
    }
    out
}

/// A grouped bar chart of the ratios to the underlay, as SVG.
pub fn svg_chart(records: &[Record], title: &str) -> String {
    // Wide enough for each group's label.
    let (width, height) = (80.0 + 180.0 * Metric::ALL.len() as f64, 380.0);
    let (left, bottom, top) = (60.0, 300.0, 50.0);
    let max_ratio = records.iter().map(|r| r.ratio_to_underlay).filter(|r| r.is_finite()).fold(1.2_f64, f64::max);
    let scale = (bottom - top) / max_ratio;
    let colors = ["#7f7f7f", "#bcbd22", "#17becf", "#d62728", "#ff7f0e", "#9467bd", "#1f77b4"];
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
        let x = left + i as f64 * 155.0;
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

/// Writes the JSON document (`{"datapath": [records…], "program_cost": [...], …other
/// sections}`) and the chart.
pub fn write_outputs(
    results: &Results,
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
    document.insert("datapath".into(), serde_json::to_value(&results.records)?);
    document.insert("program_cost".into(), serde_json::to_value(&results.program_costs)?);
    document.extend(sections);
    std::fs::write(json, serde_json::to_string_pretty(&document)?)?;
    std::fs::write(chart, svg_chart(&results.records, title))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_round_measures_every_path_once_and_predecessors_vary() {
        let n = PathKind::ALL.len();
        let mut before_ours = std::collections::BTreeSet::new();
        for round in 0..2 * n {
            let order = round_order(round, &PathKind::ALL);
            let mut sorted: Vec<String> = order.iter().map(|p| format!("{p:?}")).collect();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), n, "round {round}: {order:?}");
            if let Some(i) = order.iter().position(|p| *p == PathKind::Ebpf).filter(|i| *i > 0) {
                before_ours.insert(format!("{:?}", order[i - 1]));
            }
        }
        assert!(before_ours.len() >= 2, "this datapath always follows {before_ours:?}");
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
