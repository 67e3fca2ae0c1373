//! Forwarding names that are not containers. The resolver's tasks run on a runtime
//! whose threads are in host h1's namespace (as the agent's are in its host's), and the
//! upstream is a small server of the test's own in host h2: upstream queries must leave
//! from h1 over the lab's underlay, never from the container (which has no route out).

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use overlay::{
    dns::{self, DnsContainer, DnsEndpoint, DnsNetwork, NameView, Upstreams},
    netns,
};
use overlay_tests::{
    ContainerSpec, Lab, cmd,
    dns::{FakeUpstream, dig},
};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn record(id: &str, network: &str, address: &str) -> DnsContainer {
    DnsContainer {
        id: id.into(),
        name: id.into(),
        endpoints: vec![DnsEndpoint { network: network.into(), ip: ip(address), aliases: Vec::new() }],
    }
}

#[test]
fn forwards_from_the_host_namespace() -> anyhow::Result<()> {
    let mut lab = Lab::builder("dnsfwd").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", ip("10.0.9.2")))?;
    let vault = lab.add_container("h1", &ContainerSpec::new("vault", ip("10.0.11.2")))?;
    let (h1, h2) = (lab.host("h1").clone(), lab.host("h2").clone());
    let upstream_addr = SocketAddr::from((h2.ip, 53));

    // The host's resolv.conf as the agent would read it (a file of the test's own).
    let resolv_conf = std::env::temp_dir().join(format!("{}-resolv.conf", lab.prefix));
    std::fs::write(&resolv_conf, format!("search lab.test\nnameserver {}\n", h2.ip))?;
    let upstreams = Upstreams::from_resolv_conf(&resolv_conf, Duration::from_secs(1));
    std::fs::remove_file(&resolv_conf)?;
    let upstreams = Arc::new(upstreams?);
    assert_eq!(upstreams.servers(), [upstream_addr]);

    let view = NameView::new();
    view.upsert_network(DnsNetwork { name: "blue".into(), internal: false })?;
    view.upsert_network(DnsNetwork { name: "secret".into(), internal: true })?;
    view.upsert_container(record("c1", "blue", "10.0.9.2"))?;
    view.upsert_container(record("vault", "secret", "10.0.11.2"))?;

    let mut table = HashMap::new();
    table.insert("example.test.".to_owned(), vec![ip("192.0.2.10")]);
    table.insert("big.test.".to_owned(), (1..=100).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect());

    netns::run_in(&h1.ns, || -> anyhow::Result<()> {
        // Built on this thread: the runtime's threads, and the sockets its tasks make,
        // are in h1's namespace.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let _guard = rt.enter();
        let upstream = FakeUpstream::start(&h2.ns, upstream_addr, table)?;
        let _r1 = dns::serve(dns::bind_in_netns(&c1.ns)?, "c1", view.clone(), upstreams.clone())?;
        let _rv = dns::serve(dns::bind_in_netns(&vault.ns)?, "vault", view.clone(), upstreams.clone())?;

        // The container itself cannot reach the upstream.
        assert!(cmd::run_in(&c1.ns, &["dig", &format!("@{}", h2.ip), "+tries=1", "+time=1", "example.test"]).is_err());

        let a = dig(&c1.ns, &["example.test"])?;
        assert_eq!((a.status.as_str(), a.addresses()?), ("NOERROR", vec![ip("192.0.2.10")]), "{}", a.output);
        assert!(!a.has_flag("aa"), "a forwarded answer is not authoritative");
        let received = upstream.received();
        assert_eq!(received.len(), 1, "{received:?}");
        assert_eq!(received[0].from.ip(), h1.ip, "upstream queries leave from the host namespace");
        assert_eq!((received[0].name.as_str(), received[0].tcp), ("example.test.", false));

        let tcp = dig(&c1.ns, &["+tcp", "EXAMPLE.test"])?;
        assert_eq!(tcp.addresses()?, [ip("192.0.2.10")]);
        assert!(upstream.received().last().unwrap().tcp, "a TCP client is forwarded over TCP");

        // 100 records: truncated by the upstream over UDP, fetched over TCP, truncated
        // again for the UDP client, which retries over TCP.
        let big = dig(&c1.ns, &["big.test"])?;
        assert_eq!(big.addresses()?.len(), 100, "{}", big.output);
        let big_queries: Vec<bool> =
            upstream.received().iter().filter(|r| r.name == "big.test.").map(|r| r.tcp).collect();
        assert!(big_queries.contains(&false) && big_queries.contains(&true), "{big_queries:?}");

        let missing = dig(&c1.ns, &["missing.test"])?;
        assert_eq!(missing.status, "NXDOMAIN", "the upstream's answer: {}", missing.output);

        let started = Instant::now();
        let silent = dig(&c1.ns, &["+time=3", "never.silent.test"])?;
        let waited = started.elapsed();
        assert_eq!(silent.status, "SERVFAIL", "{}", silent.output);
        assert!(waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500), "{waited:?}");

        // An internal network does not forward: NXDOMAIN, and the upstream hears nothing.
        let before = upstream.received().len();
        let internal = dig(&vault.ns, &["example.test"])?;
        assert_eq!((internal.status.as_str(), internal.answers.len()), ("NXDOMAIN", 0), "{}", internal.output);
        assert_eq!(dig(&vault.ns, &["vault"])?.addresses()?, [ip("10.0.11.2")], "its own names still resolve");
        assert_eq!(upstream.received().len(), before);

        // Container names are never forwarded either.
        assert_eq!(dig(&c1.ns, &["vault"])?.status, "NXDOMAIN");
        assert_eq!(dig(&c1.ns, &["c1"])?.addresses()?, [ip("10.0.9.2")]);
        assert_eq!(upstream.received().len(), before);
        Ok(())
    })??;
    Ok(())
}
