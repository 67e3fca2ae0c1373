//! The store goes away under running daemons: restarted with its data, and restarted
//! empty. Agents and the manager come back without operator action.

use std::time::Duration;

use anyhow::ensure;
use overlay_tests::{
    Lab,
    cluster::{Daemon, Scratch, TTL_SECS, info, report, start_agent, start_manager, wait_for, wait_for_list},
    etcd::Etcd,
};

#[test]
fn agents_and_manager_come_back_after_the_store_restarts() -> anyhow::Result<()> {
    let lab = Lab::builder("cstore")
        .host("store01", "192.168.1.140/24")
        .host("mgr01", "192.168.1.121/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.1.142/24")
        .build()?;
    let scratch = Scratch::new("store")?;
    let mut etcd = Etcd::start(lab.host("store01"))?;
    let store = etcd.url("my_cluster");
    let mut daemons = vec![
        start_manager(&scratch, &store, lab.host("mgr01"))?,
        start_agent(&scratch, &store, lab.host("agt01"), &[])?,
        start_agent(&scratch, &store, lab.host("agt02"), &[])?,
    ];
    let result = body(&lab, &mut etcd, &store, &mut daemons);
    let logs = etcd.logs();
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

fn body(lab: &Lab, etcd: &mut Etcd, store: &str, daemons: &mut [Daemon]) -> anyhow::Result<()> {
    let [agt01, agt02] = ["agt01", "agt02"].map(|n| lab.host(n));
    wait_for_list(agt01, store, &[agt01, agt02], Duration::from_secs(20))?;
    all_healthy(lab, store, Duration::from_secs(10))?;

    // Down for longer than the TTL, then back with its data.
    etcd.stop()?;
    std::thread::sleep(Duration::from_secs(TTL_SECS + 2));
    etcd.start_again()?;
    wait_for_list(agt02, store, &[agt01, agt02], Duration::from_secs(20))?;
    all_healthy(lab, store, Duration::from_secs(20))?;

    // Back empty (data lost): everyone registers again by itself.
    etcd.stop()?;
    etcd.wipe()?;
    std::thread::sleep(Duration::from_secs(1));
    etcd.start_again()?;
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
