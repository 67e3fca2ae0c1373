//! Two clusters under different prefixes of one etcd never see each other, and values
//! written by hand that the cluster cannot read are skipped, never fatal.

use std::time::Duration;

use anyhow::ensure;
use overlay_tests::{
    Lab,
    cluster::{Daemon, Scratch, info, put_raw, report, start_agent, start_manager, wait_for, wait_for_list},
    etcd::Etcd,
};

#[test]
fn clusters_under_different_prefixes_stay_apart_and_survive_malformed_values() -> anyhow::Result<()> {
    let lab = Lab::scenario("cprefix")?;
    let scratch = Scratch::new("prefix")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let (alpha, beta) = (etcd.url("alpha"), etcd.url("team/beta"));
    let mut daemons = vec![
        start_manager(&scratch, &alpha, lab.host("mgr01"))?,
        start_agent(&scratch, &alpha, lab.host("agt01"), &[])?,
        start_agent(&scratch, &alpha, lab.host("agt02"), &[])?,
        start_agent(&scratch, &beta, lab.host("agt03"), &[])?,
    ];
    let result = body(&lab, &alpha, &beta, &mut daemons);
    report(result, &daemons.iter().collect::<Vec<_>>(), &etcd.logs())
}

fn body(lab: &Lab, alpha: &str, beta: &str, daemons: &mut [Daemon]) -> anyhow::Result<()> {
    let [mgr01, agt01, agt02, agt03] = ["mgr01", "agt01", "agt02", "agt03"].map(|n| lab.host(n));
    wait_for_list(agt03, alpha, &[agt01, agt02], Duration::from_secs(20))?;
    wait_for_list(agt01, beta, &[agt03], Duration::from_secs(10))?;
    let beta_view = info(mgr01, beta)?;
    ensure!(beta_view["node_count"] == 1, "beta sees other nodes: {beta_view}");
    ensure!(beta_view["manager"].is_null(), "beta sees alpha's manager: {beta_view}");
    // No manager judges beta's node; its fresh lease makes it Healthy all the same.
    ensure!(beta_view["nodes"][0]["checked_by"].is_null(), "beta's node judged by alpha's manager: {beta_view}");
    ensure!(beta_view["nodes"][0]["status"] == "Healthy", "beta's node with a fresh lease: {beta_view}");
    // A prefix that merely starts like another one is another cluster.
    wait_for_list(agt01, &alpha.replace("/alpha", "/alph"), &[], Duration::from_secs(1))?;

    // Values written by hand that are not records: logged and skipped by everyone.
    put_raw(mgr01, alpha, "v1/nodes/0123456789abcdef0123456789abcdef", b"{not json")?;
    put_raw(mgr01, alpha, "v1/nodes/garbage", b"\xff\xfe")?;
    put_raw(mgr01, alpha, "v1/nodes/sub/dir", br#"{"id": 5}"#)?;
    let (view, _) = wait_for("alpha's view with the malformed keys skipped", Duration::from_secs(5), || {
        let view = info(agt01, alpha)?;
        let skipped = view["skipped"].as_array().map_or(0, Vec::len);
        Ok(if skipped == 3 { Ok(view) } else { Err(view.to_string()) })
    })?;
    ensure!(view["node_count"] == 2, "{view}");
    wait_for_list(agt01, alpha, &[agt01, agt02], Duration::from_secs(1))?;
    // A malformed verdict: alpha's manager removes verdicts on nodes that are not
    // members (this ID's record is not readable), so it is gone within a check or two.
    // Beta has no manager, so there the same value stays, and readers skip it.
    let verdict = "v1/health/0123456789abcdef0123456789abcdef";
    put_raw(mgr01, alpha, verdict, b"[]")?;
    put_raw(mgr01, beta, verdict, b"[]")?;
    wait_for("alpha's manager to remove the verdict on a non-member", Duration::from_secs(5), || {
        let view = info(agt01, alpha)?;
        let skipped = view["skipped"].as_array().map_or(0, Vec::len);
        let healthy = view["nodes"].as_array().is_some_and(|n| n.iter().all(|n| n["status"] == "Healthy"));
        Ok(if skipped == 3 && healthy && view["node_count"] == 2 { Ok(()) } else { Err(view.to_string()) })
    })?;
    let beta_view = info(mgr01, beta)?;
    ensure!(beta_view["skipped"] == serde_json::json!([verdict]), "{beta_view}");
    ensure!(beta_view["nodes"][0]["status"] == "Healthy", "{beta_view}");

    // A leader key written by hand, without a lease, must not block the election.
    put_raw(mgr01, beta, "v1/manager/leader", b"oops")?;
    let beta_view = info(mgr01, beta)?;
    ensure!(beta_view["skipped"].as_array().map_or(0, Vec::len) == 2, "{beta_view}");

    // Nobody crashed, and the manager still follows the cluster: a node that dies is
    // noticed and its verdict removed.
    std::thread::sleep(Duration::from_secs(1));
    for daemon in daemons.iter_mut() {
        ensure!(daemon.running(), "{} exited after reading malformed values", daemon.name);
    }
    ensure!(daemons[0].log_text().contains("skipping malformed node record"), "{}", daemons[0].log_text());
    daemons[2].kill()?;
    wait_for_list(agt01, alpha, &[agt01], Duration::from_secs(8))?;
    wait_for("the manager to keep judging agt01", Duration::from_secs(5), || {
        let view = info(agt01, alpha)?;
        let ok = view["node_count"] == 1 && view["nodes"][0]["status"] == "Healthy";
        Ok(if ok { Ok(()) } else { Err(view.to_string()) })
    })?;
    ensure!(daemons[0].running(), "the manager exited");
    Ok(())
}
