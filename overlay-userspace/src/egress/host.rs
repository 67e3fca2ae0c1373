//! The host's side of egress: what the kernel needs for a container's packets to be
//! routed out, and for the replies (and published ports' traffic) to be routed in.
//!
//! - The egress device, [`DEVICE`]: one end of a veth pair, up, without addresses,
//!   where the datapath hands a container's packets for addresses off the overlay to
//!   the host's stack (redirected to its ingress, addressed to its MAC). Its peer,
//!   [`DEVICE_PEER`], stays down: nothing is ever sent through the door. (A dummy
//!   device would do, but this kernel has no dummy driver.) A container's
//!   veth cannot be that door: it is a port of the headroom bridge, which takes every
//!   frame passed up from it. Reverse-path filtering is off on it (`rp_filter=0`): the
//!   containers' addresses are routed through their veths, not through it. A host
//!   whose `net.ipv4.conf.all.rp_filter` is 1 (strict) overrides that and drops egress;
//!   2 (loose, Debian's default) and 0 work.
//! - IPv4 forwarding on the egress device (egress is forwarded from it), on the
//!   underlay interface (replies and published ports arrive there and are forwarded
//!   into containers) and on each container's veth. Per interface, never `all`: the
//!   host does not start routing between its other interfaces.
//! - A /32 route to each container through its veth, and a permanent neighbour entry
//!   with its MAC. Both go when the veth goes.
//!
use std::net::Ipv4Addr;

use super::EgressError;
use crate::netlink::Netlink;

/// The egress device (not named `ov…`, the prefix of containers' veths).
pub const DEVICE: &str = "egress-door";
/// The other end of its veth pair, left down.
pub const DEVICE_PEER: &str = "egress-door-p";
/// Its MAC (locally administered): what the datapath addresses the frames to.
pub const DEVICE_MAC: [u8; 6] = [0x02, 0x4f, 0x56, 0x4c, 0x00, 0x01];

fn sysctl(key: &str, interface: &str, value: &str) -> Result<(), EgressError> {
    let path = format!("/proc/sys/net/{key}").replace("IFACE", interface);
    std::fs::write(&path, value).map_err(|source| EgressError::Sysctl { path, source })
}

/// `sysctl -w net.ipv4.conf.INTERFACE.forwarding=1` in the calling thread's namespace.
pub fn enable_forwarding(interface: &str) -> Result<(), EgressError> {
    sysctl("ipv4/conf/IFACE/forwarding", interface, "1")
}

/// Makes the egress device (if this host has none), with IPv6 off, forwarding on and
/// reverse-path filtering off, up; its index. Like `ip link add egress-door address
/// 02:4f:56:4c:00:01 type veth peer name egress-door-p`, the sysctls, `ip link set
/// egress-door up`.
pub async fn ensure_device(host: &Netlink) -> Result<u32, EgressError> {
    let index = host.ensure_veth_pair(DEVICE, DEVICE_PEER, DEVICE_MAC).await?;
    match sysctl("ipv6/conf/IFACE/disable_ipv6", DEVICE, "1") {
        Err(EgressError::Sysctl { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        other => other?,
    }
    enable_forwarding(DEVICE)?;
    sysctl("ipv4/conf/IFACE/rp_filter", DEVICE, "0")?;
    host.set_up(DEVICE).await?;
    if std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter").is_ok_and(|v| v.trim() == "1") {
        tracing::warn!(
            "net.ipv4.conf.all.rp_filter is 1 (strict): containers' egress is dropped; set it to 2 (loose) or 0"
        );
    }
    Ok(index)
}

/// `ip link del egress-door`, for `overlay agent --cleanup`; whether there was one.
pub async fn remove_device(host: &Netlink) -> Result<bool, EgressError> {
    if host.link_index(DEVICE).await?.is_none() {
        return Ok(false);
    }
    host.delete_link(DEVICE).await?;
    Ok(true)
}

/// Makes a local container reachable from the host's stack: forwarding on its veth
/// (`host_interface`), the route to `ip` through it and the neighbour `ip` → `mac`.
pub async fn connect_container(
    host: &Netlink,
    host_interface: &str,
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> Result<(), EgressError> {
    enable_forwarding(host_interface)?;
    // Up first: a route through a link that is down is refused, and a container adopted
    // after an agent was killed while attaching it may have its veth still down.
    host.set_up(host_interface).await?;
    host.set_permanent_neighbour(ip, mac, host_interface).await?;
    host.add_container_route(ip, host_interface).await?;
    Ok(())
}
