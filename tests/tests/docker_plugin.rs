//! Step 10 of the scenario with a real dockerd (Debian's docker.io) on two hosts and a
//! native container on a third: `docker network create` on one host makes the network
//! appear in the other host's Docker, `docker run` containers reach each other and the
//! native container by name across hosts, addresses are released on `docker rm`, and a
//! plugin restart (with a new lease, as after an agent restart) keeps running
//! containers connected. Also the protocol's error answers on the plugin socket.

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use overlay::{
    container::{self, Attachment},
    dns,
    endpoint::{self, EndpointRecord},
    netlink::Netlink,
    network::{
        self,
        ipam::{self, Ipam},
    },
    store::Store,
};
use overlay_tests::{
    Lab,
    cluster::Scratch,
    cmd,
    docker::{self, Dockerd, Node, Plugin, raw_post, wait_for},
    etcd::Etcd,
    traffic,
};

/// The endpoint records of the cluster network `network`.
fn endpoints(node: &Node, network: &str) -> anyhow::Result<Vec<EndpointRecord>> {
    let store = node.store.clone();
    let network = network.to_owned();
    node.run(async move {
        let record = network::find(&store, &network).await?;
        let listing = store.list(&endpoint::network_dir(&record.id)).await?;
        anyhow::Ok(listing.entries.iter().filter_map(|e| EndpointRecord::parse(&e.key, &e.value)).collect())
    })?
}

/// The addresses allocated in `network`, with the node holding each.
fn allocations(node: &Node, network: &str) -> anyhow::Result<Vec<(Ipv4Addr, String)>> {
    let store = node.store.clone();
    let network = network.to_owned();
    node.run(async move {
        let record = network::find(&store, &network).await?;
        let all = ipam::allocations(&store, &record.id).await?;
        anyhow::Ok(all.into_iter().map(|a| (a.address, a.node)).collect())
    })?
}

/// A native container (what `overlay run` makes) on `node`: its own namespace with
/// eth0 on `network`, the datapath entry, the endpoint record, and its resolver at
/// 127.0.0.11 (kept until the returned [`dns::Resolver`] is dropped).
fn native_container(
    lab: &Lab,
    node: &Node,
    network: &str,
    name: &str,
) -> anyhow::Result<(String, Ipv4Addr, dns::Resolver)> {
    let ns = format!("{}-{name}", lab.prefix);
    let (store, datapath, node_id, lease) = (node.store.clone(), node.datapath.clone(), node.id.clone(), node.lease());
    let (network, name2, ns2, names) = (network.to_owned(), name.to_owned(), ns.clone(), node.names.clone());
    let ip = node.run(async move {
        let ipam = Ipam::new(store.clone());
        let record = ipam.network(&network, true).await?;
        let endpoint_id = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
        let ip = ipam.allocate(&record.id, &endpoint_id, &node_id, lease, None).await?;
        let path = overlay::netns::path(&ns2);
        container::create_namespace(&path).await?;
        let attachment = Attachment {
            interface: "eth0".into(),
            host_interface: container::host_interface_name(&endpoint_id),
            ip,
            prefix_len: record.subnet.prefix_len(),
            mac: container::mac_for(ip),
            mtu: docker::MTU,
            default_gateway: Some(record.gateway),
        };
        container::attach(&Netlink::connect()?, &path, &attachment).await?;
        let published = EndpointRecord {
            id: endpoint_id.clone(),
            network_id: record.id.clone(),
            node_id,
            container: name2,
            aliases: vec![],
            ip,
            mac: attachment.mac,
        };
        datapath.lock().await.add_local_endpoint(&published.local_spec(record.vni, &attachment.host_interface))?;
        endpoint::publish(&store, &published, lease).await?;
        let resolver = dns::serve_container(&ns2, &published.container, names, Arc::new(dns::Upstreams::none()))?;
        dns::write_netns_resolv_conf(&ns2, &dns::container_resolv_conf(&[]))?;
        anyhow::Ok((ip, resolver))
    })??;
    Ok((ns, ip.0, ip.1))
}

