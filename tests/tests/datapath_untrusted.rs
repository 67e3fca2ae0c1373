//! VXLAN that must not be delivered: from non-members, spoofed, unknown, malformed or
//! truncated. Each is dropped under its own reason, and the host keeps working.

use std::net::Ipv4Addr;

use overlay_common::{Direction, Reason};
use overlay_tests::{
    ContainerSpec, Lab, cmd,
    datapath::{HostDatapath, full_mesh},
    packets::{icmp_echo_frame, rx_packets, send_udp, vxlan_header},
    traffic,
};

const VNI: u32 = 5000;
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);

fn with_vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut payload = vxlan_header(vni);
    payload.extend_from_slice(inner);
    payload
}

#[test]
fn untrusted_vxlan_dropped_by_reason() -> anyhow::Result<()> {
    let mut lab = Lab::builder("untrust")
        .host("h1", "192.168.1.141/24")
        .host("h2", "192.168.1.142/24")
        .host("rogue", "192.168.1.150/24")
        .build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(lab.host("h1"))?, HostDatapath::start(lab.host("h2"))?];
    full_mesh(&mut dps, VNI, GATEWAY, &[(0, &c1), (1, &c2)])?;
    let (h1, h2, rogue) = (lab.host("h1").ip, lab.host("h2").ip, lab.host("rogue").clone());

    // c1 learns c2's MAC now, so answering the injected echo below needs no ARP.
    traffic::ping_ok(&c1.ns, c2.ip, 1)?;
    // A well-formed packet for c1, as c2 would send it.
    let valid = icmp_echo_frame(c2.mac, c1.mac, c2.ip, c1.ip, 32);
    let before = dps[0].counters()?;
    let rx = rx_packets(&c1.ns)?;

    // From a host that is not a member: dropped, whatever it contains.
    send_udp(&rogue.ns, rogue.ip, h1, &[with_vxlan(VNI, &valid), with_vxlan(VNI, &valid)])?;
    // From a member, but broken in each possible way.
    let stranger = icmp_echo_frame(c2.mac, c1.mac, Ipv4Addr::new(10, 0, 9, 77), c1.ip, 32);
    let nobody = icmp_echo_frame(c2.mac, c1.mac, c2.ip, Ipv4Addr::new(10, 0, 9, 99), 32);
    let mut arp_inner = valid.clone();
    arp_inner[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut bad_ip = valid.clone();
    bad_ip[14] = 0x65; // version 6 in an IPv4 ethertype
    let mut no_flag = with_vxlan(VNI, &valid);
    no_flag[0] = 0;
    let random: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    send_udp(
        &lab.host("h2").ns,
        h2,
        h1,
        &[
            vec![0x08, 0, 0],              // shorter than a VXLAN header
            no_flag,                       // I flag missing
            with_vxlan(999, &valid),       // unknown VNI
            with_vxlan(VNI, &valid[..10]), // inner Ethernet cut short
            with_vxlan(VNI, &valid[..24]), // inner IPv4 cut short
            with_vxlan(VNI, &arp_inner),   // inner frame not IPv4
            with_vxlan(VNI, &bad_ip),      // inner header not valid IPv4
            with_vxlan(VNI, &stranger),    // inner source is no container of h2
            with_vxlan(VNI, &nobody),      // inner destination not on h1
            with_vxlan(0xabcdef, &random), // garbage behind a plausible header
        ],
    )?;
    // Then one valid packet, which is delivered.
    send_udp(&lab.host("h2").ns, h2, h1, &[with_vxlan(VNI, &valid)])?;

    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = dps[0].counters()?.since(&before);
    let drops = |reason| got.packets(reason, Direction::FromUnderlay);
    assert_eq!(drops(Reason::NotMember), 2);
    assert_eq!(drops(Reason::Truncated), 3);
    assert_eq!(drops(Reason::Malformed), 2);
    assert_eq!(drops(Reason::UnknownVni), 2);
    assert_eq!(drops(Reason::InnerNotIpv4), 1);
    assert_eq!(drops(Reason::InnerSourceMismatch), 1);
    assert_eq!(drops(Reason::NoLocalEndpoint), 1);
    assert_eq!(drops(Reason::Decapsulated), 1);
    // Exactly the one valid packet reached c1 (plus nothing from the rogue).
    assert_eq!(rx_packets(&c1.ns)? - rx, 1);

    // The host and the overlay still work.
    traffic::ping_ok(&c2.ns, c1.ip, 3)?;
    Ok(())
}

#[test]
fn container_cannot_spoof_its_source() -> anyhow::Result<()> {
    let mut lab = Lab::builder("spoof").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(lab.host("h1"))?, HostDatapath::start(lab.host("h2"))?];
    full_mesh(&mut dps, VNI, GATEWAY, &[(0, &c1), (1, &c2)])?;
    traffic::ping_ok(&c1.ns, c2.ip, 1)?;

    cmd::ip(&c1.ns, &["addr", "add", "10.0.9.50/24", "dev", "eth0"])?;
    let before = dps[0].counters()?;
    let out =
        cmd::output_in(&c1.ns, &["ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "10.0.9.50", &c2.ip.to_string()])?;
    assert!(!out.status.success(), "a spoofed ping got answers");
    let got = dps[0].counters()?.since(&before);
    assert_eq!(got.packets(Reason::SpoofedSource, Direction::FromContainer), 3);
    assert_eq!(got.packets(Reason::Encapsulated, Direction::FromContainer), 0);
    Ok(())
}

/// A network removed from a host takes its containers off the overlay there, and added
/// again brings them back with its counters: the copy of the network that interfaces
/// and local endpoints carry follows it both ways.
#[test]
fn a_removed_network_drops_and_an_added_one_delivers() -> anyhow::Result<()> {
    let mut lab = Lab::builder("netcopy").host("h1", "192.168.1.141/24").host("h2", "192.168.1.142/24").build()?;
    let c1 = lab.add_container("h1", &ContainerSpec::new("c1", Ipv4Addr::new(10, 0, 9, 2)))?;
    let c2 = lab.add_container("h2", &ContainerSpec::new("c2", Ipv4Addr::new(10, 0, 9, 3)))?;
    let mut dps = vec![HostDatapath::start(lab.host("h1"))?, HostDatapath::start(lab.host("h2"))?];
    full_mesh(&mut dps, VNI, GATEWAY, &[(0, &c1), (1, &c2)])?;
    traffic::ping_ok(&c2.ns, c1.ip, 1)?;

    dps[0].datapath.remove_network(VNI)?;
    let before = dps[0].counters()?;
    let out = cmd::output_in(&c2.ns, &["ping", "-c", "3", "-i", "0.2", "-W", "1", &c1.ip.to_string()])?;
    assert!(!out.status.success(), "c1 answered with its network removed from its host");
    let got = dps[0].counters()?.since(&before);
    assert!(got.packets(Reason::UnknownVni, Direction::FromUnderlay) >= 3, "{:?}", got.by_reason);
    assert_eq!(got.packets(Reason::Decapsulated, Direction::FromUnderlay), 0);

    dps[0].add_network(VNI, GATEWAY)?;
    let before = dps[0].counters()?;
    traffic::ping_ok(&c2.ns, c1.ip, 3)?;
    let got = dps[0].counters()?.since(&before);
    assert!(got.packets(Reason::Decapsulated, Direction::FromUnderlay) >= 3, "{:?}", got.by_reason);
    let network = got.by_network.get(&VNI).copied().unwrap_or_default();
    assert!(network.from_underlay_packets >= 3, "the network's counters missed its packets: {network:?}");
    Ok(())
}
