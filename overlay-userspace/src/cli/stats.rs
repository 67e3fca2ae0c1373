//! `overlay stats`: this host's datapath counters, read from the pinned maps.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use overlay::datapath::{self, CounterSnapshot};
use serde_json::json;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The datapath's pin directory (the agent's `--pin-dir`).
    #[arg(long, env = "OVERLAY_PIN_DIR", default_value = "/run/overlay/bpffs/overlay")]
    pub pin_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also print counters that are zero.
    #[arg(long)]
    pub all: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn run(args: StatsArgs) -> anyhow::Result<()> {
    let snapshot = datapath::read_pinned_counters(&args.pin_dir)
        .with_context(|| format!("reading counters under {}", args.pin_dir.display()))?;
    match args.format {
        Format::Table => print!("{}", table(&snapshot, args.all)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&as_json(&snapshot))?),
    }
    Ok(())
}

fn table(snapshot: &CounterSnapshot, all: bool) -> String {
    let mut out = format!("{:<30} {:<15} {:>12} {:>14}\n", "REASON", "DIRECTION", "PACKETS", "BYTES");
    for ((reason, direction), counter) in &snapshot.by_reason {
        if all || counter.packets > 0 {
            out += &format!(
                "{:<30} {:<15} {:>12} {:>14}\n",
                reason.name(),
                direction.name(),
                counter.packets,
                counter.bytes
            );
        }
    }
    out += &format!("\n{:<10} {:>16} {:>16}\n", "VNI", "FROM-CONTAINER", "FROM-UNDERLAY");
    for (vni, c) in &snapshot.by_network {
        out += &format!("{:<10} {:>16} {:>16}\n", vni, c.from_container_packets, c.from_underlay_packets);
    }
    out
}

fn as_json(snapshot: &CounterSnapshot) -> serde_json::Value {
    let reasons: Vec<_> = snapshot
        .by_reason
        .iter()
        .map(|((reason, direction), c)| {
            json!({
                "reason": reason.name(),
                "drop": reason.is_drop(),
                "direction": direction.name(),
                "packets": c.packets,
                "bytes": c.bytes,
            })
        })
        .collect();
    let networks: serde_json::Map<_, _> = snapshot
        .by_network
        .iter()
        .map(|(vni, c)| (vni.to_string(), serde_json::to_value(c).unwrap_or_default()))
        .collect();
    json!({ "reasons": reasons, "networks": networks })
}