/// Everything the test runs, torn down in order: containers (while the plugins still
/// answer), plugins, dockerds, agents, etcd, namespaces.
struct Setup {
    /// A native container's namespace whose resolv.conf (under /etc/netns) is removed.
    native_ns: Option<String>,
    plugins: Vec<Option<Plugin>>,
    dockerds: Vec<Dockerd>,
    nodes: Vec<Node>,
    _etcd: Etcd,
    scratch: Scratch,
    lab: Lab,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for dockerd in &self.dockerds {
            dockerd.remove_all_containers();
        }
        if let Some(ns) = &self.native_ns {
            let _ = dns::remove_netns_resolv_conf(ns);
        }
    }
}

impl Setup {
    fn logs(&self) -> String {
        self.dockerds.iter().map(Dockerd::log_tail).collect()
    }
}

#[test]
fn docker_containers_on_two_hosts_and_a_native_one_share_the_overlay() -> anyhow::Result<()> {
    let lab = Lab::builder("dock")
        .host("store01", "192.168.1.140/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.1.142/24")
        .host("agt03", "192.168.1.143/24")
        .build()?;
    let scratch = Scratch::new("docker")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let url = etcd.url(&format!("docker-{:08x}", rand::random::<u32>()));
    let nodes = ["agt01", "agt02", "agt03"]
        .iter()
        .map(|h| Node::start(lab.host(h), &url))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let resolver = docker::DNS_ADDRESS;
    let dockerds = vec![Dockerd::start(lab.host("agt01"), resolver)?, Dockerd::start(lab.host("agt02"), resolver)?];
    let mut setup = Setup { native_ns: None, plugins: Vec::new(), dockerds, nodes, _etcd: etcd, scratch, lab };
    for i in 0..2 {
        let plugin = setup.nodes[i].start_plugin(&setup.dockerds[i], &setup.scratch.path(&format!("plugin{i}")))?;
        setup.plugins.push(Some(plugin));
    }
    let result = scenario(&mut setup);
    if result.is_err() {
        eprintln!("{}", setup.logs());
    }
    result
}

