//! `overlay info`: the cluster as `docker info` showed it through the Swarm manager.

use std::fmt::Write;

use clap::{Args, ValueEnum};
use overlay::cluster::{ClusterView, view};
use serde_json::json;

use super::common::StoreOptions;

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub store: StoreOptions,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (config, store) = args.store.connect_with_config(&runtime)?;
    let view = runtime.block_on(view::read(&store))?;
    match args.format {
        Format::Text => print!("{}", as_text(&view, &config.url.to_string())),
        Format::Json => println!("{}", serde_json::to_string_pretty(&as_json(&view, &config.url.to_string()))?),
    }
    Ok(())
}

fn memory(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB { format!("{:.2} GiB", b / GIB) } else { format!("{:.1} MiB", b / MIB) }
}

fn as_text(view: &ClusterView, store: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Store: {store}");
    match &view.manager {
        Some(m) => {
            let address = m.address.map(|a| format!(" ({a})")).unwrap_or_default();
            let _ = writeln!(out, "Manager: {}{address}", m.name);
        }
        None => {
            let _ = writeln!(out, "Manager: none leading (health read from the nodes' leases)");
        }
    }
    let _ = writeln!(out, "Nodes: {}", view.nodes.len());
    for node in &view.nodes {
        let r = &node.record;
        let labels: Vec<String> = r.all_labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, " {}: {}", r.name, r.address);
        let _ = writeln!(out, "  └ ID: {}", r.id);
        let _ = writeln!(out, "  └ Status: {}", node.status());
        let _ = writeln!(out, "  └ Containers: {}", r.containers);
        let _ = writeln!(out, "  └ CPUs: {}", r.cpus);
        let _ = writeln!(out, "  └ Memory: {}", memory(r.memory_bytes));
        let _ = writeln!(out, "  └ Labels: {}", labels.join(", "));
        let _ = writeln!(out, "  └ Agent version: {}", r.agent_version);
    }
    if !view.skipped.is_empty() {
        let _ = writeln!(out, "Skipped malformed keys: {}", view.skipped.join(", "));
    }
    out
}

fn as_json(view: &ClusterView, store: &str) -> serde_json::Value {
    let nodes: Vec<_> = view
        .nodes
        .iter()
        .map(|node| {
            let r = &node.record;
            json!({
                "id": r.id,
                "name": r.name,
                "address": r.address,
                "status": node.status(),
                "containers": r.containers,
                "cpus": r.cpus,
                "memory_bytes": r.memory_bytes,
                "labels": r.all_labels(),
                "hostname": r.hostname,
                "kernel_version": r.kernel_version,
                "os": r.os,
                "agent_version": r.agent_version,
                "heartbeat_age_secs": node.heartbeat_age_secs(),
                "checked_by": node.health.as_ref().map(|h| h.checked_by.clone()),
            })
        })
        .collect();
    json!({
        "store": store,
        "manager": view.manager,
        "node_count": view.nodes.len(),
        "nodes": nodes,
        "skipped": view.skipped,
    })
}
