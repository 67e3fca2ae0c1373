//! Two managers: one leads; when it dies the other takes over and keeps judging node
//! health (Healthy, Unhealthy when heartbeats are late, gone when the lease expires).

use std::time::Duration;

use anyhow::ensure;
use overlay_tests::{
    Lab,
    cluster::{
        Daemon, Scratch, TTL_SECS, agent_args_timed, info, node, report, spawn_agent, start_manager, state_dir,
        wait_for, wait_for_list,
    },
    etcd::Etcd,
};

#[test]
fn the_other_manager_takes_over_and_tracks_health() -> anyhow::Result<()> {
    let lab = Lab::builder("cfail")
        .host("store01", "192.168.1.140/24")
        .host("mgr01", "192.168.1.121/24")
        .host("mgr02", "192.168.1.122/24")
        .host("agt01", "192.168.1.141/24")
        .build()?;
    let scratch = Scratch::new("failover")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let store = etcd.url("my_cluster");
    let agt01 = lab.host("agt01");
    // A TTL long enough to see the node Unhealthy (late after 3 s) before it is gone.
    let args = agent_args_timed(&store, agt01, &state_dir(&scratch, agt01), "1s", "8s", &[]);
    let mut daemons = vec![start_manager(&scratch, &store, lab.host("mgr01"))?, spawn_agent(&scratch, agt01, &args)?];
    let result = body(&lab, &scratch, &store, &mut daemons);
    report(result, &daemons.iter().collect::<Vec<_>>(), &etcd.logs())
}

fn leader_is(lab: &Lab, store: &str, name: &str, limit: Duration) -> anyhow::Result<Duration> {
    wait_for(&format!("{name} to lead"), limit, || {
        let view = info(lab.host("agt01"), store)?;
        Ok(if view["manager"]["name"] == name { Ok(()) } else { Err(view["manager"].to_string()) })
    })
    .map(|(_, took)| took)
}

fn status_is(lab: &Lab, store: &str, status: &str, by: &str, limit: Duration) -> anyhow::Result<Duration> {
    wait_for(&format!("agt01 to be {status} according to {by}"), limit, || {
        let view = info(lab.host("mgr01"), store)?;
        let ok = node(&view, "agt01").is_some_and(|n| n["status"] == status && n["checked_by"] == by);
        Ok(if ok { Ok(()) } else { Err(view.to_string()) })
    })
    .map(|(_, took)| took)
}

fn body(lab: &Lab, scratch: &Scratch, store: &str, daemons: &mut Vec<Daemon>) -> anyhow::Result<()> {
    let ttl = Duration::from_secs(TTL_SECS);
    let agt01 = lab.host("agt01");
    leader_is(lab, store, "mgr01", Duration::from_secs(20))?;
    daemons.push(start_manager(scratch, store, lab.host("mgr02"))?);
    status_is(lab, store, "Healthy", "mgr01", Duration::from_secs(10))?;
    // The second manager follows; it does not take the lead while mgr01 lives.
    std::thread::sleep(Duration::from_secs(2));
    leader_is(lab, store, "mgr01", Duration::ZERO)?;

    // The leader dies: mgr02 takes over once mgr01's lease expires.
    daemons[0].kill()?;
    let took = leader_is(lab, store, "mgr02", ttl + Duration::from_secs(5))?;
    ensure!(took <= ttl + Duration::from_secs(3), "failover took {took:?} with a {ttl:?} TTL");
    status_is(lab, store, "Healthy", "mgr02", Duration::from_secs(5))?;

    // agt01 hangs: Unhealthy while its lease lives, Healthy again when it resumes.
    daemons[1].pause()?;
    status_is(lab, store, "Unhealthy", "mgr02", Duration::from_secs(7))?;
    daemons[1].resume()?;
    status_is(lab, store, "Healthy", "mgr02", Duration::from_secs(5))?;

    // Hung past its TTL: gone; when it resumes it registers again by itself.
    daemons[1].pause()?;
    wait_for_list(agt01, store, &[], Duration::from_secs(12))?;
    daemons[1].resume()?;
    wait_for_list(agt01, store, &[agt01], Duration::from_secs(10))?;
    status_is(lab, store, "Healthy", "mgr02", Duration::from_secs(5))?;

    // mgr01 comes back as a follower; mgr02 stops cleanly and hands over at once.
    daemons[0] = start_manager(scratch, store, lab.host("mgr01"))?;
    std::thread::sleep(Duration::from_secs(1));
    leader_is(lab, store, "mgr02", Duration::ZERO)?;
    ensure!(daemons[2].terminate()?, "mgr02 did not exit cleanly on SIGTERM");
    let took = leader_is(lab, store, "mgr01", Duration::from_secs(5))?;
    ensure!(took < ttl, "handover after a clean stop took {took:?}");
    status_is(lab, store, "Healthy", "mgr01", Duration::from_secs(5))?;
    Ok(())
}
