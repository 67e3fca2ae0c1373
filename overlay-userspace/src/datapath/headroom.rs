//! Room in front of the container's packets for the 50 bytes of VXLAN.
//!
//! A socket leaves in front of its packet the headroom that the outgoing device asks
//! for (`LL_RESERVED_SPACE`): a veth asks for none beyond its Ethernet header, so a UDP
//! or ICMP packet leaves the container with 2 spare bytes, and `bpf_skb_adjust_room`
//! then reallocates and copies the head of every such packet (`pskb_expand_head`) to
//! make room for the encapsulation. Nothing sets a veth's headroom directly on this
//! kernel: `IFLA_HEADROOM` is read-only, and netkit, whose headroom is configurable, is
//! not built. What does raise it is the kernel's own mechanism for tunnels behind a
//! bridge: a bridge raises every port's headroom (`ndo_set_rx_headroom`) to the largest
//! its ports need, and a veth passes that on to its peer, the container's eth0.
//!
//! So each host has one bridge, [`BRIDGE`], that forwards nothing: it stays down (with
//! multicast snooping off, so it never speaks IGMP through its ports), and
//! its other port is a VXLAN device, [`PORT`], that stays down too (binding no socket)
//! and needs 50 bytes of headroom. A container's host-side veth is made a port of it.
//! The datapath's TC program runs before the bridge would see a frame and redirects or
//! drops every one, so the bridge only lends its headroom; and a frame that got past
//! would be dropped by the bridge's disabled port, not handed to the host.
//!
//! Becoming a bridge port restarts IPv6 on the veth, whose link-local address would
//! then send router solicitations and MLD reports into the container a moment later.
//! The host side of a container's veth needs no address, so IPv6 is turned off on it
//! first (`net.ipv6.conf.IFACE.disable_ipv6=1`).

use super::DatapathError;
use crate::netlink::{Netlink, NetlinkError};

/// The bridge that lends its headroom to container veths (not named `ov…`, the prefix
/// of the Docker plugin's veths).
pub const BRIDGE: &str = "encap-room";
/// Its VXLAN port, whose needed headroom the bridge takes on.
pub const PORT: &str = "encap-room-vx";
/// VNI and UDP port of that device; it is never up, so neither is used.
const PORT_VNI: u32 = 16_777_215;
const PORT_UDP: u16 = 4789;

/// Makes the veth `host_interface` a port of [`BRIDGE`], creating the bridge and its
/// VXLAN port first if this host has none (`ip link add encap-room type bridge
/// mcast_snooping 0`, both left down,
/// `ip link add encap-room-vx type vxlan id 16777215 dstport 4789`, `ip link set
/// encap-room-vx master encap-room`, `ip link set IFACE master encap-room`).
/// Works in the calling thread's network namespace (see [`in_this_namespace`]).
pub(super) fn lend_to(host_interface: &str) -> Result<(), DatapathError> {
    let failed = |source| DatapathError::Headroom { interface: host_interface.to_owned(), source };
    in_this_namespace(|netlink| async move {
        disable_ipv6(host_interface).map_err(NetlinkError::Connect)?;
        let bridge = netlink.ensure_bridge(BRIDGE).await?;
        netlink.ensure_vxlan(PORT, PORT_VNI, PORT_UDP).await?;
        netlink.set_controller(PORT, bridge).await?;
        netlink.set_controller(host_interface, bridge).await
    })
    .map_err(failed)
}

/// Deletes [`BRIDGE`] and its VXLAN port from the calling thread's namespace (`ip link
/// del encap-room-vx; ip link del encap-room`), for `overlay agent --cleanup`. Ports
/// still on the bridge are released, not deleted; absent devices are not an error.
pub fn remove() -> Result<(), DatapathError> {
    in_this_namespace(|netlink| async move {
        netlink.delete_link(PORT).await?;
        netlink.delete_link(BRIDGE).await
    })
    .map_err(|source| DatapathError::Headroom { interface: BRIDGE.to_owned(), source })
}

/// Runs `work` on a netlink socket of the calling thread's namespace, from a thread of
/// its own with its own runtime, so that async code and namespace threads alike can
/// call it (a new thread inherits the caller's network namespace).
fn in_this_namespace<F, Fut>(work: F) -> Result<(), NetlinkError>
where
    F: FnOnce(Netlink) -> Fut + Send,
    Fut: std::future::Future<Output = Result<(), NetlinkError>>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(NetlinkError::Connect)?;
                runtime.block_on(async { work(Netlink::connect()?).await })
            })
            .join()
            .unwrap_or_else(|_| Err(NetlinkError::NoAnswer("the netlink thread (it panicked)".into())))
    })
}

/// `sysctl -w net.ipv6.conf.IFACE.disable_ipv6=1` in the calling thread's namespace; a
/// kernel without IPv6 has nothing to turn off.
fn disable_ipv6(interface: &str) -> std::io::Result<()> {
    let path = std::path::Path::new("/proc/sys/net/ipv6/conf").join(interface).join("disable_ipv6");
    match std::fs::write(&path, "1") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
