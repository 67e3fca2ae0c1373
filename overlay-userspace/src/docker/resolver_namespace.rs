//! Where the resolver for Docker containers lives: a namespace of its own, made as a
//! container's is, joined to the host by a veth whose host side carries the datapath's
//! container program (docs/docker.md, "Names scoped per network").
//!
//! ```text
//!  container ──query to 169.254.77.53:53──▶ datapath ──redirect──▶ dockerdns0 ═veth═ eth0 169.254.77.53/30
//!      ▲                                                          169.254.77.54/30        (the resolver's sockets)
//!      └──────── redirect_peer ◀── datapath (who asked) ◀── answer ──────────┘
//! ```
//!
//! The two addresses are the usable pair of one /30 of the link-local range: the
//! resolver's (which dockerd's resolv.conf names) inside, the other on the host side, so
//! the host's own processes (dockerd resolving a registry) reach the resolver as well.
//! The namespace's default route points at the host side, and the datapath delivers
//! what comes back through the veth to the container that asked.

use std::{net::Ipv4Addr, path::PathBuf};

use ipnet::Ipv4Net;

use super::error::DockerError;
use crate::{
    container::{self, Attachment},
    datapath::ResolverSpec,
    dns::{self, DnsError},
    netlink::Netlink,
    netns,
};

/// The host side of the resolver's veth (not `ov…`, the prefix of the plugin's own veths).
pub const HOST_INTERFACE: &str = "dockerdns0";
/// The resolver's side, inside its namespace.
const INTERFACE: &str = "eth0";
/// The suffix of the namespace's name, after the agent's container prefix: a container
/// name cannot start with `_`, so no container's namespace is ever named so.
pub const NETNS_SUFFIX: &str = "_docker-dns";

/// The default resolver address for Docker containers.
pub const DEFAULT_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 53);

/// The host side's address for resolver address `ip`: the other usable address of its
/// /30. `ip` must be link-local (it is never routed, and never an overlay address) and
/// usable in its /30.
pub fn host_side(ip: Ipv4Addr) -> Result<Ipv4Addr, DockerError> {
    let invalid = |reason: &str| DockerError::Config(format!("the Docker DNS address {ip}: {reason}"));
    if !ip.is_link_local() {
        return Err(invalid("use a link-local address (169.254.0.0/16), e.g. 169.254.77.53"));
    }
    let pair = Ipv4Net::new(ip, 30).map_err(|e| invalid(&e.to_string()))?.trunc();
    let first = u32::from(pair.network()) + 1;
    match u32::from(ip) - u32::from(pair.network()) {
        1 => Ok(Ipv4Addr::from(first + 1)),
        2 => Ok(Ipv4Addr::from(first)),
        _ => Err(invalid("it is the network or broadcast address of its /30; use one of the two others")),
    }
}

/// The resolver's namespace, made by [`create`].
#[derive(Clone, Debug)]
pub struct ResolverNamespace {
    pub netns: String,
    pub ip: Ipv4Addr,
    pub host_ip: Ipv4Addr,
    pub mac: [u8; 6],
}

fn path(netns: &str) -> PathBuf {
    netns::path(netns)
}

/// Makes the namespace `netns` with the resolver at `ip`, replacing one a previous run
/// left (like `ip netns add NETNS`, `ip link add dockerdns0 type veth peer name eth0 netns
/// NETNS`, `ip -n NETNS addr add IP/30 dev eth0`, `ip addr add HOST_IP/30 dev dockerdns0`,
/// `ip -n NETNS route add default via HOST_IP`, everything up, IPv6 off). `host` is
/// rtnetlink in the host's namespace.
pub async fn create(netns: &str, ip: Ipv4Addr, host: &Netlink) -> Result<ResolverNamespace, DockerError> {
    let host_ip = host_side(ip)?;
    let failed = |e: container::ContainerError| DockerError::Resolver(format!("making namespace {netns}: {e}"));
    remove(netns, host).await;
    container::create_namespace(&path(netns)).await.map_err(failed)?;
    let mac = container::mac_for(ip);
    let attachment = Attachment {
        interface: INTERFACE.into(),
        host_interface: HOST_INTERFACE.into(),
        ip,
        prefix_len: 30,
        mac,
        mtu: 1500,
        default_gateway: Some(host_ip),
    };
    container::attach(host, &path(netns), &attachment).await.map_err(failed)?;
    host.add_ipv4(HOST_INTERFACE, host_ip, 30)
        .await
        .map_err(|e| DockerError::Resolver(format!("addressing {HOST_INTERFACE}: {e}")))?;
    Ok(ResolverNamespace { netns: netns.to_owned(), ip, host_ip, mac })
}

/// Deletes the namespace and its veth; what is already gone is no error.
pub async fn remove(netns: &str, host: &Netlink) {
    let _ = host.delete_link(HOST_INTERFACE).await;
    if let Err(error) = container::delete_namespace(&path(netns)) {
        tracing::warn!("removing the Docker resolver's namespace {netns}: {error}");
    }
}

impl ResolverNamespace {
    /// What the datapath is told.
    pub fn spec(&self) -> ResolverSpec {
        ResolverSpec { ip: self.ip, mac: self.mac, host_interface: HOST_INTERFACE.into(), host_ip: self.host_ip }
    }

    /// UDP and TCP sockets on the resolver's address, port 53, inside the namespace.
    pub fn sockets(&self) -> Result<dns::Sockets, DnsError> {
        dns::bind_in_netns_at(&self.netns, std::net::SocketAddr::from((self.ip, 53)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_side_is_the_other_address_of_the_pair() {
        assert_eq!(host_side(DEFAULT_ADDRESS).unwrap(), Ipv4Addr::new(169, 254, 77, 54));
        assert_eq!(host_side(Ipv4Addr::new(169, 254, 77, 54)).unwrap(), Ipv4Addr::new(169, 254, 77, 53));
        for bad in [[169, 254, 77, 52], [169, 254, 77, 55], [127, 0, 0, 77], [10, 0, 9, 1]] {
            assert!(host_side(Ipv4Addr::from(bad)).is_err(), "{bad:?}");
        }
    }
}
