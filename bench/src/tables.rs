//! Scale figures of the datapath tables, for `cargo xtask bench`.

use std::{net::Ipv4Addr, time::Instant};

use overlay::datapath::RemoteEndpointSpec;
use serde::Serialize;

use overlay_tests::{Lab, datapath::HostDatapath};

#[derive(Clone, Debug, Serialize)]
pub struct TableScale {
    pub endpoints: u32,
    pub program_seconds: f64,
    pub remove_seconds: f64,
    pub endpoints_per_second: f64,
}

/// Programs `count` remote endpoints into one host's datapath (as the agent does after a
/// store listing), then removes them, and times both.
pub fn remote_endpoints(count: u32) -> anyhow::Result<TableScale> {
    let lab = Lab::builder("scale").host("h1", "192.168.1.141/24").build()?;
    let mut dp = HostDatapath::start(lab.host("h1"))?;
    dp.add_network(4096, Ipv4Addr::new(10, 0, 0, 1))?;
    let specs: Vec<RemoteEndpointSpec> = (0..count)
        .map(|i| {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + i);
            RemoteEndpointSpec {
                vni: 4096,
                ip,
                mac: overlay::container::mac_for(ip),
                vtep: Ipv4Addr::new(192, 168, 1, 142 + (i % 100) as u8),
            }
        })
        .collect();
    let started = Instant::now();
    for spec in &specs {
        dp.datapath.add_remote_endpoint(*spec)?;
    }
    let program_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(dp.datapath.remote_endpoints()?.len() == count as usize, "not every endpoint was programmed");
    let started = Instant::now();
    for spec in &specs {
        dp.datapath.remove_remote_endpoint(spec.vni, spec.ip)?;
    }
    let remove_seconds = started.elapsed().as_secs_f64();
    Ok(TableScale {
        endpoints: count,
        program_seconds,
        remove_seconds,
        endpoints_per_second: f64::from(count) / program_seconds,
    })
}
