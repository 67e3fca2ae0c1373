//! Scenario 1: a three-member etcd cluster loses its leader (SIGKILL) while a 10 ms
//! ping crosses hosts and containers are being started; then the member comes back.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};

use super::{
    audit,
    fixture::{Cluster, NETWORK},
};
use crate::{cluster, traffic};

/// How big a run is.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Containers started one after the other, the first before the kill; the kill falls
    /// while the second is being started.
    pub containers: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Figures {
    pub killed_member: String,
    /// From the kill until the surviving members agree on a new leader.
    pub election_s: f64,
    pub flow_sent: u32,
    pub flow_lost: u32,
    /// The container being started when the leader died: from the kill until a
    /// container on another host gets its first answer.
    pub in_flight_reachable_after_kill_s: f64,
    /// Every container started across or after the kill: the longest time from the
    /// later of the kill and its `overlay run` until another host reaches it.
    pub max_reachable_s: f64,
    pub containers_started: usize,
    /// From the member's restart until it holds what the others hold.
    pub member_caught_up_s: f64,
    pub duplicate_addresses: usize,
    pub problems: Vec<String>,
}

/// One container started by the starter thread.
struct Started {
    name: String,
    run_started: Instant,
    reachable: Instant,
}

pub fn run(size: Size) -> anyhow::Result<Figures> {
    anyhow::ensure!(size.containers >= 2, "the leader is killed while the second container starts");
    let mut cluster = Cluster::start("ldr", 3, 3, 6)?;
    let result = body(&mut cluster, size);
    cluster.report(result)
}

