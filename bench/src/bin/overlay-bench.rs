//! `cargo xtask bench`: this datapath and every reference path and peer of `paths.rs`,
//! side by side in one run on the same simulated hosts, then the control-plane figures.

use std::path::PathBuf;

use anyhow::ensure;
use clap::Parser;
use overlay_bench::{
    datapath::{self as bench, Metric, Options},
    paths::PathKind,
};

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark the overlay datapath against the raw underlay, the bound (veth, no overlay), the floor (the bound plus bare VXLAN) and the kernel VXLAN, Flannel-style and Cilium-style paths"
)]
struct Args {
    /// 5 short rounds instead of 9 longer ones.
    #[arg(long)]
    quick: bool,
    /// Where to write the figures as JSON (one record per path and metric).
    #[arg(long, default_value = "bench-results/bench.json")]
    json: PathBuf,
    /// Only the control-plane figures (agents, mesh, DNS, IPAM), not the datapath.
    #[arg(long, conflicts_with = "datapath_only")]
    control_plane_only: bool,
    /// Rounds of the datapath figures, instead of 5 (--quick) or 7.
    #[arg(long)]
    rounds: Option<usize>,
    /// Only the datapath figures (every path side by side), not the control plane.
    #[arg(long)]
    datapath_only: bool,
    /// Only the DNS comparison with Docker's embedded DNS (a quick check).
    #[arg(long)]
    dns_only: bool,
    /// Only the fault scenarios (etcd leader killed, a host cut off from the store, the
    /// agent killed at random points, the store wiped), added to the JSON file as its
    /// `faults` section.
    #[arg(long)]
    faults: bool,
    /// Only the mesh convergence figure (a quick check).
    #[arg(long)]
    mesh_only: bool,
    /// Simulated hosts in the mesh, each with a real agent.
    #[arg(long, default_value_t = 20)]
    mesh_hosts: usize,
    /// Containers started on each host of the mesh.
    #[arg(long, default_value_t = 5)]
    mesh_containers: usize,
    /// Container starts measured for convergence.
    #[arg(long)]
    starts: Option<usize>,
    /// Only build the datapath figures' paths, leave PATH's programs attached, print
    /// its client namespace, server namespace and server address on one line, and wait
    /// for a line on stdin (or its end) before tearing everything down: to profile one
    /// path with perf or ftrace on the bench's own setup.
    #[arg(long, value_enum, value_name = "PATH")]
    hold: Option<PathKind>,
    /// Only these paths of the datapath figures, comma-separated (all by default). The
    /// ratios need the raw underlay and the bound among them.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PATH,...")]
    paths: Vec<PathKind>,
    /// Only these datapath figures, comma-separated (all by default). The programs'
    /// cost per packet is measured with `small-packet-rate`.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "METRIC,...")]
    metrics: Vec<Metric>,
    /// Where to write the chart of ratios to the underlay (SVG).
    #[arg(long, default_value = "bench-results/bench.svg")]
    chart: PathBuf,
}

/// Prints how long each part took, so a slow part shows which one it is.
struct Stopwatch(std::time::Instant);

