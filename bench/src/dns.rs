//! `cargo xtask bench`: this project's resolver against Docker's embedded DNS, both
//! answering a container's name to a container on the same host, with the same load
//! generator (tests/src/dns_load.rs), in one run. Docker runs inside a lab namespace
//! with no iptables, masquerading or default bridge (tests/src/docker.rs).

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use anyhow::Context;
use overlay::dns::{self, DnsContainer, DnsEndpoint, DnsNetwork, NameView, Upstreams};
use serde::Serialize;

use overlay_tests::{
    ContainerSpec, Lab, cmd,
    dns_load::{self, LoadConfig, LoadReport},
    docker::{Dockerd, IMAGE},
};

#[derive(Clone, Debug, Serialize)]
pub struct Resolver {
    pub queries: u64,
    pub failed: u64,
    pub queries_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl From<&LoadReport> for Resolver {
    fn from(r: &LoadReport) -> Self {
        Resolver {
            queries: r.answered,
            failed: r.failed,
            queries_per_second: r.queries_per_second,
            p50_ms: r.p50.as_secs_f64() * 1000.0,
            p99_ms: r.p99.as_secs_f64() * 1000.0,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct DnsBench {
    pub ours: Resolver,
    pub docker: Resolver,
    /// ours / docker queries per second.
    pub rate_ratio: f64,
    /// ours / docker p99.
    pub p99_ratio: f64,
}

pub fn run(duration: Duration) -> anyhow::Result<DnsBench> {
    let mut lab = Lab::builder("dnsbench").host("h1", "192.168.1.141/24").build()?;
    let load = LoadConfig { max_duration: duration, max_queries: 2_000_000, ..LoadConfig::new("web") };

    // This project's resolver, serving a container namespace as the agent does.
    let client = lab.add_container("h1", &ContainerSpec::new("cli", Ipv4Addr::new(10, 0, 9, 2)))?;
    let view = NameView::new();
    view.upsert_network(DnsNetwork { name: "net".into(), internal: false })?;
    for (name, ip) in [("web", Ipv4Addr::new(10, 0, 9, 3)), ("cli", client.ip)] {
        let endpoints = vec![DnsEndpoint { network: "net".into(), ip, aliases: vec![] }];
        view.upsert_container(DnsContainer { id: name.into(), name: name.into(), endpoints })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let upstreams = Arc::new(Upstreams::new(Vec::new(), Duration::from_secs(1)));
    let resolver = {
        let _guard = runtime.enter();
        dns::serve_container(&client.ns, "cli", view, upstreams)?
    };
    let ours = dns_load::run(&client.ns, &load)?;
    runtime.block_on(resolver.stop());

    // Docker's embedded DNS on a user-defined bridge network, same host.
    let host = lab.host("h1").clone();
    let dockerd = Dockerd::start(&host, host.ip)?;
    dockerd.docker(&["network", "create", "--driver", "bridge", "--subnet", "10.0.8.0/24", "benchnet"])?;
    for name in ["web", "cli"] {
        dockerd.docker(&["run", "-d", "--net", "benchnet", "--name", name, IMAGE, "sleep", "3600"])?;
    }
    let pid = dockerd.docker(&["inspect", "-f", "{{.State.Pid}}", "cli"])?;
    let ns = format!("{}-docker-cli", lab.prefix);
    cmd::run(&["ip", "netns", "attach", &ns, pid.trim()]).context("naming the Docker container's namespace")?;
    let docker = dns_load::run(&ns, &load);
    dockerd.remove_all_containers();
    let docker = docker?;

    let (ours, docker) = (Resolver::from(&ours), Resolver::from(&docker));
    Ok(DnsBench {
        rate_ratio: ours.queries_per_second / docker.queries_per_second,
        p99_ratio: ours.p99_ms / docker.p99_ms,
        ours,
        docker,
    })
}
