//! Scenario step 7, on etcd and on ZooKeeper: an overlay network created once from any
//! host, seen with the same ID from every host. Hosts creating the same name, or overlapping subnets, at the
//! same moment: exactly one wins. Overlaps with another network or with a member host's
//! route or address are refused naming the collision, and write nothing. Without a
//! subnet, the first free /24 skips what member hosts route; VNIs are unique and not
//! reused.

use std::{
    collections::{BTreeSet, HashSet},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use overlay::{
    network::{self, CreateRequest, NetworkError, NetworkRecord, NetworkSpec, SubnetPool, host::HostNetworks},
    store::{AnyStore, Store},
};
use overlay_tests::{
    Host, Lab, cmd, for_each_store,
    ipam::{at_once, create_network, on_host, register_node, request},
    stores::{Backend, StoreServer},
};

for_each_store!(networks_are_created_once_and_never_overlap);

fn networks_are_created_once_and_never_overlap(backend: Backend) -> anyhow::Result<()> {
    let lab = Lab::scenario("netc")?;
    let server = StoreServer::start(backend, lab.host("store01"))?;
    // Each part is a cluster of its own (a prefix of the one store).
    let result = same_name_at_once(&lab, &server.url("same_name"))
        .and_then(|()| overlapping_subnets_at_once(&lab, &server.url("overlap")))
        .and_then(|()| refusals_write_nothing(&lab, &server.url("refusals")))
        .and_then(|()| automatic_subnets_skip_host_routes(&lab, &server.url("auto")));
    if result.is_err() {
        eprintln!("{}", server.logs());
    }
    result
}

/// Rounds of concurrent creations of overlapping subnets.
const ROUNDS: usize = 5;
/// Creations each host starts at once.
const PER_HOST: usize = 3;

fn clients(lab: &Lab) -> Vec<&Host> {
    ["mgr01", "agt01", "agt02", "agt03"].into_iter().map(|n| lab.host(n)).collect()
}

/// Every host creates networks at the same moment, `PER_HOST` at once each over its
/// own connection; `request(i)` is the i-th request (host `i / PER_HOST`).
fn create_at_once(
    lab: &Lab,
    url: &str,
    request: impl Fn(usize) -> CreateRequest + Sync,
) -> anyhow::Result<Vec<Result<NetworkRecord, NetworkError>>> {
    let hosts = clients(lab);
    let (results, _) = at_once(
        &hosts,
        url,
        |host, store| {
            let specs: Result<Vec<NetworkSpec>, _> =
                (0..PER_HOST).map(|j| NetworkSpec::parse(&request(host * PER_HOST + j))).collect();
            async move { Ok((store, specs?)) }
        },
        |_, (store, specs)| async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (j, spec) in specs.into_iter().enumerate() {
                let store = store.clone();
                tasks.spawn(async move { (j, network::create(&store, &spec, &SubnetPool::default()).await) });
            }
            let mut results: Vec<_> = tasks.join_all().await;
            results.sort_by_key(|(j, _)| *j);
            Ok(results.into_iter().map(|(_, r)| r).collect::<Vec<_>>())
        },
    )?;
    Ok(results.into_iter().collect::<anyhow::Result<Vec<_>>>()?.into_iter().flatten().collect())
}

fn same_name_at_once(lab: &Lab, url: &str) -> anyhow::Result<()> {
    let results = create_at_once(lab, url, |_| request("my_network", Some("10.0.9.0/24")))?;
    let winners: Vec<&NetworkRecord> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    ensure!(winners.len() == 1, "{} hosts created my_network: {results:?}", winners.len());
    let id = winners[0].id.clone();
    for result in &results {
        match result {
            Ok(_) => {}
            Err(NetworkError::AlreadyExists { name, id: other }) if name == "my_network" && *other == id => {}
            Err(other) => anyhow::bail!("a losing host got {other}, not \"already exists\""),
        }
    }
    // Listed once, with the same ID, from every host; found by name, ID and short ID.
    for host in clients(lab) {
        let short = id[..12].to_owned();
        let (listed, by_short) = on_host(host, url, |store| async move {
            Ok((network::list(&store).await?, network::find(&store, &short).await?))
        })?;
        ensure!(listed.len() == 1 && listed[0].id == id && listed[0].name == "my_network", "{}: {listed:?}", host.name);
        ensure!(listed[0].subnet.to_string() == "10.0.9.0/24" && listed[0].gateway == Ipv4Addr::new(10, 0, 9, 1));
        ensure!(by_short.id == id, "short ID {} found {by_short:?}", &id[..12]);
    }
    Ok(())
}

