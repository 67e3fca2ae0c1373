//! Scenario 5: the store loses all its data under a running cluster, twice: etcd stopped,
//! its data directory deleted and started empty; then the cluster's prefix deleted in one
//! request. On ZooKeeper, the data directory only (it deletes no prefix at once).
//! Meanwhile a 10 ms ping crosses hosts. The agents must put back their nodes,
//! networks (one without containers too), containers, endpoints and addresses, and take
//! nothing down.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::Context;
use overlay::{network::NetworkRecord, store::Entry};

use super::{audit, fixture::Cluster, leader_kill::container_ip};
use crate::{cluster, stores::Backend, traffic};

#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// How long the ping runs from a second before each loss: past the agents' hold
    /// (30 s after they notice), to see that what they keep is still right after it.
    pub flow: Duration,
}

/// How the store lost its data.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// etcd stopped, its data directory deleted, started again empty.
    DataDirectory,
    /// `etcdctl del --prefix /PREFIX/`: one deletion, one revision.
    Prefix,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Case {
    pub loss: Loss,
    /// Keys under `v1/` before the loss.
    pub keys_before: usize,
    /// A 10 ms ping between containers of two hosts, across the loss.
    pub flow_sent: u32,
    pub flow_lost: u32,
    /// From the store being empty until it holds every node, network, container,
    /// endpoint and address again, as before.
    pub republished_s: f64,
    pub duplicate_addresses: usize,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Figures {
    pub data_directory: Case,
    /// `None` on ZooKeeper.
    pub prefix: Option<Case>,
}

/// What the store holds that must come back: containers with their addresses, networks
/// with their identity, and the live nodes.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    containers: BTreeMap<String, Ipv4Addr>,
    /// name → (ID, VNI, subnet)
    networks: BTreeMap<String, (String, u32, ipnet::Ipv4Net)>,
    nodes: usize,
}

const CONTAINERS: [(usize, &str); 3] = [(0, "c1"), (1, "c2"), (2, "c3")];

fn held(entries: &[Entry]) -> anyhow::Result<Held> {
    let mut containers = BTreeMap::new();
    for (_, name) in CONTAINERS {
        containers.insert(name.to_owned(), container_ip(entries, name)?);
    }
    let mut networks = BTreeMap::new();
    for entry in entries.iter().filter(|e| e.key.starts_with(overlay::network::keys::IDS)) {
        let record: NetworkRecord = serde_json::from_slice(&entry.value)?;
        networks.insert(record.name, (record.id, record.vni, record.subnet));
    }
    let nodes = entries.iter().filter(|e| e.key.starts_with("v1/nodes/")).count();
    Ok(Held { containers, networks, nodes })
}

pub fn run(size: Size) -> anyhow::Result<Figures> {
    run_on(Backend::Etcd, size)
}

pub fn run_on(backend: Backend, size: Size) -> anyhow::Result<Figures> {
    let mut cluster = Cluster::start_on(backend, "wipe", 1, 3, 10)?;
    let result = body(&mut cluster, size);
    cluster.report(result)
}

fn body(cluster: &mut Cluster, size: Size) -> anyhow::Result<Figures> {
    // A network no container uses: it has no owner but must come back too.
    cluster.overlay(0, &["network", "create", "--subnet", "10.0.6.0/24", "empty"])?;
    let mut ips = Vec::new();
    for (host, name) in CONTAINERS {
        ips.push(cluster.run(host, name)?);
    }
    let (ns1, ip1) = ips[0].clone();
    let (ns2, _) = ips[1].clone();
    traffic::wait_reachable(&ns2, ip1, Duration::from_secs(10))?;
    let before = held(&cluster.snapshot()?)?;
    let data_directory = lose(cluster, Loss::DataDirectory, &before, &ns2, ip1, size)?;
    let prefix = match cluster.zookeeper {
        Some(_) => None,
        None => Some(lose(cluster, Loss::Prefix, &before, &ns2, ip1, size)?),
    };
    // The IPAM still works and gives no address twice.
    let (_, ip4) = cluster.run(2, "c4")?;
    traffic::wait_reachable(&ns1, ip4, Duration::from_secs(10))?;
    let report = audit(&cluster.snapshot()?, &Default::default());
    anyhow::ensure!(report.is_clean(), "after a new container: {:?}", report.problems);
    Ok(Figures { data_directory, prefix })
}

fn lose(
    cluster: &mut Cluster,
    loss: Loss,
    before: &Held,
    from: &str,
    to: Ipv4Addr,
    size: Size,
) -> anyhow::Result<Case> {
    let keys_before = cluster.snapshot()?.len();
    let flow = traffic::Flow::during(from, to, size.flow, "0.01")?;
    let flow_started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    match (loss, &mut cluster.zookeeper) {
        (Loss::DataDirectory, Some(zookeeper)) => {
            zookeeper.stop()?;
            zookeeper.wipe()?;
            zookeeper.start_again()?;
        }
        (Loss::DataDirectory, None) => {
            let etcd = &mut cluster.etcd.members[0];
            etcd.stop()?;
            etcd.wipe()?;
            etcd.start_again()?;
        }
        (Loss::Prefix, _) => {
            let deleted = cluster.etcd.members[0].delete_prefix(&format!("/{}/", cluster.prefix))?;
            anyhow::ensure!(deleted > 0, "nothing under /{}/ to delete", cluster.prefix);
        }
    }
    eprintln!("{loss:?}: the store is empty");
    let (_, republished) =
        cluster::wait_for("the agents to put back what the store held", Duration::from_secs(60), || {
            let entries = cluster.snapshot()?;
            let now = match held(&entries) {
                Ok(now) => now,
                Err(error) => return Ok(Err(format!("{error:#}"))),
            };
            if now != *before {
                return Ok(Err(format!("{now:?}, before {before:?}")));
            }
            let report = audit(&entries, &Default::default());
            Ok(if report.is_clean() { Ok(()) } else { Err(format!("{:?}", report.problems)) })
        })?;
    let report = audit(&cluster.snapshot()?, &Default::default());
    std::thread::sleep(size.flow.saturating_sub(flow_started.elapsed()));
    let flow = flow.finish().context("the ping across the loss")?;
    let mut problems = report.problems.clone();
    for dead in cluster.dead_agents() {
        problems.push(format!("agent {dead} exited"));
    }
    Ok(Case {
        loss,
        keys_before,
        flow_sent: flow.transmitted,
        flow_lost: flow.transmitted - flow.received,
        republished_s: republished.as_secs_f64(),
        duplicate_addresses: report.duplicate_addresses,
        problems,
    })
}
