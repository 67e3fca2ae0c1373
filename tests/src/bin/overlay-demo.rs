//! `cargo xtask demo`: the reference scenario on simulated hosts, printed step by step
//! as a user would see it. Everything it starts is torn down when it ends.

use std::net::Ipv4Addr;

use overlay_tests::{
    ContainerSpec, Lab, cmd,
    datapath::{HostDatapath, full_mesh},
};

fn step(title: &str) {
    println!("\n=== {title}");
}

fn main() -> anyhow::Result<()> {
    step("Simulated hosts (network namespaces on one underlay bridge)");
    let mut lab = Lab::builder("demo")
        .host("store01", "192.168.1.140/24")
        .host("mgr01", "192.168.1.121/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.1.142/24")
        .host("agt03", "192.168.1.143/24")
        .build()?;
    for host in &lab.hosts {
        println!("{:<8} {:<15} netns {}", host.name, host.ip, host.ns);
    }

    step("Overlay network my_network: VNI 4096, subnet 10.0.9.0/24, gateway 10.0.9.1");
    let busybox01 = lab.add_container("agt01", &ContainerSpec::new("busybox01", Ipv4Addr::new(10, 0, 9, 2)))?;
    let busybox02 = lab.add_container("agt02", &ContainerSpec::new("busybox02", Ipv4Addr::new(10, 0, 9, 3)))?;
    let agents = ["agt01", "agt02", "agt03"];
    let mut datapaths = agents.iter().map(|a| HostDatapath::start(lab.host(a))).collect::<Result<Vec<_>, _>>()?;
    full_mesh(&mut datapaths, 4096, Ipv4Addr::new(10, 0, 9, 1), &[(0, &busybox01), (1, &busybox02)])?;
    for c in [&busybox01, &busybox02] {
        println!("{}/{}  {}  eth0 mtu 1450", c.host, c.name, c.ip);
    }

    step("busybox02 (agt02) pings busybox01 (agt01) across hosts");
    let out = cmd::run_in(&busybox02.ns, &["ping", "-c", "3", "-i", "0.2", &busybox01.ip.to_string()])?;
    print!("{out}");

    step("Datapath counters on agt01 (overlay stats)");
    let stats = cmd::run_in(
        &lab.host("agt01").ns,
        &[overlay_tests::bin::overlay_bin()?.to_str().unwrap_or("overlay"), "stats", "--pin-dir", &lab.host("agt01").pin_dir.to_string_lossy()],
    )?;
    print!("{stats}");

    step("Tearing down");
    Ok(())
}
