//! A host running this datapath and a host using the kernel's VXLAN device with a
//! bridge (what Docker's overlay driver builds) talk in both directions.

use std::net::Ipv4Addr;

use overlay_common::{Direction, Reason};
use overlay_tests::{ContainerSpec, Lab, datapath::HostDatapath, kernel_vxlan::KernelVxlan, traffic};

const VNI: u32 = 4097;

#[test]
fn kernel_vxlan_interop_both_ways() -> anyhow::Result<()> {
    let mut lab =
        Lab::builder("interop").host("ebpf", "192.168.1.141/24").host("kernel", "192.168.1.142/24").build()?;
    let ours = lab.add_container("ebpf", &ContainerSpec::new("ours", Ipv4Addr::new(10, 0, 9, 2)))?;
    let theirs = lab.add_container("kernel", &ContainerSpec::new("theirs", Ipv4Addr::new(10, 0, 9, 3)))?;
    let (ebpf_host, kernel_host) = (lab.host("ebpf").clone(), lab.host("kernel").clone());

    let mut dp = HostDatapath::start(&ebpf_host)?;
    dp.add_network(VNI, Ipv4Addr::new(10, 0, 9, 1))?;
    dp.add_member(kernel_host.ip)?;
    dp.add_local(VNI, &ours)?;
    dp.add_remote(VNI, &theirs, kernel_host.ip)?;

    let kernel = KernelVxlan::create(&kernel_host, VNI, kernel_host.ip)?;
    kernel.attach(&theirs)?;
    kernel.add_remote(&ours, ebpf_host.ip)?;

    traffic::ping_ok(&ours.ns, theirs.ip, 3)?;
    traffic::ping_ok(&theirs.ns, ours.ip, 3)?;
    for (server, client, port) in [(&theirs, &ours, 5201), (&ours, &theirs, 5202)] {
        let tcp = traffic::iperf3(&lab, &server.ns, server.ip, &client.ns, port, &["-n", "100M"])?;
        let bps = traffic::tcp_bits_per_second(&tcp)?;
        assert!(bps > 100e6, "TCP {} -> {}: {bps} bit/s", client.name, server.name);
        let udp = traffic::iperf3(&lab, &server.ns, server.ip, &client.ns, port + 10, &["-u", "-b", "20M", "-t", "1"])?;
        assert!(traffic::udp_packets_per_second(&udp)? > 0.0, "UDP {} -> {}", client.name, server.name);
    }
    let c = dp.counters()?;
    assert!(c.packets(Reason::Decapsulated, Direction::FromUnderlay) > 0);
    assert!(c.packets(Reason::Encapsulated, Direction::FromContainer) > 0);
    assert_eq!(c.packets(Reason::InnerSourceMismatch, Direction::FromUnderlay), 0);
    Ok(())
}
