//! Steps 1–9 of the scenario with the product's own commands, on etcd and on ZooKeeper:
//! the store, a manager, three agents; a network created once; two containers placed on different agents that
//! reach each other across hosts; removal and agent restart.

use std::time::Duration;

use anyhow::{Context, bail};
use overlay_tests::{
    Lab,
    cluster::{self, Scratch},
    cmd, for_each_store,
    stores::{Backend, StoreServer},
    traffic,
};

/// The container's address and node from `overlay ps`.
fn ps_line(ps: &str, name: &str) -> Option<(String, String)> {
    ps.lines().find_map(|l| {
        let mut cols = l.split_whitespace();
        let placed = cols.next()?;
        let (node, n) = placed.split_once('/')?;
        (n == name).then(|| (node.to_owned(), cols.nth(1).unwrap_or_default().to_owned()))
    })
}

/// The addresses `overlay network inspect` lists as held by endpoints, on every host.
/// Parsed, not searched for: addresses are picked at random, and 10.0.9.5 is a prefix
/// of 10.0.9.57.
fn endpoint_addresses(inspect: &str) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    let view: serde_json::Value = serde_json::from_str(inspect).context("`network inspect` is not JSON")?;
    let hosts = view["endpoints"].as_object().context("`network inspect` has no endpoints")?;
    let mut addresses = Vec::new();
    for endpoint in hosts.values().filter_map(|v| v.as_array()).flatten() {
        let address = endpoint["address"].as_str().context("an endpoint without an address")?;
        addresses.push(address.parse()?);
    }
    Ok(addresses)
}

for_each_store!(scenario_without_docker);

fn scenario_without_docker(backend: Backend) -> anyhow::Result<()> {
    let lab = Lab::scenario("e2e")?;
    let scratch = Scratch::new("e2e")?;
    let server = StoreServer::start(backend, lab.host("store01"))?;
    let store = server.url("my_cluster");
    let _manager = cluster::start_manager(&scratch, &store, lab.host("mgr01"))?;
    let mut agents = Vec::new();
    for name in ["agt01", "agt02", "agt03"] {
        agents.push(cluster::start_container_agent(&scratch, &store, &lab, name)?);
    }
    let all: Vec<&overlay_tests::Host> = ["agt01", "agt02", "agt03"].iter().map(|n| lab.host(n)).collect();
    cluster::wait_for_list(lab.host("mgr01"), &store, &all, Duration::from_secs(20))?;

    let result = (|| -> anyhow::Result<()> {
        cluster::overlay_ok(
            &lab,
            "mgr01",
            &store,
            &["network", "create", "--driver", "overlay", "--subnet", "10.0.9.0/24", "my_network"],
        )?;
        for host in ["mgr01", "agt01", "agt03"] {
            let ls = cluster::overlay_ok(&lab, host, &store, &["network", "ls"])?;
            assert_eq!(ls.lines().filter(|l| l.contains("my_network")).count(), 1, "{host}: {ls}");
        }
        cluster::overlay_ok(
            &lab,
            "mgr01",
            &store,
            &["run", "--name", "busybox01", "--net", "my_network", "--", "sleep", "300"],
        )?;
        cluster::overlay_ok(
            &lab,
            "mgr01",
            &store,
            &["run", "--name", "busybox02", "--net", "my_network", "--", "sleep", "300"],
        )?;
        let ps = cluster::overlay_ok(&lab, "agt03", &store, &["ps"])?;
        let (node1, ip1) = ps_line(&ps, "busybox01").context(ps.clone())?;
        let (node2, _) = ps_line(&ps, "busybox02").context(ps.clone())?;
        assert_ne!(node1, node2, "spread placed both containers on {node1}: {ps}");

        let ns2 = format!("{}-{node2}-busybox02", lab.prefix);
        let ip1: std::net::Ipv4Addr = ip1.parse().with_context(|| ps.clone())?;
        traffic::ping_ok(&ns2, ip1, 3)?;

        // Step 9: inside busybox02, `ping busybox01` resolves through the embedded DNS.
        let ping = cluster::overlay_ok(
            &lab,
            &node2,
            &store,
            &["exec", "busybox02", "--", "ping", "-c", "3", "-i", "0.2", "busybox01"],
        )?;
        assert!(ping.contains(&format!("({ip1})")) && ping.contains("3 received"), "{ping}");
        let getent = cluster::overlay_ok(
            &lab,
            &node2,
            &store,
            &["exec", "busybox02", "--", "getent", "hosts", "busybox01.my_network"],
        )?;
        assert!(getent.starts_with(&ip1.to_string()), "{getent}");
        // The same through busybox's own resolver code (what the scenario's busybox runs).
        let nslookup = cluster::overlay_ok(
            &lab,
            &node2,
            &store,
            &["exec", "busybox02", "--", "busybox", "nslookup", "busybox01"],
        )?;
        assert!(nslookup.split_whitespace().any(|word| word == ip1.to_string()), "{nslookup}");
        let ping = cluster::overlay_ok(
            &lab,
            &node2,
            &store,
            &["exec", "busybox02", "--", "busybox", "ping", "-c", "2", "busybox01"],
        )?;
        assert!(ping.contains("2 packets received"), "{ping}");

        // rm: the container's address stops answering at once and is released.
        cluster::overlay_ok(&lab, "agt02", &store, &["rm", "busybox01"])?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while cmd::run(&["ip", "netns", "list"])?.contains(&format!("{}-{node1}-busybox01", lab.prefix)) {
            if std::time::Instant::now() > deadline {
                bail!("busybox01's namespace is still there");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let lost = traffic::ping(&ns2, ip1, 2, "0.2")?;
        assert_eq!(lost.received, 0);
        let inspect = cluster::overlay_ok(&lab, "mgr01", &store, &["network", "inspect", "my_network"])?;
        let held = endpoint_addresses(&inspect)?;
        assert!(!held.contains(&ip1), "address still allocated: {inspect}");
        assert_eq!(held.len(), 1, "busybox02's address only: {inspect}");
        Ok(())
    })();
    let daemons: Vec<&cluster::Daemon> = agents.iter().collect();
    cluster::report(result, &daemons, "")
}
