//! `overlay run|ps|exec|rm`: containers on the overlay, from any host.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use overlay::{
    container::record::{self, ContainerRecord, ContainerStatus, NetworkRequest, State, Strategy},
    network,
    store::{AnyStore, Expect, PutOutcome, Store},
};

use super::common::{StoreOptions, parse_duration};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub store: StoreOptions,
    /// The container's name, unique in the cluster.
    #[arg(long)]
    pub name: String,
    /// A network to join (repeatable; the first one gives the default route).
    #[arg(long = "net", required = true)]
    pub networks: Vec<String>,
    /// A static address on the (first) network; granted only if free.
    #[arg(long)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Another name the container answers to in DNS (repeatable).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Publish a port of the container on its host's addresses, HOSTPORT:PORT[/tcp|/udp]
    /// (repeatable), as `docker run -p`. The first network must not be internal; a host
    /// port already in use on the host makes the container fail to start.
    #[arg(short = 'p', long = "publish", value_name = "HOSTPORT:PORT[/PROTO]")]
    pub ports: Vec<overlay::egress::PortMapping>,
    /// Run it on this node (name or ID).
    #[arg(long)]
    pub node: Option<String>,
    /// Only on nodes with this label, LABEL=VALUE (repeatable).
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// How the manager picks a node.
    #[arg(long, value_enum, default_value_t = Strategy::Spread)]
    pub strategy: Strategy,
    /// How long to wait for the container to run.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// The command to start inside the container.
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    record::validate_name(&args.name).map_err(anyhow::Error::msg)?;
    for alias in &args.aliases {
        record::validate_name(alias).map_err(|e| anyhow::anyhow!("alias: {e}"))?;
    }
    overlay::egress::ports::check_unique(&args.ports).map_err(anyhow::Error::msg)?;
    let mut constraints = BTreeMap::new();
    for c in &args.constraints {
        let (k, v) = c.split_once('=').with_context(|| format!("--constraint {c:?}: use LABEL=VALUE"))?;
        constraints.insert(k.to_owned(), v.to_owned());
    }
    let rt = runtime()?;
    let store = args.store.connect(&rt)?;
    rt.block_on(async {
        let mut networks = Vec::new();
        for (i, name) in args.networks.iter().enumerate() {
            // Checked now, so a typo fails here rather than on the agent.
            let found = network::find(&store, name).await?;
            networks.push(NetworkRequest { network: found.id, ip: if i == 0 { args.ip } else { None } });
        }
        let node_id = match &args.node {
            Some(node) => Some(resolve_node(&store, node).await?),
            None => None,
        };
        let record = ContainerRecord {
            name: args.name.clone(),
            id: network::new_id(),
            networks,
            aliases: args.aliases.clone(),
            command: args.command.clone(),
            ports: args.ports.clone(),
            strategy: args.strategy,
            constraints,
            node_id,
            created_at: overlay::cluster::unix_now(),
        };
        let value = serde_json::to_vec(&record)?;
        match store.put_if(&record::key(&args.name), value, None, Expect::Absent).await? {
            PutOutcome::Written => {}
            PutOutcome::Conflict(_) => {
                bail!("a container named {:?} exists already; pick another name or `overlay rm` it", args.name)
            }
        }
        let status = wait_running(&store, &args.name, args.timeout).await?;
        let addresses: Vec<String> = status.networks.iter().map(|n| format!("{} {}", n.network, n.ip)).collect();
        println!("{}/{}  {}", status.node_name, status.name, addresses.join(", "));
        if let Some(message) = &status.message {
            eprintln!("warning: {message}");
        }
        anyhow::Ok(())
    })
}

async fn resolve_node(store: &AnyStore, node: &str) -> anyhow::Result<String> {
    let view = overlay::cluster::view::read(store).await?;
    view.nodes
        .iter()
        .find(|n| n.record.id == node || n.record.name == node)
        .map(|n| n.record.id.clone())
        .with_context(|| format!("no live node named or with ID {node:?}; `overlay list` shows the live nodes"))
}

