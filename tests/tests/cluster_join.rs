//! Scenario steps 1–6: etcd on store01, a manager on mgr01, three agents join; `list`
//! and `info` show them; a killed agent disappears within its TTL and comes back when
//! restarted; a cleanly stopped agent disappears at once.

use std::time::Duration;

use anyhow::{Context, ensure};
use overlay_tests::{
    Lab,
    cluster::{Daemon, Scratch, TTL_SECS, info, node, report, start_agent, start_manager, wait_for_list},
    etcd::Etcd,
};

#[test]
fn three_agents_join_leave_and_come_back() -> anyhow::Result<()> {
    let lab = Lab::scenario("cjoin")?;
    let scratch = Scratch::new("join")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let store = etcd.url("my_cluster");
    let manager = start_manager(&scratch, &store, lab.host("mgr01"))?;
    let mut agents: Vec<Daemon> = Vec::new();
    for (name, zone) in [("agt01", "east"), ("agt02", "west"), ("agt03", "west")] {
        agents.push(start_agent(&scratch, &store, lab.host(name), &["--label", &format!("zone={zone}")])?);
    }
    let result = body(&lab, &scratch, &store, &mut agents);
    let mut daemons: Vec<&Daemon> = agents.iter().collect();
    daemons.push(&manager);
    report(result, &daemons, &etcd.logs())
}

fn body(lab: &Lab, scratch: &Scratch, store: &str, agents: &mut [Daemon]) -> anyhow::Result<()> {
    let [agt01, agt02, agt03] = ["agt01", "agt02", "agt03"].map(|n| lab.host(n));
    let mgr01 = lab.host("mgr01");
    let ttl = Duration::from_secs(TTL_SECS);

    // Step 5: listing from any host prints the three advertised addresses.
    wait_for_list(agt02, store, &[agt01, agt02, agt03], Duration::from_secs(20))?;
    wait_for_list(mgr01, store, &[agt01, agt02, agt03], Duration::from_secs(5))?;

    // Step 6: the manager's view: every node Healthy, with its facts and labels, as
    // soon as the nodes are listed (a fresh lease is Healthy before the manager's
    // first verdict on it).
    let view = info(mgr01, store)?;
    let healthy = view["nodes"].as_array().map_or(0, |n| n.iter().filter(|n| n["status"] == "Healthy").count());
    ensure!(healthy == 3, "not every node that just joined is Healthy: {view}");
    ensure!(view["node_count"] == 3, "node_count in {view}");
    ensure!(view["manager"]["name"] == "mgr01", "manager in {view}");
    for (host, zone) in [(agt01, "east"), (agt02, "west"), (agt03, "west")] {
        let n = node(&view, &host.name).with_context(|| format!("{} missing from {view}", host.name))?;
        ensure!(n["address"] == host.ip.to_string(), "address of {n}");
        ensure!(n["containers"] == 0, "containers of {n}");
        ensure!(n["cpus"].as_u64().unwrap_or(0) >= 1, "cpus of {n}");
        ensure!(n["memory_bytes"].as_u64().unwrap_or(0) > 1 << 20, "memory of {n}");
        ensure!(n["labels"]["zone"] == zone, "labels of {n}");
        ensure!(n["labels"]["kernelversion"].as_str().is_some_and(|k| !k.is_empty()), "kernelversion of {n}");
        ensure!(n["labels"]["operatingsystem"].as_str().is_some_and(|k| !k.is_empty()), "operatingsystem of {n}");
        ensure!(n["agent_version"].as_str().is_some_and(|v| !v.is_empty()), "agent_version of {n}");
    }
    let agt02_id = node(&view, "agt02").map(|n| n["id"].clone()).context("agt02 id")?;

    // The text view shows the same.
    let text = overlay_tests::cluster::overlay(mgr01, &["info", "--store", store])?;
    let text = String::from_utf8_lossy(&text.stdout);
    for wanted in ["Nodes: 3", "Manager: mgr01", "agt01: 192.168.1.141", "Status: Healthy", "zone=east"] {
        ensure!(text.contains(wanted), "`overlay info` lacks {wanted:?}:\n{text}");
    }

    // Step 3: a host that dies (SIGKILL, no cleanup) disappears when its lease expires.
    agents[1].kill()?;
    let gone = wait_for_list(agt01, store, &[agt01, agt03], ttl + Duration::from_secs(5))?;
    ensure!(gone <= ttl + Duration::from_secs(2), "agt02 took {gone:?} to disappear with a {ttl:?} TTL");

    // Restarted with the same state dir, it is back under the same identity.
    agents[1] = start_agent(scratch, store, agt02, &["--label", "zone=west"])?;
    wait_for_list(agt01, store, &[agt01, agt02, agt03], Duration::from_secs(10))?;
    let view = info(mgr01, store)?;
    ensure!(node(&view, "agt02").map(|n| &n["id"]) == Some(&agt02_id), "agt02 came back with another ID: {view}");

    // A clean stop revokes the lease: the node disappears at once, not after the TTL.
    ensure!(agents[2].terminate()?, "agt03 did not exit cleanly on SIGTERM");
    let gone = wait_for_list(agt01, store, &[agt01, agt02], Duration::from_secs(5))?;
    ensure!(gone < ttl, "a cleanly stopped agent took {gone:?} to disappear");
    ensure!(agents[2].log_text().contains("left the cluster"), "agt03's log does not say it left");
    Ok(())
}
