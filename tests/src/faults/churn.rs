//! Scenario 4: churn with address reuse. Round after round a container is removed and
//! made again with the same name and address, on another host each time, and once
//! the agent of a host is killed and started again. After each round every pair of
//! containers answers within 2 s and every host's remote endpoint table is exactly what
//! the store says: no entry left pointing at the host a container left (the stale
//! forwarding entries Docker's overlay lost peers to).

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::Context;
use overlay::{endpoint::EndpointRecord, store::Entry};

use super::{audit, crash::node_id, fixture::Cluster, fixture::NETWORK};
use crate::{cluster, traffic};

#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub rounds: usize,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Figures {
    pub rounds: usize,
    /// From `overlay run` of the re-made container until every pair answers and the
    /// tables match: median and slowest.
    pub median_converge_s: f64,
    pub max_converge_s: f64,
    /// Rounds whose pairs or tables were not right within the bound (2 s).
    pub rounds_off: usize,
    /// Stale or missing table entries and duplicate addresses seen at a round's end.
    pub stale_entries: usize,
    pub duplicates: usize,
    pub problems: Vec<String>,
}

const CONTAINERS: usize = 3;

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 7, u8::try_from(10 + i).unwrap_or(10))
}

/// What the remote endpoint table of agent `index` should hold, from the store: every
/// endpoint of another node on a network this host has a container on, at that node's
/// address.
fn desired_remotes(
    cluster: &Cluster,
    index: usize,
    entries: &[Entry],
) -> anyhow::Result<BTreeSet<(u32, Ipv4Addr, Ipv4Addr)>> {
    let me = node_id(entries, &cluster.agent_names[index]).context("node not registered")?;
    let endpoints: Vec<EndpointRecord> = entries
        .iter()
        .filter(|e| e.key.starts_with(overlay::endpoint::ENDPOINTS))
        .filter_map(|e| EndpointRecord::parse(&e.key, &e.value))
        .collect();
    let vtep_of = |node: &str| {
        entries.iter().filter(|e| e.key == format!("v1/nodes/{node}")).find_map(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.value).ok()?["address"].as_str()?.parse::<Ipv4Addr>().ok()
        })
    };
    let vni_of = |network_id: &str| {
        entries.iter().find(|e| e.key == format!("v1/networks/ids/{network_id}")).and_then(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.value).ok()?["vni"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
        })
    };
    let local_networks: BTreeSet<&str> =
        endpoints.iter().filter(|e| e.node_id == me).map(|e| e.network_id.as_str()).collect();
    Ok(endpoints
        .iter()
        .filter(|e| e.node_id != me && local_networks.contains(e.network_id.as_str()))
        .filter_map(|e| Some((vni_of(&e.network_id)?, e.ip, vtep_of(&e.node_id)?)))
        .collect())
}

/// Every host's table against the store; the differences, in words.
fn table_differences(cluster: &Cluster, entries: &[Entry]) -> anyhow::Result<Vec<String>> {
    let mut differences = Vec::new();
    for index in 0..cluster.agent_names.len() {
        let want = desired_remotes(cluster, index, entries)?;
        let have: BTreeSet<(u32, Ipv4Addr, Ipv4Addr)> =
            overlay::datapath::pinned_remotes(&cluster.host(index).pin_dir)?.into_iter().collect();
        for stale in have.difference(&want) {
            differences.push(format!("{}: stale {stale:?}", cluster.agent_names[index]));
        }
        for missing in want.difference(&have) {
            differences.push(format!("{}: missing {missing:?}", cluster.agent_names[index]));
        }
    }
    Ok(differences)
}

pub fn run(size: Size) -> anyhow::Result<Figures> {
    let mut cluster = Cluster::start("churn", 1, 3, 6)?;
    let result = body(&mut cluster, size);
    cluster.report(result)
}

fn body(cluster: &mut Cluster, size: Size) -> anyhow::Result<Figures> {
    let hosts = cluster.agent_names.len();
    // Container i runs on host `place[i]`, at address(i), always.
    let mut place: Vec<usize> = (0..CONTAINERS).map(|i| i % hosts).collect();
    let run = |cluster: &Cluster, i: usize, host: usize| -> anyhow::Result<()> {
        let ip = address(i).to_string();
        cluster::run_container(
            &cluster.lab,
            &cluster.store,
            &cluster.agent_names[host],
            &format!("w{i}"),
            NETWORK,
            &["--ip", &ip],
        )
        .map(|_| ())
    };
    for (i, host) in place.iter().enumerate() {
        run(cluster, i, *host)?;
    }
    let mut figures = Figures { rounds: size.rounds, ..Default::default() };
    let mut times = Vec::new();
    for round in 0..size.rounds {
        let i = round % CONTAINERS;
        let name = format!("w{i}");
        if round == size.rounds / 2 {
            // A host restart in the middle: its agent is killed and started again.
            cluster.kill_agent(0)?;
            cluster.start_agent(0)?;
        }
        cluster.overlay(place[i], &["rm", &name])?;
        // `overlay rm` does not wait for the agent: the address is free once released.
        let released = format!("/addresses/{}", address(i));
        cluster::wait_for(&format!("{} to be released", address(i)), Duration::from_secs(10), || {
            let listing = cluster::list_raw(cluster.host(0), &cluster.store, "v1/ipam/")?;
            Ok(if listing.entries.iter().any(|e| e.key.ends_with(&released)) {
                Err("allocated".into())
            } else {
                Ok(())
            })
        })?;
        // The next host round the ring: the address moves to another VTEP.
        place[i] = (place[i] + 1) % hosts;
        let started = Instant::now();
        run(cluster, i, place[i])
            .with_context(|| format!("round {round}: {name} on {}", cluster.agent_names[place[i]]))?;
        let check = cluster::wait_for(&format!("round {round} to converge"), Duration::from_secs(2), || {
            for (a, host_a) in place.iter().enumerate() {
                for b in (0..CONTAINERS).filter(|b| *b != a) {
                    let ns = cluster.container_ns(*host_a, &format!("w{a}"));
                    if traffic::ping(&ns, address(b), 1, "0.2")?.received == 0 {
                        return Ok(Err(format!("w{a} does not reach w{b}")));
                    }
                }
            }
            let differences = table_differences(cluster, &cluster.snapshot()?)?;
            Ok(if differences.is_empty() { Ok(()) } else { Err(differences.join("; ")) })
        });
        match check {
            Ok(_) => times.push(started.elapsed()),
            Err(error) => {
                figures.rounds_off += 1;
                figures.problems.push(format!("{error:#}"));
            }
        }
        let entries = cluster.snapshot()?;
        let audit = audit(&entries, &Default::default());
        figures.duplicates += audit.duplicate_addresses;
        if !audit.is_clean() {
            figures.problems.push(format!("round {round}: {:?}", audit.problems));
        }
        figures.stale_entries += table_differences(cluster, &entries)?.len();
        if figures.problems.len() > 5 {
            break;
        }
    }
    times.sort();
    figures.median_converge_s = times.get(times.len() / 2).copied().unwrap_or_default().as_secs_f64();
    figures.max_converge_s = times.last().copied().unwrap_or_default().as_secs_f64();
    Ok(figures)
}
