//! The store (etcd, ZooKeeper) goes away under running daemons: restarted with its data,
//! and restarted empty. Agents and the manager come back without operator action.

use std::time::Duration;

use anyhow::ensure;
use overlay_tests::{
    Lab,
    cluster::{Daemon, Scratch, TTL_SECS, info, report, start_agent, start_manager, wait_for, wait_for_list},
    for_each_store,
    stores::{Backend, StoreServer},
};

for_each_store!(agents_and_manager_come_back_after_the_store_restarts);

fn agents_and_manager_come_back_after_the_store_restarts(backend: Backend) -> anyhow::Result<()> {
    let lab = Lab::builder("cstore")
        .host("store01", "192.168.1.140/24")
        .host("mgr01", "192.168.1.121/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.1.142/24")
        .build()?;
    let scratch = Scratch::new("store")?;
    let mut server = StoreServer::start(backend, lab.host("store01"))?;
    let store = server.url("my_cluster");
    let mut daemons = vec![
        start_manager(&scratch, &store, lab.host("mgr01"))?,
        start_agent(&scratch, &store, lab.host("agt01"), &[])?,
        start_agent(&scratch, &store, lab.host("agt02"), &[])?,
    ];
    let result = body(&lab, &mut server, &store, &mut daemons);
    let logs = server.logs();
    report(result, &daemons.iter().collect::<Vec<_>>(), &logs)
}

fn all_healthy(lab: &Lab, store: &str, limit: Duration) -> anyhow::Result<()> {
    let mgr01 = lab.host("mgr01");
    wait_for("mgr01 to lead and judge both agents Healthy", limit, || {
        let view = info(mgr01, store)?;
        let healthy = view["nodes"].as_array().map_or(0, |n| n.iter().filter(|n| n["status"] == "Healthy").count());
        let ok = view["manager"]["name"] == "mgr01" && view["node_count"] == 2 && healthy == 2;
        Ok(if ok { Ok(()) } else { Err(view.to_string()) })
    })
    .map(|_| ())
}

fn body(lab: &Lab, server: &mut StoreServer, store: &str, daemons: &mut [Daemon]) -> anyhow::Result<()> {
    let [agt01, agt02] = ["agt01", "agt02"].map(|n| lab.host(n));
    wait_for_list(agt01, store, &[agt01, agt02], Duration::from_secs(20))?;
    all_healthy(lab, store, Duration::from_secs(10))?;

    // Down for longer than the TTL, then back with its data.
    server.stop()?;
    std::thread::sleep(Duration::from_secs(TTL_SECS + 2));
    server.start_again()?;
    wait_for_list(agt02, store, &[agt01, agt02], Duration::from_secs(20))?;
    all_healthy(lab, store, Duration::from_secs(20))?;

    // Back empty (data lost): everyone registers again by itself.
    server.stop()?;
    server.wipe()?;
    std::thread::sleep(Duration::from_secs(1));
    server.start_again()?;
    wait_for_list(agt02, store, &[agt01, agt02], Duration::from_secs(20))?;
    all_healthy(lab, store, Duration::from_secs(20))?;
    for daemon in daemons.iter_mut() {
        ensure!(daemon.running(), "{} exited while the store was away", daemon.name);
    }
    for agent in &daemons[1..] {
        ensure!(agent.log_text().contains("registered again"), "{} did not re-register", agent.name);
    }
    Ok(())
}
