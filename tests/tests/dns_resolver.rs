//! The embedded resolver served at 127.0.0.11 inside container namespaces, asked with
//! `dig` (and glibc, ping) from inside them. The view is built by hand, as the agent
//! would from the store. Nothing is forwarded here (no upstream): see dns_forwarding.

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use overlay::dns::{self, DnsContainer, DnsEndpoint, DnsNetwork, NameView, Resolver, Upstreams};
use overlay_tests::{
    ContainerSpec, Lab, cmd,
    datapath::{HostDatapath, full_mesh},
    dns::{NetnsResolvConf, dig, spray_udp},
    dns_load::{self, LoadConfig},
};
use rand::Rng;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn record(id: &str, network: &str, address: &str, aliases: &[&str]) -> DnsContainer {
    DnsContainer {
        id: id.into(),
        name: id.into(),
        endpoints: vec![DnsEndpoint {
            network: network.into(),
            ip: ip(address),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }],
    }
}

/// blue: c1, c2 and c4 (c2 and c4 share the alias "web"); red: c3 (also "web").
fn view() -> anyhow::Result<NameView> {
    let view = NameView::new();
    view.upsert_network(DnsNetwork { name: "blue".into(), internal: false })?;
    view.upsert_network(DnsNetwork { name: "red".into(), internal: false })?;
    view.upsert_container(record("c1", "blue", "10.0.9.2", &[]))?;
    view.upsert_container(record("c2", "blue", "10.0.9.3", &["web"]))?;
    view.upsert_container(record("c4", "blue", "10.0.9.4", &["web"]))?;
    view.upsert_container(record("c3", "red", "10.0.10.2", &["web"]))?;
    Ok(view)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Serves container `id` (namespace `ns`) from `view` without upstreams.
fn serve(rt: &tokio::runtime::Runtime, ns: &str, id: &str, view: &NameView) -> anyhow::Result<Resolver> {
    let _guard = rt.enter();
    Ok(dns::serve(dns::bind_in_netns(ns)?, id, view.clone(), Arc::new(Upstreams::none()))?)
}

#[test]
fn names_ptr_tcp_and_isolation() -> anyhow::Result<()> {
    let mut lab = Lab::builder("dnsnames").host("h1", "192.168.1.141/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", ip("10.0.9.2")))?;
    let c3 = lab.add_container("h1", &ContainerSpec::new("c3", ip("10.0.10.2")))?;
    let view = view()?;
    let rt = runtime()?;
    let _r1 = serve(&rt, &c1.ns, "c1", &view)?;
    let _r3 = serve(&rt, &c3.ns, "c3", &view)?;

    let a = dig(&c1.ns, &["c2"])?;
    assert_eq!((a.status.as_str(), a.addresses()?), ("NOERROR", vec![ip("10.0.9.3")]), "{}", a.output);
    assert!(a.has_flag("aa") && a.has_flag("ra"), "{:?}", a.flags);
    assert_eq!(dig(&c1.ns, &["C2.Blue"])?.addresses()?, [ip("10.0.9.3")], "NAME.NETWORK, any case");
    assert_eq!(dig(&c1.ns, &["+tcp", "c2"])?.addresses()?, [ip("10.0.9.3")], "over TCP");
    let ptr = dig(&c1.ns, &["-x", "10.0.9.3"])?;
    assert_eq!((ptr.status.as_str(), ptr.answers.clone()), ("NOERROR", vec!["c2.blue.".to_owned()]), "{}", ptr.output);
    let aaaa = dig(&c1.ns, &["c2", "AAAA"])?;
    assert_eq!((aaaa.status.as_str(), aaaa.answers.len()), ("NOERROR", 0));

    // An alias shared by two containers: both addresses, in turns.
    let mut firsts = Vec::new();
    for _ in 0..4 {
        let web = dig(&c1.ns, &["web"])?;
        assert_eq!(web.sorted_addresses()?, [ip("10.0.9.3"), ip("10.0.9.4")], "blue's web only");
        firsts.push(web.addresses()?[0]);
    }
    assert!(firsts.contains(&ip("10.0.9.3")) && firsts.contains(&ip("10.0.9.4")), "not rotated: {firsts:?}");

    // Isolation: red's names do not resolve on blue and the other way round.
    for (ns, args) in [
        (&c1.ns, vec!["c3"]),
        (&c1.ns, vec!["c3.red"]),
        (&c1.ns, vec!["-x", "10.0.10.2"]),
        (&c1.ns, vec!["nobody.blue"]),
        (&c3.ns, vec!["c2"]),
        (&c3.ns, vec!["c1.blue"]),
    ] {
        let answer = dig(ns, &args)?;
        assert_eq!(answer.status, "NXDOMAIN", "{args:?} from {ns}: {}", answer.output);
    }
    assert_eq!(dig(&c3.ns, &["web"])?.addresses()?, [ip("10.0.10.2")]);

    // Without upstreams, other names fail rather than hang.
    assert_eq!(dig(&c1.ns, &["name.example"])?.status, "SERVFAIL");
    Ok(())
}

