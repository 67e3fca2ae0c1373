//! Containers as the agent runs them: a network namespace with one interface per
//! attached overlay network, each the peer of a veth whose host side carries the
//! datapath program.

pub mod record;

use std::{
    net::Ipv4Addr,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use crate::{
    netlink::{Netlink, NetlinkError, VethSpec},
    netns::{self, NetnsError},
};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("interface name {0:?} is longer than the kernel's 15 characters")]
    NameTooLong(String),
    #[error("MAC address {0:?} is not six hexadecimal bytes")]
    InvalidMac(String),
}

/// One interface of a container on an overlay network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Name inside the container (eth0, eth1, ...).
    pub interface: String,
    /// Name of the host side of the veth, in the host's namespace.
    pub host_interface: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Set on the container's first network: its default route.
    pub default_gateway: Option<Ipv4Addr>,
}

/// The MAC of a container interface: 02:42 and the IPv4 address, as Docker does, so it
/// is known wherever the address is.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x42, a, b, c, d]
}

/// The inverse of [`mac_for`]: the address a container's MAC was made from; `None` for
/// a MAC not made that way.
pub fn ip_of_mac(mac: [u8; 6]) -> Option<Ipv4Addr> {
    match mac {
        [0x02, 0x42, a, b, c, d] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

/// A MAC as `ip link` and Docker write it (`02:42:0a:00:09:03`).
pub fn parse_mac(value: &str) -> Result<[u8; 6], ContainerError> {
    let bytes: Vec<u8> = value.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    <[u8; 6]>::try_from(bytes).map_err(|_| ContainerError::InvalidMac(value.to_owned()))
}

/// The inverse of [`parse_mac`].
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The host side name of a veth: `ov` and 12 hex digits of the endpoint ID.
pub fn host_interface_name(endpoint_id: &str) -> String {
    let digits: String = endpoint_id.chars().filter(char::is_ascii_hexdigit).take(12).collect();
    format!("ov{digits}")
}

/// Creates the container's namespace at `netns_path` (like `ip netns add`) with `lo` up.
pub async fn create_namespace(netns_path: &Path) -> Result<(), ContainerError> {
    netns::create_at(netns_path)?;
    netns::run_in_path(netns_path, || netns::disable_ipv6_here(None))?
        .map_err(|source| NetnsError::Create { path: netns_path.to_owned(), source })?;
    let inside = Netlink::connect_in(netns_path)?;
    inside.set_up("lo").await?;
    Ok(())
}

/// Attaches the container to a network: the veth (host side in `host`'s namespace, the
/// peer named `attachment.interface` inside the container with its MAC and MTU), the
/// address, both ends up, and the default route if this is the first network.
pub async fn attach(host: &Netlink, netns_path: &Path, attachment: &Attachment) -> Result<(), ContainerError> {
    for name in [&attachment.interface, &attachment.host_interface] {
        if name.len() > 15 {
            return Err(ContainerError::NameTooLong(name.clone()));
        }
    }
    let netns_file = std::fs::File::open(netns_path).map_err(|source| NetnsError::Open {
        name: netns_path.display().to_string(),
        path: PathBuf::from(netns_path),
        source,
    })?;
    host.create_veth(&VethSpec {
        name: &attachment.host_interface,
        peer_name: &attachment.interface,
        peer_netns: netns_file.as_fd(),
        peer_mac: Some(attachment.mac),
        mtu: attachment.mtu,
    })
    .await?;
    netns::disable_ipv6_here(Some(&attachment.host_interface))
        .map_err(|source| NetnsError::Create { path: PathBuf::from(&attachment.host_interface), source })?;
    configure(host, netns_path, attachment).await
}

/// The steps of [`attach`] after the veth exists, each idempotent (`ip link set up`,
/// `ip addr replace`, `ip route replace`): an agent adopting a container that was
/// killed half-way through attaching it finishes the job.
pub async fn configure(host: &Netlink, netns_path: &Path, attachment: &Attachment) -> Result<(), ContainerError> {
    host.set_up(&attachment.host_interface).await?;
    let inside = Netlink::connect_in(netns_path)?;
    inside.add_ipv4(&attachment.interface, attachment.ip, attachment.prefix_len).await?;
    inside.set_up(&attachment.interface).await?;
    if let Some(gateway) = attachment.default_gateway {
        inside.set_default_route(gateway).await?;
    }
    Ok(())
}

/// Removes the container's interface on one network (its veth pair).
pub async fn detach(host: &Netlink, attachment: &Attachment) -> Result<(), ContainerError> {
    host.delete_link(&attachment.host_interface).await?;
    Ok(())
}

/// Deletes the container's namespace (its interfaces go with it).
pub fn delete_namespace(netns_path: &Path) -> Result<(), ContainerError> {
    netns::delete_at(netns_path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_carry_the_address_both_ways() {
        let ip = Ipv4Addr::new(10, 0, 9, 3);
        assert_eq!(ip_of_mac(mac_for(ip)), Some(ip));
        assert_eq!(ip_of_mac([0x02, 0x00, 10, 0, 9, 3]), None);
        assert_eq!(parse_mac(&format_mac(mac_for(ip))).unwrap(), mac_for(ip));
        assert!(matches!(parse_mac("02:42:0a"), Err(ContainerError::InvalidMac(_))));
    }
}
