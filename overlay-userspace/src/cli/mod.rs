//! Command-line surface of `overlay`. Each subcommand parses and validates its
//! arguments completely before touching the kernel or the store.

use clap::{Parser, Subcommand};

mod agent;
mod common;
mod containers;
mod info;
mod list;
mod manage;
mod network;
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
    /// Run the host daemon: join the cluster in the store and stay until stopped.
    Agent(Box<agent::AgentArgs>),
    /// Run a manager: keeps node health; several may run, one leads.
    Manage(manage::ManageArgs),
    /// Print the advertised address of each live node, one per line.
    List(list::ListArgs),
    /// Show the cluster: nodes with address, health, containers, CPUs, memory, labels.
    Info(info::InfoArgs),
    /// Create, list, inspect and remove cluster-wide overlay networks.
    Network(network::NetworkArgs),
    /// Run a container on the overlay; the manager places it on a live node.
    Run(containers::RunArgs),
    /// List the cluster's containers as node/name with network, address and state.
    Ps(containers::PsArgs),
    /// Run a command in a container on this host.
    Exec(containers::ExecArgs),
    /// Remove containers; their addresses are released.
    Rm(containers::RmArgs),
}

pub fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: daemons' logs usually go to files or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Stats(args) => stats::run(args),
        Command::Agent(args) => agent::run(*args),
        Command::Manage(args) => manage::run(args),
        Command::List(args) => list::run(args),
        Command::Info(args) => info::run(args),
        Command::Network(args) => network::run(args),
        Command::Run(args) => containers::run(args),
        Command::Ps(args) => containers::ps(args),
        Command::Exec(args) => containers::exec(args),
        Command::Rm(args) => containers::rm(args),
    }
}
