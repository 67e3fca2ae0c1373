//! Scenario 6 of issue 16: a second `overlay agent` on a host, started by mistake with
//! the same command or configured with another identity on the same pin directory, is
//! refused with a message that names the running agent, and the first agent's datapath
//! forwards on untouched.

use std::time::Duration;

use anyhow::ensure;
use overlay_tests::{
    cluster::{self, Daemon},
    cmd,
    faults::fixture::Cluster,
    traffic,
};

#[test]
fn a_second_agent_on_the_same_pins_is_refused() -> anyhow::Result<()> {
    let mut cluster = Cluster::start("pinlk", 1, 2, 6)?;
    let result = body(&mut cluster);
    cluster.report(result)
}

fn body(cluster: &mut Cluster) -> anyhow::Result<()> {
    let (_, ip1) = cluster.run(0, "c1")?;
    let (ns2, _) = cluster.run(1, "c2")?;
    traffic::wait_reachable(&ns2, ip1, Duration::from_secs(10))?;
    let host = cluster.host(0).clone();
    let first_pid = cluster.agents[0].as_ref().and_then(Daemon::pid).expect("agt01 runs");
    let link_before = underlay_link(&host)?;
    let flow = traffic::Flow::start(&ns2, ip1, 300, "0.01")?;

    // The same command again, and another identity (state dir, name) on the same pins.
    let same = cluster::container_agent_args(&cluster.scratch, &cluster.store, &cluster.lab, &host)?;
    let other_state = cluster.scratch.path("agt01-second-state");
    let mut other = same.clone();
    let at = other.iter().position(|a| a == "--state-dir").expect("--state-dir") + 1;
    other[at] = other_state.to_string_lossy().into_owned();
    let at = other.iter().position(|a| a == "--name").expect("--name") + 1;
    other[at] = "agt01-second".to_owned();
    for (what, args) in [("the same command", same), ("another identity", other)] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = cluster.scratch.path("second.log");
        let _ = std::fs::remove_file(&log);
        let mut second = Daemon::spawn_entered(&host, "second", &args, &log)?;
        let clean = second.wait_exit(Duration::from_secs(20))?;
        let text = second.log_text();
        eprintln!("{what}: {text}");
        ensure!(!clean, "{what}: the second agent exited 0");
        ensure!(
            text.contains("is in use by another agent") && text.contains(&format!("pid {first_pid}")),
            "{what}: the refusal does not name the running agent: {text}"
        );
    }
    let flow = flow.finish()?;
    ensure!(flow.received == flow.transmitted, "the first agent's datapath dropped packets: {flow:?}");
    ensure!(cluster.dead_agents().is_empty(), "the first agent exited");
    // The same pinned link, attaching the same program: nothing was replaced.
    ensure!(underlay_link(&host)? == link_before, "the underlay link changed");
    // Only the first agent's node is in the cluster, and it still starts containers.
    cluster::wait_for_list(
        cluster.lab.host("etcd1"),
        &cluster.store,
        &[cluster.host(0), cluster.host(1)],
        Duration::from_secs(5),
    )?;
    let (_, ip3) = cluster.run(0, "c3")?;
    traffic::wait_reachable(&ns2, ip3, Duration::from_secs(10))?;
    Ok(())
}

/// `bpftool link show pinned PIN_DIR/links/underlay`: the link's and its program's IDs.
fn underlay_link(host: &overlay_tests::Host) -> anyhow::Result<String> {
    let pin = host.pin_dir.join("links/underlay");
    let link = cmd::run(&["bpftool", "link", "show", "pinned", pin.to_str().unwrap_or_default()])?;
    ensure!(link.contains("prog "), "no program on the underlay link: {link}");
    Ok(link)
}