#[test]
fn removal_and_stop_take_effect_at_once() -> anyhow::Result<()> {
    let mut lab = Lab::builder("dnsrm").host("h1", "192.168.1.141/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", ip("10.0.9.2")))?;
    let view = view()?;
    let rt = runtime()?;
    let resolver = serve(&rt, &c1.ns, "c1", &view)?;

    assert_eq!(dig(&c1.ns, &["c2"])?.addresses()?, [ip("10.0.9.3")]);
    assert!(view.remove_container("c2"));
    let gone = dig(&c1.ns, &["c2"])?;
    assert_eq!((gone.status.as_str(), gone.answers.len()), ("NXDOMAIN", 0), "{}", gone.output);
    assert_eq!(dig(&c1.ns, &["web"])?.addresses()?, [ip("10.0.9.4")]);
    view.upsert_container(record("c5", "blue", "10.0.9.5", &[]))?;
    assert_eq!(dig(&c1.ns, &["c5"])?.addresses()?, [ip("10.0.9.5")], "a new container resolves at once");

    rt.block_on(resolver.stop());
    let started = Instant::now();
    assert!(dig(&c1.ns, &["c5"]).is_err(), "a stopped resolver must not answer");
    assert!(dig(&c1.ns, &["+tcp", "c5"]).is_err());
    assert!(started.elapsed() < Duration::from_secs(3), "refused at once, not timed out");
    Ok(())
}

#[test]
fn truncation_over_udp_and_full_answer_over_tcp() -> anyhow::Result<()> {
    let mut lab = Lab::builder("dnstc").host("h1", "192.168.1.141/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", ip("10.0.9.2")))?;
    let view = view()?;
    for i in 0..40u8 {
        view.upsert_container(record(&format!("m{i}"), "blue", &format!("10.0.20.{}", i + 1), &["many"]))?;
    }
    let rt = runtime()?;
    let _r1 = serve(&rt, &c1.ns, "c1", &view)?;

    let cut = dig(&c1.ns, &["+noedns", "+ignore", "many"])?;
    assert!(cut.has_flag("tc") && cut.answers.is_empty(), "40 A records exceed 512 bytes: {}", cut.output);
    let retried = dig(&c1.ns, &["+noedns", "many"])?;
    assert_eq!(retried.addresses()?.len(), 40, "dig retries over TCP: {}", retried.output);
    assert!(retried.output.contains("Truncated, retrying in TCP mode"), "{}", retried.output);
    assert_eq!(dig(&c1.ns, &["+tcp", "+noedns", "many"])?.addresses()?.len(), 40);
    let edns = dig(&c1.ns, &["+bufsize=1232", "+ignore", "many"])?;
    assert!(!edns.has_flag("tc") && edns.answers.len() == 40, "fits in EDNS's 1232 bytes: {}", edns.output);
    Ok(())
}

