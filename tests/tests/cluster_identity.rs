//! Scenario step 4 and bad input: a host cloned from another (same identity file) is
//! refused with a message naming both addresses and the fix; the same node restarting at
//! the same address rejoins; invalid arguments and an unreachable store fail clearly
//! before anything is written.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use overlay_tests::{
    Lab,
    cluster::{
        Daemon, Scratch, TTL_SECS, agent_args, info, node, overlay, report, spawn_agent, start_agent, state_dir,
        wait_for_list,
    },
    etcd::Etcd,
};

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[test]
fn cloned_identity_is_refused_and_a_restart_rejoins() -> anyhow::Result<()> {
    let lab = Lab::builder("cclone")
        .host("store01", "192.168.1.140/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.1.142/24")
        .build()?;
    let scratch = Scratch::new("clone")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let store = etcd.url("my_cluster");
    let mut daemons = vec![start_agent(&scratch, &store, lab.host("agt01"), &[])?];
    let result = clone_body(&lab, &scratch, &store, &mut daemons);
    report(result, &daemons.iter().collect::<Vec<_>>(), &etcd.logs())
}

fn clone_body(lab: &Lab, scratch: &Scratch, store: &str, daemons: &mut Vec<Daemon>) -> anyhow::Result<()> {
    let (agt01, agt02) = (lab.host("agt01"), lab.host("agt02"));
    wait_for_list(agt01, store, &[agt01], Duration::from_secs(20))?;
    let original_id = node(&info(agt01, store)?, "agt01").map(|n| n["id"].clone()).context("agt01 in info")?;

    // agt02 is a clone of agt01: same identity file, another address.
    let cloned_state = state_dir(scratch, agt02);
    copy_dir(&state_dir(scratch, agt01), &cloned_state)?;
    let mut clone = start_agent(scratch, store, agt02, &[])?;
    let exited_ok = clone.wait_exit(Duration::from_secs(15))?;
    daemons.push(clone);
    let clone = &daemons[1];
    ensure!(!exited_ok, "the clone's agent exited successfully");
    let message = clone.log_text();
    for wanted in [
        "192.168.1.141",
        "192.168.1.142",
        "--reset-identity",
        &cloned_state.join("node-id").display().to_string(),
        original_id.as_str().unwrap_or_default(),
    ] {
        ensure!(message.contains(wanted), "the refusal does not mention {wanted:?}:\n{message}");
    }
    // The cluster is untouched: agt01 alone, at its own address.
    wait_for_list(agt02, store, &[agt01], Duration::from_secs(1))?;
    let view = info(agt02, store)?;
    ensure!(node(&view, "agt01").map(|n| &n["id"]) == Some(&original_id), "agt01 changed: {view}");

    // With a fresh identity the clone joins as a node of its own.
    let args = agent_args(store, agt02, &cloned_state, &["--reset-identity"]);
    daemons[1] = spawn_agent(scratch, agt02, &args)?;
    wait_for_list(agt01, store, &[agt01, agt02], Duration::from_secs(10))?;
    let view = info(agt01, store)?;
    let new_id = node(&view, "agt02").map(|n| n["id"].clone()).context("agt02 in info")?;
    ensure!(new_id != original_id, "--reset-identity kept the identity: {view}");

    // agt01 dies and restarts at once, while its old registration is still alive: the
    // same node at the same address takes its registration over without error.
    daemons[0].kill()?;
    daemons[0] = start_agent(scratch, store, agt01, &[])?;
    std::thread::sleep(Duration::from_secs(TTL_SECS + 1));
    ensure!(daemons[0].running(), "the restarted agt01 exited:\n{}", daemons[0].log_text());
    let view = info(agt01, store)?;
    ensure!(view["node_count"] == 2, "expected agt01 and agt02 once each: {view}");
    ensure!(node(&view, "agt01").map(|n| &n["id"]) == Some(&original_id), "agt01 changed identity: {view}");
    ensure!(daemons[0].log_text().contains("joined the cluster"), "{}", daemons[0].log_text());

    // A second agent on the same host with the same state directory is refused. It gets
    // pins of its own: one on the same pins meets the pin lock first (agent_pin_lock).
    let mut args = agent_args(store, agt01, &state_dir(scratch, agt01), &[]);
    let at = args.iter().position(|a| a == "--pin-dir").context("--pin-dir")? + 1;
    args[at] = format!("{}-second", agt01.pin_dir.display());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut second = Daemon::spawn(agt01, "agt01-second", &args, &scratch.path("agt01-second.log"))?;
    let exited_ok = second.wait_exit(Duration::from_secs(15))?;
    let log = second.log_text();
    ensure!(!exited_ok && log.contains("another overlay agent already runs"), "second agent: {log}");
    ensure!(daemons[0].running(), "the first agent stopped");
    wait_for_list(agt02, store, &[agt01, agt02], Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn bad_input_and_an_unreachable_store_fail_before_anything_is_written() -> anyhow::Result<()> {
    // No etcd runs on store01: its address answers with "connection refused".
    let lab = Lab::builder("cinput").host("store01", "192.168.1.140/24").host("agt01", "192.168.1.141/24").build()?;
    let scratch = Scratch::new("input")?;
    let agt01 = lab.host("agt01");
    let store = "etcd://192.168.1.140:2379/my_cluster";
    let state = scratch.path("state");
    let state_arg = state.to_str().context("utf-8")?;
    let cases: &[(&[&str], &str)] = &[
        (&["--store", store, "--advertise", "192.168.1.141:2375"], "without a port"),
        (&["--store", store, "--advertise", "agt01"], "not an IP address"),
        (&["--store", store, "--advertise", "0.0.0.0"], "unspecified"),
        // A unicast address that is not this host's own.
        (&["--store", store, "--advertise", "192.168.1.142"], "no interface of this host"),
        (&["--store", store, "--advertise", "192.168.1.141", "--label", "zone"], "KEY=VALUE"),
        (&["--store", store, "--advertise", "192.168.1.141", "--label", "kernelversion=1"], "set by the agent"),
        (&["--store", store, "--advertise", "192.168.1.141", "--name", "a b"], "invalid node name"),
        (&["--store", store, "--advertise", "192.168.1.141", "--ttl", "1s"], "at least 2s"),
        (&["--store", "consul://192.168.1.140:8500/x", "--advertise", "192.168.1.141"], "no Consul server"),
        (
            &["--store", "zk://192.168.1.140:2181/x", "--store-ca", "/x", "--advertise", "192.168.1.141"],
            "plain TCP to ZooKeeper",
        ),
        (&["--store", "zk://192.168.1.140:2181/a//b", "--advertise", "192.168.1.141"], "zk://HOST:PORT"),
        (&["--store", "http://192.168.1.140:2379", "--advertise", "192.168.1.141"], "etcd://HOST:PORT"),
        (&["--store", "etcd://192.168.1.140:2379/a//b", "--advertise", "192.168.1.141"], "etcd://HOST:PORT"),
        (&["--advertise", "192.168.1.141"], "OVERLAY_STORE"),
    ];
    for (args, wanted) in cases {
        let mut all = vec!["agent", "--state-dir", state_arg, "--store-timeout", "1s"];
        all.extend_from_slice(args);
        let out = overlay(agt01, &all)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "`overlay {}` succeeded", all.join(" "));
        ensure!(stderr.contains(wanted), "`overlay {}` does not say {wanted:?}:\n{stderr}", all.join(" "));
        ensure!(!state.exists(), "`overlay {}` wrote {}", all.join(" "), state.display());
    }
    for (command, wanted) in [("list", "etcd://HOST:PORT"), ("info", "no Consul server")] {
        let url = if command == "list" { "etcd://" } else { "consul://192.168.1.140:8500/x" };
        let out = overlay(agt01, &[command, "--store", url])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && stderr.contains(wanted), "`overlay {command}`: {stderr}");
    }

    // The store is down: the agent says it retries, then gives up after --store-timeout.
    let started = Instant::now();
    let out = overlay(
        agt01,
        &["agent", "--store", store, "--advertise", "192.168.1.141", "--state-dir", state_arg, "--store-timeout", "2s"],
    )?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the agent succeeded without a store");
    ensure!(stderr.contains("retrying"), "the agent did not say it retries:\n{stderr}");
    ensure!(stderr.contains("unreachable") && stderr.contains("--store-timeout"), "{stderr}");
    ensure!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "gave up after {took:?}");
    ensure!(!state.exists(), "the agent wrote its state without a store");
    let out = overlay(agt01, &["list", "--store", store, "--store-timeout", "1s"])?;
    ensure!(!out.status.success(), "list succeeded without a store");
    // The same for a ZooKeeper that is not there.
    let out = overlay(agt01, &["list", "--store", "zk://192.168.1.140:2181/my_cluster", "--store-timeout", "2s"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "list succeeded without a ZooKeeper");
    ensure!(stderr.contains("unreachable") && stderr.contains("check that ZooKeeper runs"), "{stderr}");

    // Without --store-timeout the agent keeps trying until stopped, and stops cleanly.
    let args = ["agent", "--store", store, "--advertise", "192.168.1.141", "--state-dir", state_arg];
    let mut agent = Daemon::spawn(agt01, "agt01", &args, &scratch.path("agt01.log"))?;
    std::thread::sleep(Duration::from_secs(3));
    ensure!(agent.running(), "the agent gave up without --store-timeout:\n{}", agent.log_text());
    ensure!(agent.terminate()?, "the waiting agent did not exit cleanly on SIGTERM");
    ensure!(agent.log_text().contains("retrying"), "{}", agent.log_text());
    Ok(())
}
