//! Scenario 2: one host cut off from every store member (its packets to and from them
//! dropped by nftables in its own namespace) for a while, then healed, with a lease
//! that outlives the partition or one that does not.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::{audit, fixture::Cluster, leader_kill::container_ip};
use crate::{cmd, traffic};

#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub partition: Duration,
    /// The agents' lease: longer than the partition (the cut-off host keeps its
    /// registration) or shorter (it registers again after the heal).
    pub ttl_secs: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Figures {
    pub partition_s: f64,
    pub ttl_s: u64,
    /// Whether the cut-off host's lease was still there at the heal.
    pub lease_survived: bool,
    /// A 10 ms ping from another host to a container of the cut-off host, during the
    /// partition.
    pub flow_sent: u32,
    pub flow_lost: u32,
    /// From the heal until the cut-off host's container and one started elsewhere
    /// during the partition reach each other, and the store's records are whole again.
    pub converge_s: f64,
    pub problems: Vec<String>,
}

/// The nftables table that cuts a host off (only in that host's namespace).
const TABLE: &str = "ovt_partition";

/// Drops everything between `ns` and `peers`, in `ns` only.
pub fn cut_off(ns: &str, peers: &[std::net::Ipv4Addr]) -> anyhow::Result<()> {
    let set = peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let rules = format!(
        "table inet {TABLE} {{\n\
         chain out {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
         chain in {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
         }}\n"
    );
    let file = std::env::temp_dir().join(format!("{ns}-partition.nft"));
    std::fs::write(&file, rules)?;
    let result = cmd::run_in(ns, &["nft", "-f", file.to_str().context("path")?]);
    let _ = std::fs::remove_file(&file);
    result.map(|_| ())
}

/// Undoes [`cut_off`].
pub fn heal(ns: &str) -> anyhow::Result<()> {
    cmd::run_in(ns, &["nft", "delete", "table", "inet", TABLE]).map(|_| ())
}

pub fn run(size: Size) -> anyhow::Result<Figures> {
    let mut cluster = Cluster::start("part", 3, 3, size.ttl_secs)?;
    let result = body(&mut cluster, size);
    cluster.report(result)
}

fn body(cluster: &mut Cluster, size: Size) -> anyhow::Result<Figures> {
    let (ns1, ip1) = cluster.run(0, "c1")?;
    let (ns2, _) = cluster.run(1, "c2")?;
    traffic::wait_reachable(&ns2, ip1, Duration::from_secs(10))?;
    let members: Vec<std::net::Ipv4Addr> = cluster.etcd.members.iter().map(|m| m.ip).collect();
    let cut = cluster.host(0).ns.clone();
    // agt01's lease, as agt02 reads it from the store.
    let node_key = |c: &Cluster| -> anyhow::Result<Option<i64>> {
        let entries = crate::cluster::list_raw(c.host(1), &c.store, "v1/nodes/")?.entries;
        Ok(entries
            .iter()
            .find(|e| serde_json::from_slice::<serde_json::Value>(&e.value).is_ok_and(|v| v["name"] == "agt01"))
            .and_then(|e| e.lease))
    };
    let lease_before = node_key(cluster)?.context("agt01 is not registered")?;

    cut_off(&cut, &members)?;
    let cut_at = Instant::now();
    // The flow ends a second before the heal: it measures the partition only.
    let flow = traffic::Flow::during(&ns2, ip1, size.partition.saturating_sub(Duration::from_secs(1)), "0.01")?;
    // Meanwhile the rest of the cluster goes on: a container starts on agt03.
    std::thread::sleep(size.partition / 3);
    let (_, ip4) = cluster.run(2, "c4")?;
    let flow = flow.finish()?;
    std::thread::sleep(size.partition.saturating_sub(cut_at.elapsed()));
    let lease_at_heal = node_key(cluster)?;
    heal(&cut)?;
    let healed = Instant::now();
    eprintln!("healed {:?} after the cut", cut_at.elapsed());

    let mut problems = Vec::new();
    let (_, converge) = crate::cluster::wait_for("the cut-off host to converge", Duration::from_secs(60), || {
        let entries = cluster.snapshot()?;
        let audit = audit(&entries, &Default::default());
        if !audit.is_clean() {
            return Ok(Err(format!("{:?}", audit.problems)));
        }
        if container_ip(&entries, "c1")? != ip1 {
            return Ok(Err("c1 changed address".into()));
        }
        // Both ways across the healed host, with short probes.
        for (from, to) in [(&ns1, ip4), (&ns2, ip1)] {
            if traffic::wait_reachable(from, to, Duration::from_secs(1)).is_err() {
                return Ok(Err(format!("{to} does not answer {from}")));
            }
        }
        Ok(Ok(()))
    })?;
    let converge = converge.min(healed.elapsed());
    for dead in cluster.dead_agents() {
        problems.push(format!("agent {dead} exited"));
    }
    Ok(Figures {
        partition_s: size.partition.as_secs_f64(),
        ttl_s: size.ttl_secs,
        lease_survived: lease_at_heal == Some(lease_before),
        flow_sent: flow.transmitted,
        flow_lost: flow.transmitted - flow.received,
        converge_s: converge.as_secs_f64(),
        problems,
    })
}
