//! 1000 allocations issued at once by 10 clients on 10 simulated hosts into one network,
//! on etcd and on ZooKeeper:
//! no address twice, never the network, broadcast or gateway address; every released
//! address can be handed out again; the last free address goes, then the pool says it
//! is exhausted.

use std::{
    collections::{BTreeMap, HashSet},
    net::Ipv4Addr,
    time::Duration,
};

use anyhow::{Context, ensure};
use overlay::{
    network::ipam::{self, Ipam, IpamError, Release},
    store::Store,
};
use overlay_tests::{
    Lab, for_each_store,
    ipam::{Run, allocate_concurrently, create_network, on_host, request},
    stores::{Backend, StoreServer},
};

const CLIENTS: usize = 10;
const PER_CLIENT: usize = 100;

for_each_store!(thousand_concurrent_allocations_never_collide_and_released_addresses_come_back);

fn thousand_concurrent_allocations_never_collide_and_released_addresses_come_back(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut builder = Lab::builder("ipconc").host("store01", "192.168.1.140/24");
    for i in 0..CLIENTS {
        builder = builder.host(&format!("h{i:02}"), &format!("192.168.1.{}/24", 150 + i));
    }
    let lab = builder.build()?;
    let server = StoreServer::start(backend, lab.host("store01"))?;
    let result = body(&lab, &server.url("ipam"));
    if result.is_err() {
        eprintln!("{}", server.logs());
    }
    result
}

/// Checks one round: every address distinct, inside the subnet, none reserved.
fn check_round(run: &Run, what: &str) -> anyhow::Result<HashSet<Ipv4Addr>> {
    let subnet: ipnet::Ipv4Net = "10.10.0.0/22".parse()?;
    ensure!(run.allocated.len() == CLIENTS * PER_CLIENT, "{what}: {} allocations", run.allocated.len());
    let addresses: HashSet<Ipv4Addr> = run.allocated.iter().map(|a| a.address).collect();
    if addresses.len() != run.allocated.len() {
        let mut seen: BTreeMap<Ipv4Addr, Vec<&str>> = BTreeMap::new();
        for a in &run.allocated {
            seen.entry(a.address).or_default().push(&a.endpoint);
        }
        let twice: Vec<_> = seen.iter().filter(|(_, e)| e.len() > 1).take(5).collect();
        anyhow::bail!("{what}: {} duplicates, e.g. {twice:?}", run.allocated.len() - addresses.len());
    }
    for address in &addresses {
        ensure!(subnet.contains(address), "{what}: {address} outside {subnet}");
        let reserved = [subnet.network(), subnet.broadcast(), Ipv4Addr::new(10, 10, 0, 1)];
        ensure!(!reserved.contains(address), "{what}: reserved address {address} handed out");
    }
    let per_host = run.allocated.iter().filter(|a| a.host == "h03").count();
    ensure!(per_host == PER_CLIENT, "{what}: h03 made {per_host} allocations");
    eprintln!(
        "{what}: {} allocations in {:.2?} ({:.0}/s)",
        run.allocated.len(),
        run.elapsed,
        run.allocated.len() as f64 / run.elapsed.as_secs_f64()
    );
    Ok(addresses)
}

fn body(lab: &Lab, url: &str) -> anyhow::Result<()> {
    let hosts: Vec<_> = lab.hosts.iter().filter(|h| h.name != "store01").collect();
    // A /22: 1024 addresses, 1021 to hand out.
    let network = create_network(hosts[0], url, &request("conc", Some("10.10.0.0/22")))?;

    let first = allocate_concurrently(&hosts, url, "conc", "a", PER_CLIENT, 4)?;
    let first_addresses = check_round(&first, "first round")?;
    // The store holds exactly what the clients were told.
    let stored = on_host(hosts[1], url, |store| {
        let id = network.id.clone();
        async move { Ok(ipam::allocations(&store, &id).await?) }
    })?;
    let told: BTreeMap<Ipv4Addr, &str> = first.allocated.iter().map(|a| (a.address, a.endpoint.as_str())).collect();
    ensure!(stored.len() == told.len(), "the store holds {} allocations, clients got {}", stored.len(), told.len());
    for allocation in &stored {
        ensure!(
            told.get(&allocation.address) == Some(&allocation.endpoint.as_str()),
            "the store gives {} to {}, the client was told otherwise",
            allocation.address,
            allocation.endpoint
        );
    }

    // Release everything from all hosts at once, half by address, half by endpoint.
    std::thread::scope(|scope| {
        let releases: Vec<_> = hosts
            .iter()
            .map(|host| {
                let mine: Vec<_> = first.allocated.iter().filter(|a| a.host == host.name).cloned().collect();
                scope.spawn(move || {
                    on_host(host, url, |store| async move {
                        let ipam = Ipam::new(store);
                        for (n, allocation) in mine.iter().enumerate() {
                            let what = if n % 2 == 0 {
                                Release::Address(allocation.address)
                            } else {
                                Release::Endpoint(allocation.endpoint.clone())
                            };
                            let released = ipam.release("conc", &what).await?.context("nothing was released")?;
                            ensure!(released.address == allocation.address && released.endpoint == allocation.endpoint);
                            // Releasing twice is harmless.
                            ensure!(ipam.release("conc", &what).await?.is_none(), "{what:?} released twice");
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        releases.into_iter().try_for_each(|r| r.join().map_err(|_| anyhow::anyhow!("a release client panicked"))?)
    })?;
    let left = on_host(hosts[2], url, |store| {
        let id = network.id.clone();
        async move {
            let addresses = store.list(&ipam::keys::network(&id)).await?;
            Ok(addresses.entries.len())
        }
    })?;
    ensure!(left == 0, "{left} IPAM keys left after releasing everything");

    // A second round needs the released addresses: 1000 + 1000 > 1021.
    let second = allocate_concurrently(&hosts, url, "conc", "b", PER_CLIENT, 4)?;
    let second_addresses = check_round(&second, "second round")?;
    let reused = first_addresses.intersection(&second_addresses).count();
    ensure!(reused >= 2 * CLIENTS * PER_CLIENT - 1021, "only {reused} released addresses were handed out again");

    // The last 21 addresses, then a clear error.
    let (last, error) = on_host(hosts[5], url, |store| async move {
        let lease = store.grant_lease(Duration::from_secs(60)).await?;
        let ipam = Ipam::new(store);
        let mut last = Vec::new();
        for n in 0..30 {
            match ipam.allocate("conc", &format!("last-{n}"), "node-h05", lease, None).await {
                Ok(address) => last.push(address),
                Err(error) => return Ok((last, error)),
            }
        }
        anyhow::bail!("30 more allocations succeeded in a network with 21 free addresses")
    })?;
    ensure!(last.len() == 21, "{} more addresses were free, expected 21", last.len());
    let all: HashSet<_> = second_addresses.iter().chain(&last).collect();
    ensure!(all.len() == 1021, "the full pool holds {} distinct addresses", all.len());
    ensure!(matches!(error, IpamError::Exhausted { count: 1021, .. }), "{error}");
    let message = error.to_string();
    ensure!(message.contains("\"conc\"") && message.contains("no free address"), "{message}");
    Ok(())
}
