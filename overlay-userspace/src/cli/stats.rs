//! `overlay stats`: this host's datapath counters, read from the pinned maps, and its
//! egress and published-port counters, read from the agent's nftables table.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use overlay::{
    datapath::{self, CounterSnapshot},
    egress::{self, EgressCounters},
};
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
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // A host without nft has no egress to show; the datapath's counters still are.
    let egress = match runtime.block_on(egress::read_counters()) {
        Ok(counters) => counters.unwrap_or_default(),
        Err(error) => {
            eprintln!("overlay stats: no egress counters: {error}");
            EgressCounters::default()
        }
    };
    match args.format {
        Format::Table => print!("{}{}", table(&snapshot, args.all), egress_table(&egress)),
        Format::Json => {
            let mut value = as_json(&snapshot);
            value["egress"] = egress_json(&egress);
            println!("{}", serde_json::to_string_pretty(&value)?)
        }
    }
    Ok(())
}

fn egress_table(counters: &EgressCounters) -> String {
    let mut out = format!(
        "\n{:<10} {:>12} {:>14} {:>12} {:>14} {:>12}\n",
        "EGRESS VNI", "OUT-PACKETS", "OUT-BYTES", "IN-PACKETS", "IN-BYTES", "BLOCKED"
    );
    for (vni, c) in &counters.networks {
        out += &format!(
            "{:<10} {:>12} {:>14} {:>12} {:>14} {:>12}\n",
            vni, c.out_packets, c.out_bytes, c.in_packets, c.in_bytes, c.blocked_packets
        );
    }
    out += &format!(
        "\n{:<16} {:<32} {:<16} {:>12} {:>12}\n",
        "PUBLISHED", "OWNER", "CONTAINER", "IN-PACKETS", "OUT-PACKETS"
    );
    for p in &counters.ports {
        out += &format!(
            "{:<16} {:<32} {:<16} {:>12} {:>12}\n",
            p.mapping.to_string(),
            p.owner,
            format!("{}:{}", p.ip, p.mapping.port),
            p.in_packets,
            p.out_packets
        );
    }
    out
}

fn egress_json(counters: &EgressCounters) -> serde_json::Value {
    let networks: serde_json::Map<_, _> = counters
        .networks
        .iter()
        .map(|(vni, c)| (vni.to_string(), serde_json::to_value(c).unwrap_or_default()))
        .collect();
    let ports: Vec<_> = counters
        .ports
        .iter()
        .map(|p| {
            json!({
                "published": p.mapping.to_string(),
                "host_port": p.mapping.host_port,
                "port": p.mapping.port,
                "protocol": p.mapping.protocol.as_str(),
                "owner": p.owner,
                "ip": p.ip,
                "in_packets": p.in_packets,
                "in_bytes": p.in_bytes,
                "out_packets": p.out_packets,
                "out_bytes": p.out_bytes,
            })
        })
        .collect();
    json!({ "networks": networks, "ports": ports })
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