async fn wait_running(store: &AnyStore, name: &str, timeout: Duration) -> anyhow::Result<ContainerStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // A store that is electing a leader (a member just died) refuses for a second or
        // two: the container is still being started, so keep asking until the deadline.
        let entry = match store.get(&record::status_key(name)).await {
            Ok(entry) => entry,
            Err(error) if error.is_transient() && tokio::time::Instant::now() < deadline => {
                tracing::debug!("asking for the status of {name}: {error}; asking again");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        if let Some(entry) = entry {
            let status: ContainerStatus = serde_json::from_slice(&entry.value)?;
            match status.state {
                State::Running => return Ok(status),
                State::Failed => bail!(
                    "container {name} failed on {}: {}; remove it with `overlay rm {name}`",
                    status.node_name,
                    status.message.unwrap_or_default()
                ),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let placed = store
                .get(&record::key(name))
                .await?
                .and_then(|e| serde_json::from_slice::<ContainerRecord>(&e.value).ok());
            let why = match placed.and_then(|r| r.node_id) {
                None => "no manager placed it: is `overlay manage` running?".to_owned(),
                Some(node) => format!("node {node} did not start it: is its agent running?"),
            };
            bail!("container {name} is not running after {timeout:?}: {why}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub store: StoreOptions,
}

pub fn ps(args: PsArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let store = args.store.connect(&rt)?;
    rt.block_on(async {
        let containers = record::list_with_status(&store).await?;
        println!("{:<32}{:<20}{:<16}{:<24}STATE", "NAME", "NETWORK", "ADDRESS", "PORTS");
        for (r, status) in containers {
            match status {
                Some(s) => {
                    let state = match s.state {
                        State::Running => "running".to_owned(),
                        State::Failed => format!("failed: {}", s.message.clone().unwrap_or_default()),
                    };
                    let (net, ip) =
                        s.networks.first().map(|n| (n.network.clone(), n.ip.to_string())).unwrap_or_default();
                    let ports: Vec<String> = s.ports.iter().map(ToString::to_string).collect();
                    let ports = if ports.is_empty() { "-".to_owned() } else { ports.join(",") };
                    let placed = format!("{}/{}", s.node_name, r.name);
                    println!("{placed:<32}{net:<20}{ip:<16}{ports:<24}{state}");
                    for n in s.networks.iter().skip(1) {
                        println!("{:<32}{:<20}{:<16}", "", n.network, n.ip.to_string());
                    }
                }
                None => {
                    let state = if r.node_id.is_some() { "starting or node down" } else { "pending placement" };
                    println!("{:<32}{:<20}{:<16}{:<24}{}", format!("-/{}", r.name), "", "", "", state);
                }
            }
        }
        anyhow::Ok(())
    })
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[command(flatten)]
    pub store: StoreOptions,
    pub names: Vec<String>,
}

pub fn rm(args: RmArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let store = args.store.connect(&rt)?;
    rt.block_on(async {
        for name in &args.names {
            if !record::remove(&store, name).await? {
                bail!("no container named {name:?}; `overlay ps` lists them");
            }
            println!("{name}");
        }
        anyhow::Ok(())
    })
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub store: StoreOptions,
    pub name: String,
    /// The command, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs the command in the container's namespace on this host, with its resolv.conf.
pub fn exec(args: ExecArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let store = args.store.connect(&rt)?;
    let status = rt.block_on(async {
        let entry = store.get(&record::status_key(&args.name)).await?;
        let entry =
            entry.with_context(|| format!("container {:?} is not running; `overlay ps` lists them", args.name))?;
        anyhow::Ok(serde_json::from_slice::<ContainerStatus>(&entry.value)?)
    })?;
    let path = overlay::netns::path(&status.netns);
    if !path.exists() {
        bail!("container {} runs on {}, not on this host: run `overlay exec` there", args.name, status.node_name);
    }
    let code = std::process::Command::new("ip")
        .args(["netns", "exec", &status.netns])
        .args(&args.command)
        .status()
        .context("running `ip netns exec`")?;
    std::process::exit(code.code().unwrap_or(1));
}
