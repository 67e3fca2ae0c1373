//! The datapath keeps forwarding when the process that loaded it is gone, and a new
//! load adopts the pinned maps and replaces the programs in place.

use std::net::Ipv4Addr;

use overlay_common::{Direction, Reason};
use overlay_tests::{
    ContainerSpec, Lab,
    datapath::{HostDatapath, full_mesh},
    traffic,
};

#[test]
fn pinned_datapath_outlives_its_loader() -> anyhow::Result<()> {
    let mut lab = Lab::builder("pin").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 9, 3)))?;
    {
        let mut dps = vec![HostDatapath::start(lab.host("h1"))?, HostDatapath::start(lab.host("h2"))?];
        full_mesh(&mut dps, 11, Ipv4Addr::new(10, 0, 9, 1), &[(0, &c1), (1, &c2)])?;
        traffic::ping_ok(&c1.ns, c2.ip, 2)?;
    } // every userspace handle is dropped here

    traffic::ping_ok(&c1.ns, c2.ip, 3)?;

    // Loading again adopts the maps (the endpoints are still there, counters kept)...
    let mut dp1 = HostDatapath::start(lab.host("h1"))?;
    let kept = dp1.counters()?;
    assert!(kept.packets(Reason::Encapsulated, Direction::FromContainer) >= 5);
    assert_eq!(dp1.datapath.remote_endpoints()?.len(), 1);
    // ...and re-attaching to a container replaces its program in place.
    dp1.add_local(11, &c1)?;
    traffic::ping_ok(&c1.ns, c2.ip, 3)?;
    assert!(dp1.counters()?.since(&kept).packets(Reason::Encapsulated, Direction::FromContainer) >= 3);

    // Unpinning removes the datapath: nothing is forwarded any more.
    dp1.datapath.unpin_all()?;
    let after = traffic::ping(&c1.ns, c2.ip, 2, "0.2")?;
    assert_eq!(after.received, 0, "the datapath still forwarded after unpin_all");
    Ok(())
}