fn body(cluster: &mut Cluster, size: Size) -> anyhow::Result<Figures> {
    let (ns1, ip1) = cluster.run(0, "c1")?;
    let (ns2, ip2) = cluster.run(1, "c2")?;
    traffic::wait_reachable(&ns2, ip1, Duration::from_secs(10))?;
    let agents = cluster.agent_names.len();

    // The flow outlasts the starts: about 1.5 s per start on a loaded machine, plus margins.
    let flow_packets = u32::try_from(100 * (4 + 2 * size.containers)).unwrap_or(u32::MAX);
    let flow = traffic::Flow::start(&ns2, ip1, flow_packets, "0.01")?;
    std::thread::sleep(Duration::from_millis(500));

    let (done_tx, done_rx) = mpsc::channel::<usize>();
    // The starter reads the lab while this thread kills an etcd member.
    let (lab, store, names, etcd) = (&cluster.lab, &cluster.store, &cluster.agent_names, &mut cluster.etcd);
    let started = std::thread::scope(|scope| -> anyhow::Result<(Vec<Started>, String, Instant, Duration)> {
        let starter = scope.spawn(|| -> anyhow::Result<Vec<Started>> {
            let mut started = Vec::new();
            for i in 0..size.containers {
                let node = i % agents;
                let name = format!("s{i}");
                let run_started = Instant::now();
                let (_, ip) = cluster::run_container(lab, store, &names[node], &name, NETWORK, &[])
                    .with_context(|| format!("starting {name}"))?;
                // Reached from a container on another host: c2 on agt02, or c1 on agt01.
                let peer = if node == 1 { &ns1 } else { &ns2 };
                traffic::wait_reachable(peer, ip, Duration::from_secs(20))
                    .with_context(|| format!("{name} on {}", names[node]))?;
                started.push(Started { name, run_started, reachable: Instant::now() });
                let _ = done_tx.send(i);
            }
            Ok(started)
        });
        // The first container is up: kill the leader as the second one starts.
        done_rx.recv_timeout(Duration::from_secs(30)).context("the first container did not start")?;
        let leader = etcd.leader(Duration::from_secs(10))?;
        let killed_at = Instant::now();
        etcd.members[leader].kill()?;
        let name = etcd.members[leader].name.clone();
        etcd.leader(Duration::from_secs(15)).context("no new leader")?;
        let election = killed_at.elapsed();
        let started = starter.join().map_err(|_| anyhow::anyhow!("the starter panicked"))??;
        Ok((started, name, killed_at, election))
    });
    let (started, killed_member, killed_at, election) = started?;
    let flow = flow.finish()?;
    let in_flight = started.get(1).context("no second container")?;
    let in_flight_reachable = in_flight.reachable.saturating_duration_since(killed_at);
    let max_reachable = started[1..]
        .iter()
        .map(|s| s.reachable.saturating_duration_since(s.run_started.max(killed_at)))
        .max()
        .unwrap_or_default();
    eprintln!(
        "leader {killed_member} killed; new leader after {election:?}; flow {}/{}; {} reachable {in_flight_reachable:?} \
         after the kill; slowest start {max_reachable:?}",
        flow.received, flow.transmitted, in_flight.name
    );

    // The member comes back and catches up; nothing was lost or given twice.
    let member = cluster.etcd.members.iter().position(|m| m.name == killed_member).context("member")?;
    let back = Instant::now();
    cluster.etcd.members[member].start_again()?;
    let alone = format!("etcd://{}:{}/{}", cluster.etcd.members[member].ip, crate::etcd::CLIENT_PORT, cluster.prefix);
    let host = cluster.host(0).clone();
    let (_, _) =
        cluster::wait_for("the restarted member to hold what the others hold", Duration::from_secs(30), || {
            let keys = |url: &str| -> anyhow::Result<Vec<(String, i64)>> {
                Ok(cluster::list_raw(&host, url, "v1/")?.entries.into_iter().map(|e| (e.key, e.mod_revision)).collect())
            };
            let (others, mine) = (keys(&cluster.store)?, keys(&alone)?);
            Ok(if others == mine { Ok(()) } else { Err(format!("{} keys vs {} keys", others.len(), mine.len())) })
        })?;
    let caught_up = back.elapsed();
    let entries = cluster::list_raw(&host, &alone, "v1/")?.entries;
    let audit = audit(&entries, &Default::default());
    let mut problems = audit.problems.clone();
    let expected = size.containers + 2;
    if audit.containers != expected {
        problems.push(format!("{} containers in the store, {expected} started", audit.containers));
    }
    for dead in cluster.dead_agents() {
        problems.push(format!("agent {dead} exited"));
    }
    // Every container, old and new, is still reached across hosts.
    for (i, s) in started.iter().enumerate() {
        let node = i % agents;
        let ip = container_ip(&entries, &s.name)?;
        let peer = if node == 1 { &ns1 } else { &ns2 };
        if let Err(e) = traffic::ping_ok(peer, ip, 1) {
            problems.push(format!("{} after the member came back: {e:#}", s.name));
        }
    }
    traffic::ping_ok(&ns1, ip2, 1)?;
    ensure!(flow.transmitted == flow_packets, "the flow sent {} of {flow_packets}", flow.transmitted);
    Ok(Figures {
        killed_member,
        election_s: election.as_secs_f64(),
        flow_sent: flow.transmitted,
        flow_lost: flow.transmitted - flow.received,
        in_flight_reachable_after_kill_s: in_flight_reachable.as_secs_f64(),
        max_reachable_s: max_reachable.as_secs_f64(),
        containers_started: started.len(),
        member_caught_up_s: caught_up.as_secs_f64(),
        duplicate_addresses: audit.duplicate_addresses,
        problems,
    })
}

/// The address of container `name` on net1, from its published status.
pub fn container_ip(entries: &[overlay::store::Entry], name: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    let key = overlay::container::record::status_key(name);
    let entry = entries.iter().find(|e| e.key == key).with_context(|| format!("no status for {name}"))?;
    let status: overlay::container::record::ContainerStatus = serde_json::from_slice(&entry.value)?;
    status.networks.iter().find(|n| n.network == NETWORK).map(|n| n.ip).with_context(|| format!("{name} not on net1"))
}
