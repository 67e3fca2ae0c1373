//! Hand-built VXLAN payloads for injection tests, and sending them from a namespace.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use anyhow::Context;
use overlay::netns;

/// RFC 1071 checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An 8-byte VXLAN header with the I flag and `vni`.
pub fn vxlan_header(vni: u32) -> Vec<u8> {
    let v = vni.to_be_bytes();
    vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// Ethernet + IPv4 + ICMP echo request (`payload_len` bytes of data).
pub fn icmp_echo_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload_len: usize,
) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend(std::iter::repeat_n(0xab, payload_len));
    let c = checksum(&icmp).to_be_bytes();
    icmp[2..4].copy_from_slice(&c);
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip).to_be_bytes();
    ip[10..12].copy_from_slice(&c);
    let mut frame = Vec::new();
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend(ip);
    frame.extend(icmp);
    frame
}

/// Sends each payload as one UDP datagram from `ns` (source `src`) to `dst:4789`.
pub fn send_udp(ns: &str, src: Ipv4Addr, dst: Ipv4Addr, payloads: &[Vec<u8>]) -> anyhow::Result<()> {
    let payloads = payloads.to_vec();
    netns::run_in(ns, move || -> anyhow::Result<()> {
        let socket = UdpSocket::bind(SocketAddrV4::new(src, 0)).context("binding the sender")?;
        for payload in &payloads {
            socket.send_to(payload, SocketAddrV4::new(dst, 4789)).context("sending")?;
        }
        Ok(())
    })?
}

/// Packets received by `ns`'s `eth0` so far.
pub fn rx_packets(ns: &str) -> anyhow::Result<u64> {
    let out = crate::cmd::run_in(ns, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])?;
    out.trim().parse().context("rx_packets is not a number")
}
