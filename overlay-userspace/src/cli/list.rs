//! `overlay list`: the advertised address of each live node, one per line.

use std::time::Duration;

use clap::Args;
use overlay::{cluster::view, shutdown::Shutdown};

use super::common::{StoreArgs, parse_duration, store_timeout_arg};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Give up if the store stays unreachable this long (0: keep trying).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub store_timeout: Duration,
}

pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    let timeout = store_timeout_arg(Some(args.store_timeout), None);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let view = runtime.block_on(async {
        let store = overlay::store::connect(&config, timeout, &Shutdown::never()).await?;
        anyhow::Ok(view::read(&store).await?)
    })?;
    let mut addresses: Vec<_> = view.nodes.iter().map(|n| n.record.address).collect();
    addresses.sort();
    for address in addresses {
        println!("{address}");
    }
    Ok(())
}