fn overlapping_subnets_at_once(lab: &Lab, url: &str) -> anyhow::Result<()> {
    // Twelve creators at once, with subnets that all hold 10.R.0.0 and so overlap
    // pairwise; the window between a creator's listing and its transaction is short,
    // so there are several rounds, and each must have exactly one winner.
    let mut vnis = Vec::new();
    for round in 0..ROUNDS {
        let results = create_at_once(lab, url, |i| {
            request(&format!("r{round}n{i}"), Some(&format!("10.{}.0.0/{}", 100 + round, 16 + i)))
        })?;
        let winners: Vec<&NetworkRecord> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        ensure!(winners.len() == 1, "round {round}: {} overlapping networks were created: {results:?}", winners.len());
        for result in &results {
            if let Err(error) = result {
                ensure!(matches!(error, NetworkError::OverlapsNetwork { .. }), "a losing host got: {error}");
                ensure!(error.to_string().contains(&format!("network \"{}\"", winners[0].name)), "{error}");
            }
        }
        vnis.push(winners[0].vni);
    }
    // Different names and free subnets at the same moment: all created, VNIs distinct.
    let results = create_at_once(lab, url, |i| request(&format!("free{i}"), Some(&format!("10.31.{i}.0/24"))))?;
    let created: Vec<NetworkRecord> = results.into_iter().collect::<Result<_, _>>()?;
    let all = 4 * PER_HOST;
    let vnis: HashSet<u32> = created.iter().map(|r| r.vni).chain(vnis).collect();
    ensure!(created.len() == all && vnis.len() == all + ROUNDS, "VNIs not unique: {created:?}");
    let ids: HashSet<&str> = created.iter().map(|r| r.id.as_str()).collect();
    ensure!(ids.len() == all, "IDs not unique");
    Ok(())
}

/// Every key of the cluster with its revision.
async fn everything(store: &AnyStore) -> anyhow::Result<BTreeSet<(String, i64)>> {
    Ok(store.list("").await?.entries.into_iter().map(|e| (e.key, e.mod_revision)).collect())
}

fn refusals_write_nothing(lab: &Lab, url: &str) -> anyhow::Result<()> {
    let (agt01, agt02) = (lab.host("agt01"), lab.host("agt02"));
    create_network(agt01, url, &request("base", Some("10.50.0.0/24")))?;
    // agt02 routes 10.60.0.0/16 and publishes its routes and addresses.
    cmd::ip(&agt02.ns, &["route", "add", "10.60.0.0/16", "dev", "eth0"])?;
    let published = on_host(agt02, url, |store| async move {
        let (node, lease) =
            register_node(&store, "agt02", Ipv4Addr::new(192, 168, 1, 142), Duration::from_secs(60)).await?;
        Ok(network::host::publish(&store, &node, "agt02", lease).await?)
    })?;
    ensure!(published.routes.iter().any(|r| r.prefix.to_string() == "10.60.0.0/16"), "{published:?}");
    ensure!(published.addresses.iter().any(|a| a.address.to_string() == "192.168.1.142/24"), "{published:?}");
    ensure!(!published.routes.iter().any(|r| r.prefix.prefix_len() == 0), "the default route was published");

    on_host(agt01, url, |store| async move {
        let before = everything(&store).await?;
        let pool = SubnetPool::default();
        let refused = [
            (request("x", Some("10.50.0.128/25")), "overlaps 10.50.0.0/24 of overlay network \"base\""),
            (request("x", Some("10.0.0.0/8")), "of overlay network \"base\""),
            (request("y", Some("10.60.3.0/24")), "the route 10.60.0.0/16 (dev eth0) of host agt02"),
            (request("z", Some("192.168.1.128/25")), "192.168.1.0/24 (dev eth0) of host agt02"),
            (request("base", Some("10.70.0.0/24")), "a network named \"base\" already exists"),
        ];
        for (request, says) in refused {
            let spec = NetworkSpec::parse(&request)?;
            let error = network::create(&store, &spec, &pool).await.unwrap_err();
            ensure!(error.to_string().contains(says), "{request:?}: {error}");
        }
        // Invalid requests never get as far as the store.
        for bad in [
            request("bad.name", Some("10.80.0.0/24")),
            request("bad", Some("10.80.0.1/24")),
            request("bad", Some("10.80.0.0/31")),
            CreateRequest { driver: Some("bridge".into()), ..request("bad", None) },
            CreateRequest { gateway: Some("10.81.0.1".into()), ..request("bad", Some("10.80.0.0/24")) },
            CreateRequest { ip_range: Some("10.81.0.0/25".into()), ..request("bad", Some("10.80.0.0/24")) },
        ] {
            ensure!(NetworkSpec::parse(&bad).is_err(), "{bad:?} was accepted");
        }
        let after = everything(&store).await?;
        ensure!(before == after, "a refused creation wrote to the store");
        // A subnet next to the others is fine.
        let spec = NetworkSpec::parse(&request("x", Some("10.50.1.0/24")))?;
        network::create(&store, &spec, &pool).await?;
        Ok(())
    })
}

