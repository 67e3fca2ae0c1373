//! `overlay agent`: the host daemon. Joins the cluster and stays until SIGINT/SIGTERM.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use overlay::{
    agent::{self, AgentConfig},
    cluster::{DEFAULT_STATE_DIR, node},
};

use super::common::{StoreArgs, TimingArgs, parse_duration, store_timeout_arg};

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// This host's underlay address, which the other hosts reach it at (e.g. 192.168.1.141).
    #[arg(long, env = "OVERLAY_ADVERTISE")]
    pub advertise: String,
    /// The node's name in the cluster (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// A label KEY=VALUE for the node (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Where the node's identity is kept.
    #[arg(long, env = "OVERLAY_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Replace the node identity with a fresh one (for a host cloned from another).
    #[arg(long)]
    pub reset_identity: bool,
    /// Give up if the store stays unreachable this long at start (default: keep trying).
    #[arg(long, value_parser = parse_duration)]
    pub store_timeout: Option<Duration>,
    #[command(flatten)]
    pub timing: TimingArgs,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    // Everything is validated before the first write (identity file, store).
    let config = AgentConfig {
        store: args.store.config()?,
        store_timeout: store_timeout_arg(args.store_timeout, None),
        advertise: node::parse_advertise(&args.advertise)?,
        name: args.name.map(|n| node::validate_name(&n).map(|()| n)).transpose()?,
        labels: node::parse_labels(&args.labels)?,
        state_dir: args.state_dir,
        reset_identity: args.reset_identity,
        timing: args.timing.timing()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let shutdown = overlay::shutdown::on_signals()?;
        agent::run(config, shutdown).await?;
        Ok(())
    })
}