impl Stopwatch {
    fn lap(&mut self, part: &str) {
        eprintln!("({part}: {:.0} s)", self.0.elapsed().as_secs_f64());
        self.0 = std::time::Instant::now();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // A run killed while it kept the tick (for the request/response figures that need
    // it) left the machine's cpuidle governor switched.
    overlay_bench::idle::restore_after_crash()?;
    let mut stopwatch = Stopwatch(std::time::Instant::now());
    if let Some(path) = args.hold {
        let mut paths = overlay_bench::paths::Paths::build()?;
        paths.select(path)?;
        let ends = paths.ends(path);
        println!("{} {} {}", ends.client_ns, ends.server_ns, ends.server_ip);
        eprintln!("{} is up; press Enter (or close stdin) to tear it down", path.label());
        let _ = std::io::stdin().read_line(&mut String::new());
        return Ok(());
    }
    if args.dns_only {
        let dns = overlay_bench::dns::run(std::time::Duration::from_secs(5))?;
        println!("{}", serde_json::to_string_pretty(&dns)?);
        return Ok(());
    }
    if args.faults {
        let sizes =
            if args.quick { overlay_bench::faults::Sizes::quick() } else { overlay_bench::faults::Sizes::full() };
        let faults = overlay_bench::faults::run(sizes)?;
        println!("{faults}");
        // Added to the figures of the last full run, which stay as they are.
        let mut document: serde_json::Map<String, serde_json::Value> =
            std::fs::read(&args.json).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
        document.insert("faults".into(), serde_json::to_value(&faults)?);
        if let Some(dir) = args.json.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&args.json, serde_json::to_string_pretty(&document)?)?;
        println!("figures: {}", args.json.display());
        let problems = faults.problems();
        ensure!(problems.is_empty(), "fault figures off target: {problems:#?}");
        return Ok(());
    }
    if args.mesh_only {
        let mesh = overlay_bench::mesh::run(args.mesh_hosts, args.mesh_containers)?;
        println!("{mesh}");
        println!("{}", serde_json::to_string_pretty(&mesh)?);
        ensure!(mesh.pairs_failed == 0, "{} container pairs of the mesh never reached each other", mesh.pairs_failed);
        return Ok(());
    }
    let options = if args.quick { Options::quick() } else { Options::full() };
    let options = Options {
        runs: args.rounds.unwrap_or(options.runs),
        // In the usual order whatever order they were named in, each once.
        paths: if args.paths.is_empty() {
            options.paths
        } else {
            PathKind::ALL.into_iter().filter(|p| args.paths.contains(p)).collect()
        },
        metrics: if args.metrics.is_empty() {
            options.metrics
        } else {
            Metric::ALL.into_iter().filter(|m| args.metrics.contains(m)).collect()
        },
        ..options
    };
    let mut sections = serde_json::Map::new();
    let results = if args.control_plane_only {
        bench::Results { records: Vec::new(), program_costs: Vec::new() }
    } else {
        eprintln!("datapath benchmark: {} rounds", options.runs);
        let results = bench::run(&options)?;
        print!("{}", bench::table(&results.records));
        println!();
        print!("{}", bench::markdown(&results));
        println!();
        let scale = overlay_bench::tables::remote_endpoints(10_000)?;
        println!(
            "datapath tables: {} remote endpoints programmed in {:.3} s ({:.0}/s), removed in {:.3} s",
            scale.endpoints, scale.program_seconds, scale.endpoints_per_second, scale.remove_seconds
        );
        sections.insert("datapath_tables".into(), serde_json::to_value(&scale)?);
        stopwatch.lap("datapath");
        results
    };
    if args.datapath_only {
        bench::write_outputs(&results, sections, &args.json, &args.chart, "Ratio to the raw underlay (median)")?;
        println!("figures: {}  chart: {}", args.json.display(), args.chart.display());
        return Ok(());
    }

    let starts = args.starts.unwrap_or(100);
    let (convergence, agent_scale) = overlay_bench::agents::run(starts, 10_000)?;
    println!(
        "convergence over {} starts: endpoint published -> programmed on the peer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         `overlay run` -> programmed on the peer p50 {:.1} ms, p99 {:.1} ms",
        convergence.starts,
        convergence.publish_to_peer_ms.p50,
        convergence.publish_to_peer_ms.p99,
        convergence.publish_to_peer_ms.max,
        convergence.run_to_peer_ms.p50,
        convergence.run_to_peer_ms.p99
    );
    println!(
        "agent scale: {} remote endpoints written in {:.2} s, all programmed {:.3} s after the last write ({:.2} s in all); agent RSS {:.1} MiB ({:.1} MiB before)",
        agent_scale.endpoints,
        agent_scale.store_write_seconds,
        agent_scale.program_after_last_write_seconds,
        agent_scale.total_seconds,
        agent_scale.agent_rss_mib,
        agent_scale.agent_rss_before_mib
    );
    sections.insert("convergence".into(), serde_json::to_value(&convergence)?);
    sections.insert("agent_scale".into(), serde_json::to_value(&agent_scale)?);
    stopwatch.lap("agents");

    let mesh = overlay_bench::mesh::run(args.mesh_hosts, args.mesh_containers)?;
    println!("{mesh}");
    sections.insert("mesh".into(), serde_json::to_value(&mesh)?);
    stopwatch.lap("mesh");

    let dns = overlay_bench::dns::run(std::time::Duration::from_secs(if args.quick { 5 } else { 15 }))?;
    println!(
        "DNS, a container's name from a container on the same host: this resolver {:.0} queries/s, p99 {:.2} ms; \
         Docker's embedded DNS {:.0} queries/s, p99 {:.2} ms; ratio {:.2}x the rate, {:.2}x the p99",
        dns.ours.queries_per_second,
        dns.ours.p99_ms,
        dns.docker.queries_per_second,
        dns.docker.p99_ms,
        dns.rate_ratio,
        dns.p99_ratio
    );
    sections.insert("dns".into(), serde_json::to_value(&dns)?);
    stopwatch.lap("DNS");

    let ipam = overlay_bench::ipam::run(10, if args.quick { 50 } else { 200 }, 1)?;
    println!("{ipam}");
    sections.insert("ipam".into(), serde_json::to_value(&ipam)?);
    stopwatch.lap("IPAM");
    bench::write_outputs(&results, sections, &args.json, &args.chart, "Ratio to the raw underlay (median)")?;
    println!("figures: {}  chart: {}", args.json.display(), args.chart.display());
    // The figures are written either way; a mesh that never fully connected fails the run.
    ensure!(mesh.pairs_failed == 0, "{} container pairs of the mesh never reached each other", mesh.pairs_failed);
    Ok(())
}
