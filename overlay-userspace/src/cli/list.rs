//! `overlay list`: the advertised address of each live node, one per line.

use clap::Args;
use overlay::cluster::view;

use super::common::StoreOptions;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub store: StoreOptions,
}

pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = args.store.connect(&runtime)?;
    let view = runtime.block_on(view::read(&store))?;
    let mut addresses: Vec<_> = view.nodes.iter().map(|n| n.record.address).collect();
    addresses.sort();
    for address in addresses {
        println!("{address}");
    }
    Ok(())
}
