//! The plugin's state follows the dockerd it serves. A dockerd whose data root was
//! wiped no longer has the networks the plugin's state file names; the plugin forgets
//! them, on start and while it runs, so that creating the network again (or the mirror
//! doing it) is not refused over a subnet "used by" a network dockerd does not know.
//! The cluster network stays, and the network created again binds to it. Endpoints
//! dockerd never had or no longer has (its calls cut short by a kill of the agent) are
//! forgotten too, joined or not, their veth removed.

use std::{collections::BTreeSet, net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context, ensure};
use overlay::network;
use overlay_tests::{
    Lab,
    cluster::Scratch,
    docker::{self, Dockerd, Node, wait_for},
    etcd::Etcd,
};

const SUBNET: &str = "10.0.9.0/24";

/// The keys of `field` (`networks`: Docker network IDs; `endpoints`: endpoint IDs) in
/// the plugin's state file.
fn in_state(state_dir: &Path, field: &str) -> anyhow::Result<BTreeSet<String>> {
    let path = state_dir.join("docker-plugin.json");
    let Ok(bytes) = std::fs::read(&path) else { return Ok(BTreeSet::new()) };
    let state: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| path.display().to_string())?;
    Ok(state[field].as_object().map(|n| n.keys().cloned().collect()).unwrap_or_default())
}

fn networks_in_state(state_dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    in_state(state_dir, "networks")
}

fn create_network(d: &Dockerd) -> anyhow::Result<String> {
    let out = d.docker(&docker::network_create(SUBNET, "my_network"))?;
    Ok(out.trim().to_owned())
}

/// The address a container on my_network gets: the binding works end to end.
fn address_on_my_network(d: &Dockerd) -> anyhow::Result<Ipv4Addr> {
    let out = d.docker(&["run", "--rm", "--net", "my_network", docker::IMAGE, "ip", "-4", "addr", "show", "eth0"])?;
    let cidr = out.split_whitespace().skip_while(|w| *w != "inet").nth(1).context("no inet address")?;
    Ok(cidr.split('/').next().unwrap_or_default().parse()?)
}

#[test]
fn the_plugin_forgets_networks_its_dockerd_lost() -> anyhow::Result<()> {
    let lab = Lab::builder("dstate").host("store01", "192.168.1.140/24").host("agt01", "192.168.1.141/24").build()?;
    let scratch = Scratch::new("docker-state")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let node = Node::start(lab.host("agt01"), &etcd.url(&format!("dstate-{:08x}", rand::random::<u32>())))?;
    let resolver = docker::DNS_ADDRESS;
    let mut dockerd = Dockerd::start(lab.host("agt01"), resolver)?;
    let result = scenario(&node, &mut dockerd, &scratch);
    if result.is_err() {
        eprintln!("{}", dockerd.log_tail());
    }
    dockerd.remove_all_containers();
    drop(etcd);
    result
}

fn scenario(node: &Node, dockerd: &mut Dockerd, scratch: &Scratch) -> anyhow::Result<()> {
    let state_dir = scratch.path("plugin");
    let subnet: ipnet::Ipv4Net = SUBNET.parse()?;

    // The mirror on (the default): the network made through Docker is the cluster's.
    let plugin = node.start_plugin(dockerd, &state_dir)?;
    let first = create_network(dockerd)?;
    let store = node.store.clone();
    let cluster = wait_for("the cluster network", Duration::from_secs(10), || {
        let store = store.clone();
        node.run(async move { network::find(&store, "my_network").await.ok() })
    })?;
    ensure!(networks_in_state(&state_dir)? == BTreeSet::from([first.clone()]));

    // While the plugin runs, dockerd loses its data root: the plugin forgets the
    // network, and the mirror puts the cluster network back into dockerd, bound again.
    dockerd.restart_wiped()?;
    let second = wait_for("my_network back in dockerd", Duration::from_secs(20), || {
        Ok(dockerd.network_ids("my_network")?.into_iter().next())
    })?;
    ensure!(second != first, "dockerd's new network has the old ID");
    wait_for("the state file naming only the new network", Duration::from_secs(10), || {
        Ok((networks_in_state(&state_dir)? == BTreeSet::from([second.clone()])).then_some(()))
    })?;
    let ip = address_on_my_network(dockerd)?;
    ensure!(subnet.contains(&ip), "{ip} is not in {subnet}");
    plugin.stop()?;

    // Without the mirror, on start: dockerd lost its data root while the plugin was
    // stopped. The plugin forgets the network at once, and creating it again works.
    dockerd.restart_wiped()?;
    let plugin = node.start_plugin_with(dockerd, &state_dir, |config| config.mirror = false)?;
    wait_for("the state file without the lost network", Duration::from_secs(10), || {
        Ok(networks_in_state(&state_dir)?.is_empty().then_some(()))
    })?;
    let third = create_network(dockerd)?;
    ensure!(address_on_my_network(dockerd).is_ok_and(|ip| subnet.contains(&ip)));

    // While it runs, and right away: `docker network create` just after the loss is
    // not refused over the network dockerd no longer has.
    dockerd.restart_wiped()?;
    let fourth = create_network(dockerd)?;
    ensure!(networks_in_state(&state_dir)? == BTreeSet::from([fourth.clone()]), "{third} still in the state");
    ensure!(address_on_my_network(dockerd).is_ok_and(|ip| subnet.contains(&ip)));

    // The cluster network stayed the same all along.
    let store = node.store.clone();
    let now = node.run(async move { network::find(&store, "my_network").await })??;
    ensure!(now.id == cluster.id, "the cluster network changed: {} then {}", cluster.id, now.id);

    // Endpoints dockerd does not have: made through the plugin's socket as dockerd
    // would, one joined (with its veth) and one not, as a `docker rm` whose Leave or
    // DeleteEndpoint a kill of the agent cut short leaves them. Both go.
    let ids: Vec<String> =
        (0..2).map(|_| format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())).collect();
    for (id, address) in ids.iter().zip(["10.0.9.201/24", "10.0.9.202/24"]) {
        let body = serde_json::json!({ "NetworkID": fourth, "EndpointID": id, "Interface": { "Address": address } });
        let (status, answer) =
            docker::raw_post(&plugin.socket, "/NetworkDriver.CreateEndpoint", body.to_string().as_bytes())?;
        ensure!(status == 200 && !answer.contains("\"Err\":\""), "CreateEndpoint: {status} {answer}");
    }
    let join =
        serde_json::json!({ "NetworkID": fourth, "EndpointID": ids[0], "SandboxKey": "/var/run/docker/netns/none" });
    let (status, answer) = docker::raw_post(&plugin.socket, "/NetworkDriver.Join", join.to_string().as_bytes())?;
    ensure!(status == 200 && answer.contains("InterfaceName"), "Join: {status} {answer}");
    let veth = overlay::container::host_interface_name(&ids[0]);
    ensure!(overlay_tests::cmd::ip(&node.host.ns, &["link", "show", "dev", &veth]).is_ok(), "no veth {veth}");
    let made: BTreeSet<String> = ids.iter().cloned().collect();
    ensure!(in_state(&state_dir, "endpoints")?.is_superset(&made), "the endpoints are not in the state");
    wait_for("the plugin forgetting the endpoints dockerd does not have", Duration::from_secs(30), || {
        Ok(in_state(&state_dir, "endpoints")?.is_disjoint(&made).then_some(()))
    })?;
    ensure!(overlay_tests::cmd::ip(&node.host.ns, &["link", "show", "dev", &veth]).is_err(), "veth {veth} stayed");
    plugin.stop()
}
