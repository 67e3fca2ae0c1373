//! `overlay manage`: the manager daemon (node health; one of several leads).

use std::time::Duration;

use clap::Args;
use overlay::cluster::{HostFacts, ManagerConfig, manager, node};

use super::common::{StoreArgs, TimingArgs, parse_duration, store_timeout_arg};

#[derive(Debug, Args)]
pub struct ManageArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The manager's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// This host's address, shown in `overlay info` (optional).
    #[arg(long, env = "OVERLAY_ADVERTISE")]
    pub advertise: Option<String>,
    /// How often the leading manager checks the nodes' heartbeats.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub check_interval: Duration,
    /// Give up if the store stays unreachable this long at start (default: keep trying).
    #[arg(long, value_parser = parse_duration)]
    pub store_timeout: Option<Duration>,
    #[command(flatten)]
    pub timing: TimingArgs,
}

pub fn run(args: ManageArgs) -> anyhow::Result<()> {
    let store_config = args.store.config()?;
    let timing = args.timing.timing()?;
    let address = args.advertise.as_deref().map(node::parse_advertise).transpose()?;
    if args.check_interval < Duration::from_millis(100) {
        anyhow::bail!("--check-interval {:?} is below 100ms", args.check_interval);
    }
    let facts = HostFacts::gather()?;
    let name = args.name.unwrap_or_else(|| facts.hostname.clone());
    node::validate_name(&name)?;
    let config = ManagerConfig { name, address, hostname: facts.hostname, timing, check_interval: args.check_interval };
    let store_timeout = store_timeout_arg(args.store_timeout, None);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let shutdown = overlay::shutdown::on_signals()?;
        let store = match overlay::store::connect(&store_config, store_timeout, &shutdown).await {
            Err(overlay::store::StoreError::Stopped) => return Ok(()),
            other => other?,
        };
        manager::run(store, config, shutdown).await?;
        Ok(())
    })
}
