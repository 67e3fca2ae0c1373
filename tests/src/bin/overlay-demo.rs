//! `cargo xtask demo`: the reference scenario (../shared/SCENARIO.md, steps 1–9) on
//! simulated hosts, with the product's own commands, printed as a user would see them.
//! Everything it starts is stopped and removed when it ends, on success or failure.

use std::time::Duration;

use anyhow::bail;
use overlay_tests::{
    Lab,
    cluster::{self, Daemon, Scratch},
    etcd::Etcd,
};

fn step(n: &str, title: &str) {
    println!("\n=== {n}. {title}");
}

/// Runs `overlay ARGS` on `host` (the store option before any `--`), prints the command
/// line and its output, and fails if it fails.
fn overlay(lab: &Lab, host: &str, store: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = args.to_vec();
    let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
    all.splice(at..at, ["--store", store]);
    println!("{host}$ overlay {}", args.join(" "));
    let out = cluster::overlay(lab.host(host), &all)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{stdout}");
    if !out.status.success() {
        bail!("overlay {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}

fn main() -> anyhow::Result<()> {
    println!("Simulated hosts: network namespaces joined by an underlay bridge in its own namespace.");
    let lab = Lab::scenario("demo")?;
    for host in &lab.hosts {
        println!("  {:<8} {:<15} (netns {})", host.name, host.ip, host.ns);
    }
    let scratch = Scratch::new("demo")?;
    let mut daemons: Vec<Daemon> = Vec::new();
    let result = walk(&lab, &scratch, &mut daemons);
    if result.is_err() {
        for d in &daemons {
            eprintln!("--- log of {} ---\n{}", d.name, d.log_tail());
        }
    }
    println!("\n=== Tearing down the simulated hosts");
    result
}

fn walk(lab: &Lab, scratch: &Scratch, daemons: &mut Vec<Daemon>) -> anyhow::Result<()> {
    step("1", "Store: etcd on store01, listening on 192.168.1.140:2379");
    let etcd = Etcd::start(lab.host("store01"))?;
    let store = etcd.url("my_cluster");
    println!("store URL: {store}");

    step("2", "Manager on mgr01");
    daemons.push(cluster::start_manager(scratch, &store, lab.host("mgr01"))?);
    println!("mgr01$ overlay manage --store {store}");

    step("3", "Agents join: the host daemon on agt01, agt02, agt03");
    for name in ["agt01", "agt02", "agt03"] {
        let ip = lab.host(name).ip;
        println!("{name}$ overlay agent --store {store} --advertise {ip}");
        daemons.push(cluster::start_container_agent(scratch, &store, lab, name)?);
    }
    let agents: Vec<&overlay_tests::Host> = ["agt01", "agt02", "agt03"].iter().map(|n| lab.host(n)).collect();
    cluster::wait_for_list(lab.host("mgr01"), &store, &agents, Duration::from_secs(20))?;

    step("4", "Duplicate identity: agt03 cloned from agt01 (same identity file) is refused");
    let clone_state = scratch.path("agt03-clone-state");
    std::fs::create_dir_all(&clone_state)?;
    std::fs::copy(cluster::state_dir(scratch, lab.host("agt01")).join("node-id"), clone_state.join("node-id"))?;
    let ip = lab.host("agt03").ip.to_string();
    let clone = cluster::overlay(
        lab.host("agt03"),
        &[
            "agent",
            "--store",
            &store,
            "--advertise",
            &ip,
            "--state-dir",
            &clone_state.to_string_lossy(),
            "--pin-dir",
            "/run/overlay/bpffs/demo-clone",
            "--metrics-addr",
            "off",
        ],
    )?;
    println!("agt03$ overlay agent --state-dir <copy of agt01's> ...");
    let message = String::from_utf8_lossy(&clone.stderr);
    print!("{}", message.lines().filter(|l| !l.contains(" INFO ")).collect::<Vec<_>>().join("\n"));
    println!();
    if clone.status.success() {
        bail!("the cloned agent was not refused");
    }

    step("5", "List nodes (from any host)");
    overlay(lab, "agt02", &store, &["list"])?;

    step("6", "Cluster info (manager's view)");
    overlay(lab, "mgr01", &store, &["info"])?;

    step("7", "Create the overlay network once, from any host");
    overlay(
        lab,
        "mgr01",
        &store,
        &["network", "create", "--driver", "overlay", "--subnet", "10.0.9.0/24", "my_network"],
    )?;
    for host in ["agt01", "agt03"] {
        overlay(lab, host, &store, &["network", "ls"])?;
    }

    step("8", "Run two containers from the manager: spread over the agents");
    overlay(lab, "mgr01", &store, &["run", "--name", "busybox01", "--net", "my_network", "--", "sleep", "3600"])?;
    overlay(lab, "mgr01", &store, &["run", "--name", "busybox02", "--net", "my_network", "--", "sleep", "3600"])?;
    let ps = overlay(lab, "mgr01", &store, &["ps"])?;
    let node_of = |name: &str| {
        ps.lines().find_map(|l| l.split_whitespace().next()?.strip_suffix(&format!("/{name}")).map(str::to_owned))
    };
    let (Some(node1), Some(node2)) = (node_of("busybox01"), node_of("busybox02")) else {
        bail!("ps shows no placement")
    };
    if node1 == node2 {
        bail!("both containers were placed on {node1}");
    }

    step("9", "Inside busybox02, ping busybox01 by name, across hosts");
    overlay(lab, &node2, &store, &["exec", "busybox02", "--", "ping", "-c", "3", "-i", "0.2", "busybox01"])?;

    println!("\nDatapath counters on {node2}:");
    let pin_dir = lab.host(&node2).pin_dir.to_string_lossy().into_owned();
    let bin = overlay_tests::bin::overlay_bin()?;
    print!(
        "{}",
        overlay_tests::cmd::run_in(
            &lab.host(&node2).ns,
            &[bin.to_str().unwrap_or("overlay"), "stats", "--pin-dir", &pin_dir]
        )?
    );
    drop(etcd);
    Ok(())
}
