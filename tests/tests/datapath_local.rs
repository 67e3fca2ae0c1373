//! Containers on the same host are delivered to each other directly, and the counters
//! match exactly the traffic sent.

use std::net::Ipv4Addr;

use overlay_common::{Direction, Reason};
use overlay_tests::{
    ContainerSpec, Lab,
    datapath::{HostDatapath, full_mesh},
    traffic,
};

const VNI: u32 = 77;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);

#[test]
fn same_host_delivery() -> anyhow::Result<()> {
    let mut lab = Lab::builder("local").host("h1", "192.168.1.141/24").build()?;
    let a = lab.add_container("h1", &ContainerSpec::new("a", Ipv4Addr::new(10, 0, 9, 2)))?;
    let b = lab.add_container("h1", &ContainerSpec::new("b", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(lab.host("h1"))?];
    full_mesh(&mut dps, VNI, GATEWAY, &[(0, &a), (0, &b)])?;

    traffic::ping_ok(&a.ns, b.ip, 5)?;
    let tcp = traffic::iperf3(&lab, &b.ns, b.ip, &a.ns, 5201, &["-n", "100M"])?;
    assert!(traffic::tcp_bits_per_second(&tcp)? > 100e6);

    let c = dps[0].counters()?;
    assert!(c.packets(Reason::DeliveredLocally, Direction::FromContainer) >= 10);
    assert_eq!(c.total_packets(Reason::Encapsulated), 0, "same-host traffic must not be encapsulated");
    Ok(())
}

#[test]
fn counters_match_traffic() -> anyhow::Result<()> {
    let mut lab = Lab::builder("count").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(lab.host("h1"))?, HostDatapath::start(lab.host("h2"))?];
    full_mesh(&mut dps, VNI, GATEWAY, &[(0, &c1), (1, &c2)])?;
    let before = [dps[0].counters()?, dps[1].counters()?];

    const PINGS: u64 = 10;
    // 56 data bytes: 98-byte frames from the container, 148 bytes on the underlay.
    traffic::ping_ok(&c1.ns, c2.ip, PINGS as u32)?;
    let h1 = dps[0].counters()?.since(&before[0]);
    let h2 = dps[1].counters()?.since(&before[1]);

    for (host, c) in [("h1", &h1), ("h2", &h2)] {
        let encap = c.get(Reason::Encapsulated, Direction::FromContainer);
        let decap = c.get(Reason::Decapsulated, Direction::FromUnderlay);
        assert_eq!((encap.packets, encap.bytes), (PINGS, PINGS * 98), "{host} encapsulated");
        assert_eq!((decap.packets, decap.bytes), (PINGS, PINGS * 148), "{host} decapsulated");
        let drops: u64 = c.nonzero().filter(|(r, _, _)| r.is_drop()).map(|(_, _, c)| c.packets).sum();
        assert_eq!(drops, 0, "{host} dropped packets: {c:?}");
        let arp = c.packets(Reason::ArpAnswered, Direction::FromContainer);
        assert!((1..=2).contains(&arp), "{host} answered {arp} ARP requests");
        let net = c.by_network[&VNI];
        assert_eq!(net.from_container_packets, PINGS + arp, "{host} network counter");
        assert_eq!(net.from_underlay_packets, PINGS, "{host} network counter");
    }
    Ok(())
}
