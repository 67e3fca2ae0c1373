//! Containers on two hosts of one underlay subnet talk through the eBPF datapath.

use std::net::Ipv4Addr;

use overlay_common::{Direction, Reason};
use overlay_tests::{
    ContainerSpec, Lab, cmd,
    datapath::{HostDatapath, full_mesh},
    traffic,
};

const VNI: u32 = 4242;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);

#[test]
fn ping_tcp_and_udp_cross_host() -> anyhow::Result<()> {
    cross_host("xhost", false)
}

/// Hosts that forward IPv4 (every Docker host does): the FIB helper then answers with
/// the next hop's MACs and the encapsulation takes its plain-redirect path.
#[test]
fn ping_tcp_and_udp_cross_host_on_forwarding_hosts() -> anyhow::Result<()> {
    cross_host("xhostfwd", true)
}

fn cross_host(tag: &str, forwarding: bool) -> anyhow::Result<()> {
    let mut lab = Lab::builder(tag).host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    if forwarding {
        for host in ["h1", "h2"] {
            cmd::run_in(&lab.host(host).ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        }
    }
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(lab.host("h1"))?, HostDatapath::start(lab.host("h2"))?];
    full_mesh(&mut dps, VNI, GATEWAY, &[(0, &c1), (1, &c2)])?;

    traffic::ping_ok(&c1.ns, c2.ip, 3)?;
    traffic::ping_ok(&c2.ns, c1.ip, 3)?;

    // 200 MB of TCP: with GSO broken by the encapsulation this would crawl at kbit/s
    // and hit iperf3's timeout.
    let tcp = traffic::iperf3(&lab, &c2.ns, c2.ip, &c1.ns, 5201, &["-n", "200M"])?;
    let bps = traffic::tcp_bits_per_second(&tcp)?;
    assert!(bps > 100e6, "TCP through the overlay only reached {bps} bit/s");

    let udp = traffic::iperf3(&lab, &c1.ns, c1.ip, &c2.ns, 5202, &["-u", "-b", "50M", "-t", "1"])?;
    let received = traffic::udp_packets_per_second(&udp)?;
    assert!(received > 0.0, "no UDP datagram crossed the overlay");

    let h1 = dps[0].counters()?;
    assert!(h1.packets(Reason::Encapsulated, Direction::FromContainer) > 0);
    assert!(h1.packets(Reason::Decapsulated, Direction::FromUnderlay) > 0);
    assert_eq!(h1.packets(Reason::NotMember, Direction::FromUnderlay), 0);
    Ok(())
}
