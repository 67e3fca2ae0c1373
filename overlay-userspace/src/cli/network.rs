//! `overlay network create|ls|inspect|rm`: cluster-wide overlay networks.

use anyhow::Context;
use clap::{Args, Subcommand};
use overlay::network::{self, CreateRequest, NetworkSpec, SubnetPool};

use super::common::StoreOptions;

#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network once for the whole cluster.
    Create(CreateArgs),
    /// List the cluster's networks: ID, NAME, DRIVER, SCOPE, SUBNET.
    Ls {
        #[command(flatten)]
        store: StoreOptions,
    },
    /// Print a network as JSON: subnet, gateway, VNI, labels, endpoints per host.
    Inspect {
        #[command(flatten)]
        store: StoreOptions,
        /// Name or ID.
        network: String,
    },
    /// Remove a network (refused while containers are attached).
    Rm {
        #[command(flatten)]
        store: StoreOptions,
        /// Name or ID.
        network: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub store: StoreOptions,
    /// The driver; only "overlay" exists.
    #[arg(long, short = 'd')]
    pub driver: Option<String>,
    /// The subnet (CIDR). Without it, the first free /24 of --default-pool that no
    /// network and no member host's route or address overlaps.
    #[arg(long)]
    pub subnet: Option<String>,
    /// The gateway (default: the first address of the subnet).
    #[arg(long)]
    pub gateway: Option<String>,
    /// Give out dynamic addresses from this part of the subnet only.
    #[arg(long)]
    pub ip_range: Option<String>,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// No traffic leaves the overlay; the DNS resolver forwards no names.
    #[arg(long)]
    pub internal: bool,
    /// Where subnets are taken from when --subnet is not given.
    #[arg(long, default_value = "10.0.0.0/8")]
    pub default_pool: String,
    /// The prefix length of subnets taken from --default-pool.
    #[arg(long, default_value_t = 24)]
    pub default_size: u8,
    pub name: String,
}

pub fn run(args: NetworkArgs) -> anyhow::Result<()> {
    // Everything the user typed is checked before the store is contacted.
    let create = match &args.command {
        NetworkCommand::Create(c) => {
            let request = CreateRequest {
                name: c.name.clone(),
                driver: c.driver.clone(),
                subnet: c.subnet.clone(),
                gateway: c.gateway.clone(),
                ip_range: c.ip_range.clone(),
                labels: c.labels.clone(),
                internal: c.internal,
                id: None,
            };
            Some((NetworkSpec::parse(&request)?, SubnetPool::new(&c.default_pool, c.default_size)?))
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = match &args.command {
        NetworkCommand::Create(CreateArgs { store, .. })
        | NetworkCommand::Ls { store }
        | NetworkCommand::Inspect { store, .. }
        | NetworkCommand::Rm { store, .. } => store.connect(&runtime)?,
    };
    runtime.block_on(async {
        match &args.command {
            NetworkCommand::Create(_) => {
                let (spec, pool) = create.context("validated above")?;
                let record = network::create(&store, &spec, &pool).await?;
                println!("{}", record.id);
            }
            NetworkCommand::Ls { .. } => {
                println!("{:<14}{:<20}{:<10}{:<8}SUBNET", "NETWORK ID", "NAME", "DRIVER", "SCOPE");
                for n in network::list(&store).await? {
                    println!("{:<14}{:<20}{:<10}{:<8}{}", n.short_id(), n.name, n.driver, n.scope(), n.subnet);
                }
            }
            NetworkCommand::Inspect { network, .. } => {
                let view = network::inspect(&store, network).await?;
                println!("{}", serde_json::to_string_pretty(&view)?);
            }
            NetworkCommand::Rm { network, .. } => {
                let record = network::remove(&store, network).await?;
                println!("{}", record.name);
            }
        }
        anyhow::Ok(())
    })
}
