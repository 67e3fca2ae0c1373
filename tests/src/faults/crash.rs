//! Scenario 3: the agent SIGKILLed at a random point of `overlay run`, `overlay rm` and
//! `network rm`, and started again, round after round. After each restart everything
//! the store holds runs and is reachable, and nothing on the host or in the store is
//! left without an owner.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::Context;
use overlay::{endpoint::EndpointRecord, store::Entry};
use rand::Rng;

use super::{audit, fixture::Cluster, leader_kill::container_ip};
use crate::{cluster, cmd, traffic};

#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub rounds: usize,
    /// The kill comes after a random delay up to this, from the command's start.
    pub max_delay: Duration,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Figures {
    pub rounds: usize,
    pub kills_during_run: usize,
    pub kills_during_rm: usize,
    pub kills_during_network_rm: usize,
    /// Commands that failed because of the kill (their effect must still be whole).
    pub commands_failed: usize,
    /// From the kill until the host and the store are as they should be: the slowest
    /// round and the median.
    pub max_recovery_s: f64,
    pub median_recovery_s: f64,
    /// Namespaces, veths, datapath entries, endpoints or addresses without an owner,
    /// and addresses held twice, summed over the rounds (each counted once per round).
    pub leaks: usize,
    pub duplicates: usize,
    pub problems: Vec<String>,
}

/// What the host of agent `index` holds that the store does not account for, and the
/// other way round: namespaces of containers not placed there, veths and datapath
/// entries of endpoints it does not publish.
pub fn host_leftovers(cluster: &Cluster, index: usize, entries: &[Entry]) -> anyhow::Result<Vec<String>> {
    let host = cluster.host(index);
    let node_id = node_id(entries, &host.name).context("node not registered")?;
    let mut problems = Vec::new();
    let placed: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.key.starts_with("v1/containers/"))
        .filter_map(|e| serde_json::from_slice::<overlay::container::record::ContainerRecord>(&e.value).ok())
        .filter(|r| r.node_id.as_deref() == Some(node_id.as_str()))
        .map(|r| r.name)
        .collect();
    let prefix = cluster::container_netns_prefix(&cluster.lab, host);
    let namespaces: BTreeSet<String> = cmd::run(&["ip", "netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.strip_prefix(&prefix).map(str::to_owned))
        // The Docker resolver's namespace shares the prefix; no container has its name.
        .filter(|name| name != overlay::docker::resolver_namespace::NETNS_SUFFIX)
        .collect();
    if namespaces != placed {
        problems.push(format!("{}: namespaces {namespaces:?}, containers placed there {placed:?}", host.name));
    }
    let endpoints: Vec<EndpointRecord> = entries
        .iter()
        .filter(|e| e.key.starts_with(overlay::endpoint::ENDPOINTS))
        .filter_map(|e| EndpointRecord::parse(&e.key, &e.value))
        .filter(|e| e.node_id == node_id)
        .collect();
    let wanted_veths: BTreeSet<String> =
        endpoints.iter().map(|e| overlay::container::host_interface_name(&e.id)).collect();
    let veths: BTreeSet<String> = cmd::ip(&host.ns, &["-o", "link", "show", "type", "veth"])?
        .lines()
        .filter_map(|l| l.split(": ").nth(1)?.split('@').next().map(str::to_owned))
        .filter(|name| name.starts_with("ov"))
        .collect();
    if veths != wanted_veths {
        problems.push(format!("{}: veths {veths:?}, endpoints' {wanted_veths:?}", host.name));
    }
    let vni_of = |network_id: &str| {
        entries.iter().find(|e| e.key == format!("v1/networks/ids/{network_id}")).and_then(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.value).ok()?["vni"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
        })
    };
    let mut wanted_locals: Vec<(u32, Ipv4Addr)> =
        endpoints.iter().filter_map(|e| Some((vni_of(&e.network_id)?, e.ip))).collect();
    wanted_locals.sort();
    let locals = overlay::datapath::pinned_endpoints(&host.pin_dir, overlay_common::map_names::LOCAL_ENDPOINTS)?;
    if locals != wanted_locals {
        problems.push(format!("{}: datapath's local endpoints {locals:?}, endpoints' {wanted_locals:?}", host.name));
    }
    Ok(problems)
}

/// The ID of the node named `name`.
pub fn node_id(entries: &[Entry], name: &str) -> Option<String> {
    entries.iter().filter(|e| e.key.starts_with("v1/nodes/")).find_map(|e| {
        let node: serde_json::Value = serde_json::from_slice(&e.value).ok()?;
        (node["name"] == name).then(|| node["id"].as_str().map(str::to_owned)).flatten()
    })
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    Run,
    Rm,
    NetworkRm,
}

pub fn run(size: Size) -> anyhow::Result<Figures> {
    let mut cluster = Cluster::start("crash", 1, 2, 8)?;
    let result = body(&mut cluster, size);
    cluster.report(result)
}

