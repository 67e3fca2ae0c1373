//! Static addresses are granted only if free and never the network, broadcast or
//! gateway address; an endpoint keeps its address; addresses go back to the pool when
//! released or when their node's lease expires; `network inspect` shows the endpoints
//! per host and `network rm` refuses while any is attached, naming them.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::ensure;
use overlay::{
    network::{
        self, CreateRequest, NetworkError,
        ipam::{self, Ipam, IpamError, Release},
    },
    store::Store,
};
use overlay_tests::{
    Lab,
    etcd::Etcd,
    ipam::{create_network, on_host, register_node},
};

#[test]
fn static_addresses_leases_and_attached_endpoints() -> anyhow::Result<()> {
    let lab = Lab::builder("ipstat")
        .host("store01", "192.168.1.140/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.1.142/24")
        .build()?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let result = body(&lab, &etcd.url("my_cluster"));
    if result.is_err() {
        eprintln!("{}", etcd.logs());
    }
    result
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn body(lab: &Lab, url: &str) -> anyhow::Result<()> {
    let (agt01, agt02) = (lab.host("agt01"), lab.host("agt02"));
    let request = CreateRequest {
        name: "static".into(),
        subnet: Some("10.20.0.0/24".into()),
        ip_range: Some("10.20.0.128/25".into()),
        ..CreateRequest::default()
    };
    let record = create_network(agt01, url, &request)?;
    ensure!(record.gateway == ip("10.20.0.1"), "gateway {}", record.gateway);

    // agt02 joins with a short lease that nobody keeps alive: it dies during the test.
    let (dying_node, dying_lease, held) = on_host(agt02, url, |store| async move {
        let (node, lease) = register_node(&store, "agt02", ip("192.168.1.142"), Duration::from_secs(3)).await?;
        let ipam = Ipam::new(store);
        let held = ipam.allocate("static", "d", &node, lease, Some(ip("10.20.0.9"))).await?;
        let dynamic = ipam.allocate("static", "e", &node, lease, None).await?;
        ensure!(held == ip("10.20.0.9"), "static 10.20.0.9 granted as {held}");
        Ok((node, lease, dynamic))
    })?;

    on_host(agt01, url, |store| async move {
        let (node, lease) = register_node(&store, "agt01", ip("192.168.1.141"), Duration::from_secs(60)).await?;
        let ipam = Ipam::new(store.clone());
        // agt02 stays alive until its endpoints have been seen (a slow machine must not
        // let it expire early).
        ensure!(store.keep_alive(dying_lease).await?, "agt02's lease expired too early");

        // Static: granted if free, also outside the IP range (inside the subnet).
        ensure!(ipam.allocate("static", "a", &node, lease, Some(ip("10.20.0.5"))).await? == ip("10.20.0.5"));
        let taken = ipam.allocate("static", "b", &node, lease, Some(ip("10.20.0.5"))).await.unwrap_err();
        ensure!(matches!(taken, IpamError::AddressInUse { ref endpoint, .. } if endpoint == "a"), "{taken}");
        ensure!(taken.to_string().contains("already in use"), "{taken}");
        for (address, says) in [
            ("10.20.0.0", "network address"),
            ("10.20.0.255", "broadcast address"),
            ("10.20.0.1", "gateway"),
            ("10.21.0.5", "outside the subnet"),
        ] {
            let error = ipam.allocate("static", "b", &node, lease, Some(ip(address))).await.unwrap_err();
            ensure!(error.to_string().contains(says), "{address}: {error}");
        }
        // Dynamic addresses come from the IP range.
        let b = ipam.allocate("static", "b", &node, lease, None).await?;
        let range: ipnet::Ipv4Net = "10.20.0.128/25".parse()?;
        ensure!(range.contains(&b), "dynamic address {b} outside the IP range");
        ensure!(b != held, "{b} was handed out twice");
        // An endpoint asking again gets its address again, not a second one.
        ensure!(ipam.allocate("static", "a", &node, lease, None).await? == ip("10.20.0.5"));
        ensure!(ipam.allocate("static", "a", &node, lease, Some(ip("10.20.0.5"))).await? == ip("10.20.0.5"));
        let moved = ipam.allocate("static", "a", &node, lease, Some(ip("10.20.0.6"))).await.unwrap_err();
        ensure!(matches!(moved, IpamError::EndpointHasAddress { .. }), "{moved}");
        // A network that does not exist is named.
        let missing = ipam.allocate("nope", "z", &node, lease, None).await.unwrap_err();
        ensure!(matches!(missing, IpamError::Network(NetworkError::NotFound { .. })), "{missing}");

        // Inspect: the endpoints by host.
        ensure!(store.keep_alive(dying_lease).await?, "agt02's lease expired too early");
        let view = network::inspect(&store, "static").await?;
        let json = serde_json::to_value(&view)?;
        ensure!(json["subnet"] == "10.20.0.0/24" && json["gateway"] == "10.20.0.1", "{json}");
        ensure!(json["vni"].as_u64() == Some(u64::from(view.network.vni)) && json["scope"] == "global", "{json}");
        let on_agt01: Vec<_> = json["endpoints"]["agt01"].as_array().into_iter().flatten().collect();
        let on_agt02: Vec<_> = json["endpoints"]["agt02"].as_array().into_iter().flatten().collect();
        ensure!(on_agt01.len() == 2 && on_agt02.len() == 2, "{json}");
        ensure!(on_agt01.iter().any(|e| e["endpoint"] == "a" && e["address"] == "10.20.0.5"), "{json}");

        // Removal is refused while endpoints are attached, naming them.
        let refused = network::remove(&store, "static").await.unwrap_err();
        let message = refused.to_string();
        ensure!(matches!(refused, NetworkError::InUse { count: 4, .. }), "{message}");
        ensure!(message.contains("a (10.20.0.5 on agt01)") && message.contains("d (10.20.0.9 on agt02)"), "{message}");

        // Released addresses are free again, and releasing is idempotent.
        let released = ipam.release("static", &Release::Endpoint("a".into())).await?;
        ensure!(released.as_ref().map(|r| r.address) == Some(ip("10.20.0.5")), "{released:?}");
        ensure!(ipam.release("static", &Release::Endpoint("a".into())).await?.is_none());
        ensure!(ipam.allocate("static", "c", &node, lease, Some(ip("10.20.0.5"))).await? == ip("10.20.0.5"));

        // agt02's lease expires: its two addresses come back without anyone releasing them.
        let network_id = view.network.id.clone();
        let started = Instant::now();
        loop {
            let left = ipam::allocations(&store, &network_id).await?;
            if !left.iter().any(|a| a.node == dying_node) {
                break;
            }
            ensure!(started.elapsed() < Duration::from_secs(8), "agt02's addresses outlived its lease: {left:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ensure!(ipam.allocate("static", "f", &node, lease, Some(ip("10.20.0.9"))).await? == ip("10.20.0.9"));
        // Allocating on the expired lease is refused, saying why.
        let gone = ipam.allocate("static", "g", &dying_node, dying_lease, None).await.unwrap_err();
        ensure!(matches!(gone, IpamError::LeaseGone { .. }), "{gone}");
        ensure!(store.list(&format!("v1/ipam/{network_id}/endpoints/g")).await?.entries.is_empty());

        // With everything released the network goes, and then nothing is allocated in it.
        for endpoint in ["b", "c", "f"] {
            ensure!(ipam.release("static", &Release::Endpoint(endpoint.into())).await?.is_some(), "{endpoint}");
        }
        let stale = Ipam::new(store.clone());
        stale.network("static", false).await?;
        let removed = network::remove(&store, "static").await?;
        ensure!(removed.id == network_id);
        ensure!(store.list(&ipam::keys::network(&network_id)).await?.entries.is_empty(), "IPAM keys left");
        let after = ipam.allocate("static", "h", &node, lease, None).await.unwrap_err();
        ensure!(matches!(after, IpamError::Network(NetworkError::NotFound { .. })), "{after}");

        // Created again under the same name: allocators that knew the old one follow.
        let spec = network::NetworkSpec::parse(&request)?;
        let again = network::create(&store, &spec, &network::SubnetPool::default()).await?;
        ensure!(again.id != network_id && again.vni != view.network.vni, "{again:?}");
        let i = ipam.allocate("static", "i", &node, lease, None).await?;
        let released = stale.release("static", &Release::Endpoint("i".into())).await?;
        ensure!(released.map(|r| (r.address, r.network_id)) == Some((i, again.id.clone())), "stale allocator");
        network::remove(&store, "static").await?;
        Ok(())
    })
}
