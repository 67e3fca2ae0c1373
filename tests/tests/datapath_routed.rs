//! Hosts on two L3 subnets joined by a router: the VTEP's next hop is the router.

use std::net::Ipv4Addr;

use overlay_common::{Direction, Reason};
use overlay_tests::{
    ContainerSpec, Lab,
    datapath::{HostDatapath, full_mesh},
    traffic,
};

#[test]
fn routed_underlay() -> anyhow::Result<()> {
    let mut lab = Lab::builder("routed").host("h1", "192.168.1.141/24").host("h2", "192.168.2.142/24").build()?;
    assert!(lab.router.is_some());
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(lab.host("h1"))?, HostDatapath::start(lab.host("h2"))?];
    full_mesh(&mut dps, 300, Ipv4Addr::new(10, 0, 9, 1), &[(0, &c1), (1, &c2)])?;

    traffic::ping_ok(&c1.ns, c2.ip, 3)?;
    traffic::ping_ok(&c2.ns, c1.ip, 3)?;
    let tcp = traffic::iperf3(&lab, &c2.ns, c2.ip, &c1.ns, 5201, &["-n", "100M"])?;
    assert!(traffic::tcp_bits_per_second(&tcp)? > 100e6);
    let c = dps[0].counters()?;
    assert!(c.packets(Reason::Encapsulated, Direction::FromContainer) > 0);
    assert_eq!(c.packets(Reason::NoRouteToVtep, Direction::FromContainer), 0);
    Ok(())
}