fn automatic_subnets_skip_host_routes(lab: &Lab, url: &str) -> anyhow::Result<()> {
    let (agt01, agt03) = (lab.host("agt01"), lab.host("agt03"));
    let ns = agt03.ns.clone();
    // agt03 routes 10.0.0.0/24 and holds 10.0.1.7/24 and 10.0.2.7/32 (no route for the
    // last: only the published address keeps 10.0.2.0/24 away).
    cmd::ip(&ns, &["route", "add", "10.0.0.0/24", "dev", "eth0"])?;
    cmd::ip(&ns, &["addr", "add", "10.0.1.7/24", "dev", "eth0"])?;
    let key_of = |node: &str| network::keys::host_networks(node);
    let agt03_lease = on_host(agt03, url, |store| async move {
        let (node, lease) =
            register_node(&store, "agt03", Ipv4Addr::new(192, 168, 1, 143), Duration::from_secs(60)).await?;
        // The agent's publisher, whose periodic reading never comes in this test: what
        // it publishes after the first reading comes from the kernel's route events.
        let (stop, shutdown) = overlay::shutdown::channel();
        let publisher = tokio::spawn(network::host::run_publisher(
            store.clone(),
            node.clone(),
            "agt03".into(),
            Duration::from_secs(3600),
            None,
            shutdown,
        ));
        let published = |wanted: &'static str| {
            let (store, key) = (store.clone(), key_of(&node));
            async move {
                let started = Instant::now();
                loop {
                    if let Some(entry) = store.get(&key).await? {
                        ensure!(entry.lease == Some(lease), "the record is not on the node's lease");
                        let record: HostNetworks = serde_json::from_slice(&entry.value)?;
                        if record.addresses.iter().any(|a| a.address.to_string() == wanted) {
                            return Ok(record);
                        }
                    }
                    ensure!(started.elapsed() < Duration::from_secs(2), "{wanted} was not published within 2 s");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let record = published("10.0.1.7/24").await?;
        ensure!(record.routes.iter().any(|r| r.prefix.to_string() == "10.0.0.0/24"), "{record:?}");
        // A change on the host is published as it happens.
        cmd::ip(&ns, &["addr", "add", "10.0.2.7/32", "dev", "eth0"])?;
        published("10.0.2.7/32").await?;
        cmd::ip(&ns, &["route", "add", "10.0.5.0/24", "dev", "eth0"])?;
        let record = published("10.0.2.7/32").await?;
        let started = Instant::now();
        let mut record = record;
        while !record.routes.iter().any(|r| r.prefix.to_string() == "10.0.5.0/24") {
            ensure!(started.elapsed() < Duration::from_secs(2), "the route 10.0.5.0/24 was not published within 2 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
            record = published("10.0.2.7/32").await?;
        }
        stop.fire();
        publisher.await.context("the publisher panicked")?;
        Ok(lease)
    })?;

    on_host(agt01, url, |store| async move {
        let pool = SubnetPool::default();
        let auto = |name: &str| NetworkSpec::parse(&request(name, None));
        let first = network::create(&store, &auto("auto1")?, &pool).await?;
        ensure!(first.subnet.to_string() == "10.0.3.0/24", "auto1 got {}", first.subnet);
        ensure!(first.gateway == Ipv4Addr::new(10, 0, 3, 1), "auto1's gateway {}", first.gateway);
        let second = network::create(&store, &auto("auto2")?, &pool).await?;
        ensure!(second.subnet.to_string() == "10.0.4.0/24", "auto2 got {}", second.subnet);
        ensure!(second.vni != first.vni, "auto1 and auto2 share VNI {}", first.vni);
        // A removed network's VNI is not handed out again; its name and subnet are.
        network::remove(&store, "auto2").await?;
        let again = network::create(&store, &auto("auto2")?, &pool).await?;
        ensure!(again.subnet == second.subnet && again.id != second.id, "{again:?}");
        // agt03's route added while its agent ran keeps 10.0.5.0/24 away.
        let fourth = network::create(&store, &auto("auto4")?, &pool).await?;
        ensure!(fourth.subnet.to_string() == "10.0.6.0/24", "auto4 got {} beside agt03's route", fourth.subnet);
        ensure!(again.vni > second.vni, "VNI {} reused after removal (now {})", second.vni, again.vni);
        // A configured pool is used instead of the default one.
        let small = SubnetPool::new("172.28.0.0/16", 26)?;
        let custom = network::create(&store, &auto("custom")?, &small).await?;
        ensure!(custom.subnet.to_string() == "172.28.0.0/26", "custom pool gave {}", custom.subnet);
        // When agt03 leaves the cluster its routes no longer count.
        store.revoke_lease(agt03_lease).await?;
        let third = network::create(&store, &auto("auto3")?, &pool).await?;
        ensure!(third.subnet.to_string() == "10.0.0.0/24", "auto3 got {} after agt03 left", third.subnet);
        Ok(())
    })
}
