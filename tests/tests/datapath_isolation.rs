//! Two networks with the same subnet and different VNIs stay apart, and destinations
//! that are not in a container's network are dropped and counted.

use std::net::Ipv4Addr;

use overlay_common::{Direction, Reason};
use overlay_tests::{ContainerSpec, Lab, cmd, datapath::HostDatapath, packets::rx_packets, traffic};

const RED: u32 = 100;
const BLUE: u32 = 200;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);

#[test]
fn same_subnet_different_vni_isolated() -> anyhow::Result<()> {
    let mut lab = Lab::builder("iso").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let ip = |d| Ipv4Addr::new(10, 0, 9, d);
    // The same address on both networks, on h1; distinct MACs to tell them apart.
    let mut red1 = ContainerSpec::new("red1", ip(2));
    red1.mac[0] = 0x06;
    let mut blue1 = ContainerSpec::new("blue1", ip(2));
    blue1.mac[0] = 0x0a;
    let red1 = lab.add_container("h1", &red1)?;
    let blue1 = lab.add_container("h1", &blue1)?;
    let red2 = lab.add_container("h2", &ContainerSpec::new("red2", ip(3)))?;
    let blue2 = lab.add_container("h2", &ContainerSpec::new("blue2", ip(4)))?;

    let (h1, h2) = (lab.host("h1").ip, lab.host("h2").ip);
    let mut dp1 = HostDatapath::start(lab.host("h1"))?;
    let mut dp2 = HostDatapath::start(lab.host("h2"))?;
    for (vni, local1, remote2) in [(RED, &red1, &red2), (BLUE, &blue1, &blue2)] {
        dp1.add_network(vni, GATEWAY)?;
        dp2.add_network(vni, GATEWAY)?;
        dp1.add_local(vni, local1)?;
        dp2.add_local(vni, remote2)?;
        dp1.add_remote(vni, remote2, h2)?;
        dp2.add_remote(vni, local1, h1)?;
    }
    dp1.add_member(h2)?;
    dp2.add_member(h1)?;

    // blue2 reaches 10.0.9.2 on its own network: blue1 receives, red1 does not.
    let (red_rx, blue_rx) = (rx_packets(&red1.ns)?, rx_packets(&blue1.ns)?);
    traffic::ping_ok(&blue2.ns, ip(2), 5)?;
    assert!(rx_packets(&blue1.ns)? >= blue_rx + 5, "blue1 did not get blue2's pings");
    assert_eq!(rx_packets(&red1.ns)?, red_rx, "red1 received traffic of the blue network");

    // red2 cannot reach blue2's address: ARP is not answered across networks...
    let before = dp2.counters()?;
    let lost = traffic::ping(&red2.ns, blue2.ip, 2, "0.2")?;
    assert_eq!(lost.received, 0, "red2 reached a container of the blue network");
    let after = dp2.counters()?.since(&before);
    assert!(after.packets(Reason::ArpNotAnswered, Direction::FromContainer) >= 1);

    // ...and with a forged neighbour entry the packets are dropped as unknown destination.
    let mac = "02:42:0a:00:09:04";
    cmd::ip(&red2.ns, &["neigh", "replace", &blue2.ip.to_string(), "lladdr", mac, "dev", "eth0", "nud", "permanent"])?;
    let before = dp2.counters()?;
    let blue_rx = rx_packets(&blue2.ns)?;
    let lost = traffic::ping(&red2.ns, blue2.ip, 3, "0.2")?;
    assert_eq!(lost.received, 0);
    let after = dp2.counters()?.since(&before);
    assert_eq!(after.packets(Reason::UnknownDestination, Direction::FromContainer), 3);
    assert_eq!(rx_packets(&blue2.ns)?, blue_rx);
    Ok(())
}
