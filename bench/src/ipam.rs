//! The IPAM benchmark for `cargo xtask bench`: allocations per second and latency
//! quantiles with concurrent clients on different simulated hosts, against a real etcd
//! in a lab of its own.

use std::collections::HashSet;

use anyhow::ensure;
use serde::Serialize;

use overlay_tests::{
    Lab,
    etcd::Etcd,
    ipam::{allocate_concurrently, create_network, quantile_ms, request},
};

/// What one benchmark run measured.
#[derive(Clone, Debug, Serialize)]
pub struct IpamBench {
    pub clients: usize,
    /// Requests each client keeps in flight.
    pub in_flight: usize,
    pub allocations: usize,
    pub seconds: f64,
    pub allocations_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for IpamBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IPAM: {} allocations by {} clients ({} in flight each) in {:.2}s: {:.0} allocations/s, \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.allocations,
            self.clients,
            self.in_flight,
            self.seconds,
            self.allocations_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

/// Builds a lab (store01 and `clients` hosts), starts etcd, creates a /16 network and
/// has every client allocate `per_client` addresses, `in_flight` at a time. Fails if
/// any address was handed out twice.
pub fn run(clients: usize, per_client: usize, in_flight: usize) -> anyhow::Result<IpamBench> {
    ensure!((1..=50).contains(&clients), "1 to 50 clients");
    ensure!(clients * per_client < 65_000, "a /16 holds fewer addresses than that");
    let mut builder = Lab::builder("ipbench").host("store01", "192.168.1.140/24");
    for i in 0..clients {
        builder = builder.host(&format!("h{i:02}"), &format!("192.168.1.{}/24", 150 + i));
    }
    let lab = builder.build()?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let url = etcd.url("bench");
    let hosts: Vec<_> = lab.hosts.iter().filter(|h| h.name != "store01").collect();
    create_network(hosts[0], &url, &request("bench", Some("10.200.0.0/16")))?;
    let run = allocate_concurrently(&hosts, &url, "bench", "b", per_client, in_flight)?;
    let distinct: HashSet<_> = run.allocated.iter().map(|a| a.address).collect();
    ensure!(distinct.len() == run.allocated.len(), "an address was handed out twice");
    let seconds = run.elapsed.as_secs_f64();
    Ok(IpamBench {
        clients,
        in_flight,
        allocations: run.allocated.len(),
        seconds,
        allocations_per_sec: run.allocated.len() as f64 / seconds,
        p50_ms: quantile_ms(&run.allocated, 0.5),
        p99_ms: quantile_ms(&run.allocated, 0.99),
        max_ms: quantile_ms(&run.allocated, 1.0),
    })
}