fn scenario(s: &mut Setup) -> anyhow::Result<()> {
    let started = Instant::now();
    let (d1, d2) = (&s.dockerds[0], &s.dockerds[1]);

    // The protocol's answers to what dockerd never sends: no crash, clear errors.
    let socket = s.plugins[0].as_ref().context("plugin")?.socket.clone();
    let (status, body) = raw_post(&socket, "/NetworkDriver.CreateNetwork", b"{garbage")?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"Err\"") && body.contains("not the expected JSON"), "{body}");
    let (status, body) = raw_post(&socket, "/IpamDriver.RequestAddress", br#"{"PoolID":"pool-1"}"#)?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"Error\"") && body.contains("unknown pool"), "{body}");
    let (status, body) =
        raw_post(&socket, "/NetworkDriver.Join", br#"{"NetworkID":"ab12","EndpointID":"cd34","SandboxKey":"x"}"#)?;
    assert!(status == 200 && body.contains("unknown endpoint"), "{status} {body}");
    let (status, body) = raw_post(&socket, "/NetworkDriver.CreateNetwork", "{\"NetworkID\":\"é/../x\"}".as_bytes())?;
    assert!(status == 200 && body.contains("hexadecimal"), "{status} {body}");
    let (status, _) = raw_post(&socket, "/VolumeDriver.Create", b"{}")?;
    assert_eq!(status, 404);
    let (status, body) = raw_post(&socket, "/Plugin.Activate", b"")?;
    assert!(status == 200 && body.contains("NetworkDriver") && body.contains("IpamDriver"), "{body}");
    // Without the overlay IPAM, addresses would not be the cluster's: refused.
    let driver = docker::PLUGIN;
    let (ok, out) = d1.docker_status(&["network", "create", "-d", driver, "--subnet", "10.0.7.0/24", "wrong"])?;
    assert!(!ok && out.contains(&format!("--ipam-driver {driver}")), "{out}");

    // Created once on agt01; appears in agt02's Docker by itself.
    d1.docker(&docker::network_create("10.0.9.0/24", "my_network"))?;
    let record = wait_for("the cluster network", Duration::from_secs(10), || {
        let store = s.nodes[0].store.clone();
        s.nodes[0].run(async move { network::find(&store, "my_network").await.ok() })
    })?;
    assert_eq!(record.subnet.to_string(), "10.0.9.0/24");
    wait_for("my_network in agt02's docker network ls", Duration::from_secs(15), || {
        let ls = d2.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"])?;
        Ok(ls.lines().any(|l| l == format!("my_network {driver}")).then_some(()))
    })?;
    // The mirror made it for that cluster network, and says so to the driver: a Docker
    // network made for a cluster network that is gone by then fails instead of making a
    // new one.
    let made_for =
        d2.docker(&["network", "inspect", "-f", "{{index .Options \"overlay.cluster-network\"}}", "my_network"])?;
    assert_eq!(made_for.trim(), record.id, "the mirror's network does not name its cluster network");

    let (native_ns, native_ip, _native_resolver) = native_container(&s.lab, &s.nodes[2], "my_network", "native01")?;
    s.native_ns = Some(native_ns.clone());

    d2.docker(&["run", "-d", "--name", "busybox02", "--net", "my_network", docker::IMAGE, "sleep", "600"])?;
    let ip2: Ipv4Addr = d2
        .docker(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"my_network\").IPAddress}}", "busybox02"])?
        .trim()
        .parse()?;
    assert!(record.subnet.contains(&ip2), "{ip2}");
    assert_eq!(d2.docker(&["exec", "busybox02", "cat", "/sys/class/net/eth0/mtu"])?.trim(), docker::MTU.to_string());
    wait_for("busybox02's name in the store", Duration::from_secs(10), || {
        Ok(endpoints(&s.nodes[0], "my_network")?
            .iter()
            .any(|e| e.container == "busybox02" && e.ip == ip2)
            .then_some(()))
    })?;

    // Across hosts by name: Docker → Docker, Docker → native, native → Docker.
    let out = d1.docker(&[
        "run",
        "--rm",
        "--name",
        "busybox01",
        "--net",
        "my_network",
        docker::IMAGE,
        "ping",
        "-c",
        "3",
        "busybox02",
    ])?;
    assert!(out.contains(&format!("({ip2})")) && out.contains("3 packets received"), "{out}");
    let out = d2.docker(&["exec", "busybox02", "ping", "-c", "3", "native01"])?;
    assert!(out.contains(&format!("({native_ip})")) && out.contains("3 packets received"), "{out}");
    traffic::ping_ok(&native_ns, ip2, 3)?;
    let out = cmd::run_in(&native_ns, &["ping", "-c", "2", "-i", "0.2", "-W", "1", "busybox02"])?;
    assert!(out.contains(&format!("({ip2})")) && out.contains("2 received"), "{out}");

    // A static address, then its release on rm.
    d1.docker(&[
        "run",
        "-d",
        "--name",
        "busybox03",
        "--net",
        "my_network",
        "--ip",
        "10.0.9.200",
        docker::IMAGE,
        "sleep",
        "600",
    ])?;
    let held = allocations(&s.nodes[0], "my_network")?;
    assert!(held.contains(&(Ipv4Addr::new(10, 0, 9, 200), s.nodes[0].id.clone())), "{held:?}");
    traffic::ping_ok(&native_ns, Ipv4Addr::new(10, 0, 9, 200), 2)?;
    d1.docker(&["rm", "-f", "busybox03"])?;
    let held = allocations(&s.nodes[0], "my_network")?;
    assert!(!held.iter().any(|(a, _)| *a == Ipv4Addr::new(10, 0, 9, 200)), "{held:?}");

    // Restart agt02's plugin as an agent restart would: new lease, so busybox02's record
    // and address vanished from the store until the plugin publishes them again.
    s.plugins[1].take().context("plugin")?.stop()?;
    s.nodes[1].new_lease()?;
    assert!(!endpoints(&s.nodes[0], "my_network")?.iter().any(|e| e.ip == ip2));
    s.plugins[1] = Some(s.nodes[1].start_plugin(d2, &s.scratch.path("plugin1"))?);
    wait_for("busybox02 published again", Duration::from_secs(10), || {
        Ok(endpoints(&s.nodes[0], "my_network")?
            .iter()
            .any(|e| e.container == "busybox02" && e.ip == ip2)
            .then_some(()))
    })?;
    let held = allocations(&s.nodes[0], "my_network")?;
    assert!(held.contains(&(ip2, s.nodes[1].id.clone())), "{held:?}");
    traffic::ping_ok(&native_ns, ip2, 3)?;
    let out = d1.docker(&["run", "--rm", "--net", "my_network", docker::IMAGE, "ping", "-c", "2", "busybox02"])?;
    assert!(out.contains("2 packets received"), "{out}");

    // rm releases the address and withdraws the endpoint everywhere.
    d2.docker(&["rm", "-f", "busybox02"])?;
    let held = allocations(&s.nodes[0], "my_network")?;
    assert!(!held.iter().any(|(a, _)| *a == ip2), "{held:?}");
    assert!(!endpoints(&s.nodes[0], "my_network")?.iter().any(|e| e.ip == ip2));
    assert!(traffic::ping_ok(&native_ns, ip2, 1).is_err(), "busybox02's address still answers");
    assert!(cmd::run(&["ip", "-n", &s.lab.host("agt02").ns, "-o", "link"])?.lines().all(|l| !l.contains(": ov")));

    // native01 still holds an address: `docker network rm` on agt01 takes the network
    // out of agt01's Docker only (Docker cannot be refused); it stays in the cluster and
    // in agt02's Docker, and is not mirrored back into agt01's. Created again on agt01
    // with its subnet, it binds to the same cluster network.
    let names = |d: &Dockerd| -> anyhow::Result<Vec<String>> {
        Ok(d.docker(&["network", "ls", "--format", "{{.Name}}"])?.lines().map(str::to_owned).collect())
    };
    d1.docker(&["network", "rm", "my_network"])?;
    std::thread::sleep(Duration::from_secs(4)); // longer than a mirror pass
    assert!(!names(d1)?.iter().any(|n| n == "my_network"));
    assert!(names(d2)?.iter().any(|n| n == "my_network"));
    let store = s.nodes[0].store.clone();
    let kept = s.nodes[0].run(async move { network::find(&store, "my_network").await })??;
    assert_eq!(kept.id, record.id);
    d1.docker(&docker::network_create("10.0.9.0/24", "my_network"))?;
    let out = d1.docker(&["run", "--rm", "--net", "my_network", docker::IMAGE, "ping", "-c", "1", "native01"])?;
    assert!(out.contains(&format!("({native_ip})")) && out.contains("1 packets received"), "{out}");

    // A network removed through Docker on one host leaves the other host's Docker.
    let other = docker::network_create("10.0.10.0/24", "other_net");
    d2.docker(&other)?;
    wait_for("other_net in agt01's Docker", Duration::from_secs(15), || {
        Ok(names(d1)?.iter().any(|n| n == "other_net").then_some(()))
    })?;
    d2.docker(&["network", "rm", "other_net"])?;
    wait_for("other_net gone from agt01's Docker", Duration::from_secs(15), || {
        Ok((!names(d1)?.iter().any(|n| n == "other_net")).then_some(()))
    })?;
    let store = s.nodes[0].store.clone();
    assert!(s.nodes[0].run(async move { network::find(&store, "other_net").await.is_err() })?);

    eprintln!("docker scenario took {:?}", started.elapsed());
    Ok(())
}
