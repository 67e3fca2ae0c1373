//! Control-plane figures for `cargo xtask bench`, measured on real agents:
//! - convergence: a container started on agt01, from its endpoint's appearance in the
//!   store to agt02's datapath holding it (what makes it reachable), and from the
//!   operator's `overlay run` to the same moment;
//! - scale: 10,000 remote endpoints of another node written to the store, the time
//!   until agt02 has programmed them all, and agt02's agent's resident memory then.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use overlay::{
    datapath::PinnedRemotes,
    endpoint::{self, EndpointRecord},
    store::{Op, Transact, WatchEvent, WatchUpdate, watch_prefix},
};
use serde::Serialize;

use overlay_tests::{
    Lab,
    cluster::{self, Scratch},
    etcd::Etcd,
    ipam::register_node,
};

#[derive(Clone, Debug, Serialize)]
pub struct Convergence {
    pub starts: usize,
    /// Endpoint published in the store → programmed in the peer's datapath.
    pub publish_to_peer_ms: Quantiles,
    /// `overlay run` started → programmed in the peer's datapath.
    pub run_to_peer_ms: Quantiles,
}

#[derive(Clone, Debug, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Quantiles {
    fn of(mut values: Vec<f64>) -> Quantiles {
        values.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1];
        Quantiles { p50: at(0.5), p99: at(0.99), max: *values.last().unwrap_or(&f64::NAN) }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentScale {
    pub endpoints: usize,
    /// Writing all endpoints to the store (batched transactions).
    pub store_write_seconds: f64,
    /// Last write → the peer's datapath holds every endpoint.
    pub program_after_last_write_seconds: f64,
    /// First write → the peer's datapath holds every endpoint.
    pub total_seconds: f64,
    pub agent_rss_mib: f64,
    /// The same agent before the endpoints were written (one local container).
    pub agent_rss_before_mib: f64,
}

fn vni_of(lab: &Lab, store: &str, network: &str) -> anyhow::Result<u32> {
    let json: serde_json::Value =
        serde_json::from_str(&cluster::overlay_ok(lab, "agt01", store, &["network", "inspect", network])?)?;
    json["vni"].as_u64().map(|v| v as u32).context("no VNI in network inspect")
}

/// The resident memory of process `pid` (`VmRSS` in /proc/PID/status), in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    Ok(kib / 1024.0)
}

pub fn run(starts: usize, endpoints: usize) -> anyhow::Result<(Convergence, AgentScale)> {
    let lab = Lab::builder("agbench")
        .host("store01", "192.168.1.140/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.1.142/24")
        .build()?;
    let scratch = Scratch::new("agbench")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let url = etcd.url("bench");
    let mut agents = Vec::new();
    for name in ["agt01", "agt02"] {
        agents.push(cluster::start_container_agent(&scratch, &url, &lab, name)?);
    }
    let hosts = [lab.host("agt01"), lab.host("agt02")];
    cluster::wait_for_list(lab.host("store01"), &url, &hosts, Duration::from_secs(20))?;

    cluster::overlay_ok(&lab, "agt01", &url, &["network", "create", "--subnet", "10.20.0.0/22", "bench1"])?;
    cluster::overlay_ok(&lab, "agt01", &url, &["network", "create", "--subnet", "10.30.0.0/16", "bench2"])?;
    let vni1 = vni_of(&lab, &url, "bench1")?;
    // agt02 needs a container on both networks, or it programs nothing for them.
    cluster::overlay_ok(
        &lab,
        "agt02",
        &url,
        &["run", "--name", "probe", "--net", "bench1", "--net", "bench2", "--node", "agt02", "--", "sleep", "3600"],
    )?;
    let remotes = PinnedRemotes::open(&lab.host("agt02").pin_dir)?;
    let pid = agents[1].pid().context("agt02's agent is not running")?;
    // The store is only reachable inside the lab: the runtime's threads are made by a
    // thread in store01's namespace, and inherit it.
    let result = overlay::netns::run_in(&lab.host("store01").ns, || {
        measure(&lab, &url, &remotes, vni1, pid, starts, endpoints)
    })?;
    drop(etcd);
    drop(agents);
    result
}