fn body(cluster: &mut Cluster, size: Size) -> anyhow::Result<Figures> {
    // The peer on agt02 that reaches every container of agt01.
    let (peer_ns, _) = cluster.run(1, "peer")?;
    let mut rng = rand::thread_rng();
    let mut figures = Figures { rounds: size.rounds, ..Default::default() };
    let mut recoveries = Vec::new();
    let mut live: Vec<String> = Vec::new();
    for round in 0..size.rounds {
        // Between one and four containers on agt01: rm when there are many, run when none.
        let operation = match (live.len(), rng.gen_range(0..3)) {
            (0, _) => Operation::Run,
            (4.., _) => Operation::Rm,
            (_, 0) => Operation::Run,
            (_, 1) => Operation::Rm,
            _ => Operation::NetworkRm,
        };
        let spare = format!("spare{round}");
        if let Operation::NetworkRm = operation {
            let subnet = format!("10.1.{}.0/24", round % 250);
            cluster.overlay(0, &["network", "create", "--subnet", &subnet, &spare])?;
        }
        let victim =
            if let Operation::Rm = operation { live.remove(rng.gen_range(0..live.len())) } else { String::new() };
        let name = format!("k{round}");
        let delay = size.max_delay.mul_f64(rng.gen_range(0.0..1.0));
        let host = cluster.host(0).clone();
        let command = match operation {
            Operation::Run => {
                let args = ["run", "--name", &name, "--net", super::fixture::NETWORK, "--node", "agt01"];
                let mut args = args.to_vec();
                args.extend_from_slice(&["--timeout", "30s", "--", "sleep", "3600"]);
                cluster::overlay_spawn(&host, &cluster.store, &args)?
            }
            Operation::Rm => cluster::overlay_spawn(&host, &cluster.store, &["rm", &victim])?,
            Operation::NetworkRm => cluster::overlay_spawn(&host, &cluster.store, &["network", "rm", &spare])?,
        };
        // The processes of the containers this round leaves alone: an agent that starts
        // again adopts them, it does not start them again.
        let untouched: Vec<(String, String)> = live
            .iter()
            .filter(|c| **c != victim)
            .map(|c| {
                let ns = cluster.container_ns(0, c);
                let pids = cmd::run(&["ip", "netns", "pids", &ns]).unwrap_or_default();
                (c.clone(), sorted_words(&pids))
            })
            .collect();
        std::thread::sleep(delay);
        let killed_at = Instant::now();
        cluster.kill_agent(0)?;
        cluster.start_agent(0)?;
        let outcome = (command.wait_with_output()?.status.success(), killed_at);
        let (ok, killed_at) = outcome;
        match operation {
            Operation::Run => {
                figures.kills_during_run += 1;
                live.push(name.clone());
            }
            Operation::Rm => figures.kills_during_rm += 1,
            Operation::NetworkRm => figures.kills_during_network_rm += 1,
        }
        if !ok {
            figures.commands_failed += 1;
        }
        // Converged: the store audit is clean, the host holds exactly what the store
        // says, and every container of agt01 answers the peer.
        let mut first_seen: Option<String> = None;
        let check =
            cluster::wait_for(&format!("round {round} ({operation:?}) to converge"), Duration::from_secs(30), || {
                let entries = cluster.snapshot()?;
                let audit = audit(&entries, &Default::default());
                let mut problems = audit.problems.clone();
                problems.extend(host_leftovers(cluster, 0, &entries)?);
                if !cluster.dead_agents().is_empty() {
                    problems.push("agt01's agent exited".into());
                }
                for (container, pids) in &untouched {
                    let ns = cluster.container_ns(0, container);
                    let now = sorted_words(&cmd::run(&["ip", "netns", "pids", &ns]).unwrap_or_default());
                    if now != *pids {
                        problems.push(format!("{container}'s processes changed: {pids:?} before, {now:?} now"));
                    }
                }
                if problems.is_empty() {
                    for container in &live {
                        let ip = container_ip(&entries, container)?;
                        if traffic::ping(&peer_ns, ip, 1, "0.2")?.received == 0 {
                            problems.push(format!("{container} ({ip}) does not answer"));
                        }
                    }
                }
                if !problems.is_empty() && first_seen.is_none() && killed_at.elapsed() > Duration::from_secs(2) {
                    first_seen = Some(problems.join("; "));
                }
                Ok(if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) })
            });
        match check {
            Ok(_) => {
                let took = killed_at.elapsed();
                if took > Duration::from_secs(2) {
                    eprintln!(
                        "round {round}: {operation:?} killed after {delay:?}; converged after {took:?}; at 2 s: {}",
                        first_seen.unwrap_or_default()
                    );
                }
                recoveries.push(took);
            }
            Err(error) => {
                // Counted once, then the round's leftovers are reported and the run stops:
                // later rounds would count the same leftovers again.
                let entries = cluster.snapshot()?;
                let audit = audit(&entries, &Default::default());
                let host = host_leftovers(cluster, 0, &entries)?;
                figures.leaks += audit.problems.len() + host.len();
                figures.duplicates += audit.duplicate_addresses;
                figures.problems.push(format!("{error:#}"));
                if let Some(agent) = &cluster.agents[0] {
                    eprintln!("{}", agent.log_tail());
                }
                break;
            }
        }
    }
    (figures.median_recovery_s, figures.max_recovery_s) = median_and_slowest(recoveries);
    Ok(figures)
}

/// The median and the slowest of the rounds' recoveries, in seconds.
pub fn median_and_slowest(mut recoveries: Vec<Duration>) -> (f64, f64) {
    recoveries.sort();
    let at = |i: Option<&Duration>| i.copied().unwrap_or_default().as_secs_f64();
    (at(recoveries.get(recoveries.len() / 2)), at(recoveries.last()))
}

fn sorted_words(text: &str) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    words.sort_unstable();
    words.join(" ")
}
