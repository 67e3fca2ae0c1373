//! `cargo xtask bench`: this datapath, the kernel VXLAN+bridge path and the raw underlay,
//! side by side in one run on the same simulated hosts.

use std::path::PathBuf;

use clap::Parser;
use overlay_tests::bench::{self, Options};

#[derive(Debug, Parser)]
#[command(about = "Benchmark the overlay datapath against the kernel VXLAN path and the raw underlay")]
struct Args {
    /// 5 short runs per figure instead of 9 longer ones (under three minutes).
    #[arg(long)]
    quick: bool,
    /// Where to write the figures as JSON (one record per path and metric).
    #[arg(long, default_value = "bench-results/bench.json")]
    json: PathBuf,
    /// Where to write the chart of ratios to the underlay (SVG).
    #[arg(long, default_value = "bench-results/bench.svg")]
    chart: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = if args.quick {
        Options { runs: 5, tcp_seconds: 2, udp_seconds: 1, pings: 100 }
    } else {
        Options { runs: 9, tcp_seconds: 5, udp_seconds: 3, pings: 300 }
    };
    eprintln!("datapath benchmark: {} rounds", options.runs);
    let records = bench::run(&options)?;
    print!("{}", bench::table(&records));
    let scale = overlay_tests::scale::remote_endpoints(10_000)?;
    println!(
        "datapath tables: {} remote endpoints programmed in {:.3} s ({:.0}/s), removed in {:.3} s",
        scale.endpoints, scale.program_seconds, scale.endpoints_per_second, scale.remove_seconds
    );
    let mut sections = serde_json::Map::new();
    sections.insert("datapath_tables".into(), serde_json::to_value(&scale)?);
    bench::write_outputs(&records, sections, &args.json, &args.chart, "Ratio to the raw underlay (median)")?;
    println!("figures: {}  chart: {}", args.json.display(), args.chart.display());
    Ok(())
}
