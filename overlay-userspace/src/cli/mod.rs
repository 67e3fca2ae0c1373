//! Command-line surface of `overlay`. Each subcommand parses and validates its
//! arguments completely before touching the kernel or the store.

use clap::{Parser, Subcommand};

mod stats;

/// eBPF-accelerated VXLAN overlay network for containers.
#[derive(Debug, Parser)]
#[command(name = "overlay", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "OVERLAY_LOG")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print this host's datapath counters (per reason and direction, per network).
    Stats(stats::StatsArgs),
}

pub fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Stats(args) => stats::run(args),
    }
}