fn measure(
    lab: &Lab,
    url: &str,
    remotes: &PinnedRemotes,
    vni1: u32,
    pid: u32,
    starts: usize,
    endpoints: usize,
) -> anyhow::Result<(Convergence, AgentScale)> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let config = overlay::store::StoreConfig::new(url, &overlay::store::TlsFiles::default(), None, None)?;
    let store = runtime.block_on(overlay::store::connect(
        &config,
        Some(Duration::from_secs(10)),
        &overlay::shutdown::Shutdown::never(),
    ))?;
    // When each endpoint first appears in the store, as seen from here.
    let published: Arc<Mutex<HashMap<Ipv4Addr, Instant>>> = Arc::default();
    let shutdown = overlay::shutdown::Shutdown::never();
    let mut watch = runtime.block_on(async { watch_prefix(store.clone(), endpoint::ENDPOINTS.to_owned(), shutdown) });
    let seen = published.clone();
    runtime.spawn(async move {
        while let Some(update) = watch.recv().await {
            if let WatchUpdate::Event(WatchEvent::Put(entry)) = update
                && let Ok(record) = serde_json::from_slice::<EndpointRecord>(&entry.value)
            {
                seen.lock().unwrap().entry(record.ip).or_insert_with(Instant::now);
            }
        }
    });

    let (mut publish_to_peer, mut run_to_peer) = (Vec::new(), Vec::new());
    for i in 0..starts {
        let name = format!("c{i}");
        let started = Instant::now();
        let (_, ip) = cluster::run_container(lab, url, "agt01", &name, "bench1", &[])?;
        let deadline = started + Duration::from_secs(10);
        while !remotes.contains(vni1, ip) {
            if Instant::now() > deadline {
                bail!("{name} ({ip}) never reached agt02's datapath");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let programmed = Instant::now();
        let publish =
            published.lock().unwrap().get(&ip).copied().context("the endpoint was never seen in the store")?;
        publish_to_peer.push(programmed.saturating_duration_since(publish).as_secs_f64() * 1000.0);
        run_to_peer.push(programmed.duration_since(started).as_secs_f64() * 1000.0);
    }
    let convergence = Convergence {
        starts,
        publish_to_peer_ms: Quantiles::of(publish_to_peer),
        run_to_peer_ms: Quantiles::of(run_to_peer),
    };

    // Scale: endpoints of a node that runs no agent (its lease is kept by the store).
    let before = remotes.len();
    let rss_before = rss_mib(pid)?;
    let scale = runtime.block_on(async {
        let (node, lease) =
            register_node(&store, "ghost", Ipv4Addr::new(192, 168, 1, 199), Duration::from_secs(600)).await?;
        let network_id = overlay::network::find(&store, "bench2").await?.id;
        let first = Instant::now();
        for chunk in (0..endpoints).collect::<Vec<_>>().chunks(100) {
            let ops = chunk
                .iter()
                .map(|i| {
                    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 30, 1, 0)) + *i as u32);
                    let record = EndpointRecord {
                        id: format!("{:064x}", i + 1),
                        network_id: network_id.clone(),
                        node_id: node.clone(),
                        container: format!("ghost{i}"),
                        aliases: vec![],
                        ip,
                        mac: overlay::container::mac_for(ip),
                    };
                    Op::Put {
                        key: endpoint::key(&network_id, &record.id),
                        value: serde_json::to_vec(&record).unwrap_or_default(),
                        lease: Some(lease),
                    }
                })
                .collect();
            store.txn(vec![], ops, vec![]).await?;
        }
        let last_write = Instant::now();
        let deadline = last_write + Duration::from_secs(60);
        while remotes.len() < before + endpoints {
            if Instant::now() > deadline {
                bail!("agt02 programmed {} of {endpoints} endpoints in 60 s", remotes.len() - before);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let done = Instant::now();
        anyhow::Ok(AgentScale {
            endpoints,
            store_write_seconds: last_write.duration_since(first).as_secs_f64(),
            program_after_last_write_seconds: done.duration_since(last_write).as_secs_f64(),
            total_seconds: done.duration_since(first).as_secs_f64(),
            agent_rss_mib: rss_mib(pid)?,
            agent_rss_before_mib: rss_before,
        })
    })?;
    Ok((convergence, scale))
}