#[test]
fn garbage_does_not_stop_the_server() -> anyhow::Result<()> {
    let mut lab = Lab::builder("dnsjunk").host("h1", "192.168.1.141/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", ip("10.0.9.2")))?;
    let view = view()?;
    let rt = runtime()?;
    let _r1 = serve(&rt, &c1.ns, "c1", &view)?;

    let mut rng = rand::thread_rng();
    let seeds: Vec<Vec<u8>> = (0..3000)
        .map(|i| match i % 3 {
            0 => (0..rng.gen_range(0..700)).map(|_| rng.r#gen()).collect(),
            // A query header claiming 65535 questions made of pointer loops.
            1 => [&[0, 1, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0][..], &[0xc0, 12, 0, 1, 0, 1].repeat(50)].concat(),
            _ => [&[0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0][..], &[0xff; 300][..]].concat(),
        })
        .collect();
    spray_udp(&c1.ns, seeds.len(), |i| seeds[i].clone())?;
    // TCP: a connection announcing 65535 bytes and sending ten, another sending junk.
    let _stalled = overlay::netns::run_in(&c1.ns, || -> anyhow::Result<Vec<std::net::TcpStream>> {
        use std::io::Write;
        let mut half = std::net::TcpStream::connect((dns::RESOLVER_IP, 53))?;
        half.write_all(&[0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])?;
        let mut junk = std::net::TcpStream::connect((dns::RESOLVER_IP, 53))?;
        junk.write_all(&[0, 40])?;
        junk.write_all(&[0xc0; 40])?;
        Ok(vec![half, junk])
    })??;

    let started = Instant::now();
    assert_eq!(dig(&c1.ns, &["c2"])?.addresses()?, [ip("10.0.9.3")]);
    assert_eq!(dig(&c1.ns, &["+tcp", "c2"])?.addresses()?, [ip("10.0.9.3")]);
    assert!(started.elapsed() < Duration::from_secs(4), "answers stalled: {:?}", started.elapsed());
    Ok(())
}

/// Step 9 of the scenario: inside c1, `ping c2` resolves c2 (on another host) through
/// the container's resolv.conf and gets replies over the overlay.
#[test]
fn ping_by_name_across_hosts() -> anyhow::Result<()> {
    const VNI: u32 = 90;
    let mut lab = Lab::builder("dnsping").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("busybox01", ip("10.0.9.2")))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("busybox02", ip("10.0.9.3")))?;
    let mut dps = vec![HostDatapath::start(lab.host("h1"))?, HostDatapath::start(lab.host("h2"))?];
    full_mesh(&mut dps, VNI, ip("10.0.9.1"), &[(0, &c1), (1, &c2)])?;

    let view = NameView::new();
    view.upsert_network(DnsNetwork { name: "my_network".into(), internal: false })?;
    view.upsert_container(record("busybox01", "my_network", "10.0.9.2", &[]))?;
    view.upsert_container(record("busybox02", "my_network", "10.0.9.3", &[]))?;
    let rt = runtime()?;
    let _r2 = serve(&rt, &c2.ns, "busybox02", &view)?;
    let _resolv_conf = NetnsResolvConf::write(&c2.ns)?;

    let hosts = cmd::run_in(&c2.ns, &["getent", "hosts", "busybox01"])?;
    assert!(hosts.starts_with("10.0.9.2"), "glibc through resolv.conf: {hosts}");
    let lookup = cmd::run_in(&c2.ns, &["nslookup", "busybox01.my_network"])?;
    assert!(lookup.contains("Address: 10.0.9.2"), "{lookup}");
    let ping = cmd::run_in(&c2.ns, &["ping", "-c", "3", "-i", "0.2", "-W", "2", "busybox01"])?;
    assert!(ping.contains("PING busybox01 (10.0.9.2)") && ping.contains("3 received"), "{ping}");
    Ok(())
}

/// The benchmark's load generator against this resolver: bounded, every query answered.
#[test]
fn load_generator_measures_the_resolver() -> anyhow::Result<()> {
    let mut lab = Lab::builder("dnsload").host("h1", "192.168.1.141/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", ip("10.0.9.2")))?;
    let view = view()?;
    let rt = runtime()?;
    let _r1 = serve(&rt, &c1.ns, "c1", &view)?;

    let mut config = LoadConfig::new("web");
    config.max_queries = 20_000;
    config.max_duration = Duration::from_secs(5);
    let report = dns_load::run(&c1.ns, &config)?;
    eprintln!("{report:?}");
    assert_eq!(report.answered + report.failed, report.sent, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.sent == 20_000 || report.elapsed >= Duration::from_secs(5), "{report:?}");
    assert!(report.p50 <= report.p99 && report.p99 > Duration::ZERO && report.queries_per_second > 100.0, "{report:?}");
    Ok(())
}
