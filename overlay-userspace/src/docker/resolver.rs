//! The resolver dockerd's embedded DNS forwards unknown names to: the cluster's names,
//! answered as if for a container on every overlay network bound to this host's
//! Docker (dockerd asks from the host, not from a container), and the rest forwarded to
//! the host's real resolvers.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    sync::Arc,
};

use super::error::DockerError;
use crate::{
    dns::{self, DnsContainer, DnsEndpoint, DnsError, DnsNetwork, NameView, Upstreams},
    topology::Topology,
};

/// The querier the Docker resolver answers as: dockerd forwards from the host, not
/// from a container, so it sees every overlay network bound to this host's Docker.
pub const QUERIER: &str = "_docker-host";
/// A network only that querier is on, so that it exists even with no network bound
/// (names that are not the cluster's are then still forwarded).
const QUERIER_NETWORK: &str = "_docker";

/// The resolver's sockets and where it forwards.
pub struct DockerDns {
    pub sockets: dns::Sockets,
    /// Where names that are not the cluster's go (the host's real resolvers; never the
    /// resolver itself).
    pub upstreams: Arc<Upstreams>,
}

/// Binds UDP and TCP `listen` in the calling thread's namespace for [`DockerDns`]. Only a
/// loopback address is accepted: nothing is served to the network.
pub fn bind(listen: SocketAddr) -> Result<dns::Sockets, DockerError> {
    if !listen.ip().is_loopback() {
        return Err(DockerError::Config(format!(
            "the Docker DNS address {listen} is not a loopback address; use one in 127.0.0.0/8"
        )));
    }
    let netns = "host".to_owned();
    let bind = || -> std::io::Result<(UdpSocket, TcpListener)> {
        let udp = UdpSocket::bind(listen)?;
        udp.set_nonblocking(true)?;
        let tcp = TcpListener::bind(listen)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    };
    let (udp, tcp) = bind().map_err(|source| DnsError::Bind { netns: netns.clone(), addr: listen, source })?;
    Ok(dns::Sockets { netns, udp, tcp })
}

/// Starts serving `view` on the sockets; stop the [`dns::Resolver`] to close them.
pub fn start(dns: DockerDns, view: NameView) -> Result<dns::Resolver, DockerError> {
    Ok(dns::serve(dns.sockets, QUERIER, view, dns.upstreams)?)
}

/// The cluster's names, and the querier on every network bound to this host's Docker.
pub fn view_records(topology: &Topology, bound: &[String]) -> (Vec<DnsNetwork>, Vec<DnsContainer>) {
    let (mut networks, mut containers) = topology.dns_records();
    networks.push(DnsNetwork { name: QUERIER_NETWORK.into(), internal: false });
    let endpoints = std::iter::once(QUERIER_NETWORK.to_owned())
        .chain(bound.iter().cloned())
        .map(|network| DnsEndpoint { network, ip: Ipv4Addr::UNSPECIFIED, aliases: Vec::new() })
        .collect();
    containers.push(DnsContainer { id: QUERIER.into(), name: QUERIER.into(), endpoints });
    (networks, containers)
}

/// Rebuilds the view whole: it is small (this host's dockerd asks for few names).
pub fn update_view(view: &NameView, topology: &Topology, bound: &[String]) {
    let (networks, containers) = view_records(topology, bound);
    for error in view.replace_all(networks, containers) {
        tracing::warn!("a name left out of Docker's DNS: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_querier_sees_the_bound_networks_and_forwards_the_rest() {
        let view = NameView::new();
        let (networks, mut containers) = view_records(&Topology::default(), &["my_network".to_owned()]);
        containers.push(DnsContainer {
            id: "busybox02".into(),
            name: "busybox02".into(),
            endpoints: vec![DnsEndpoint {
                network: "my_network".into(),
                ip: Ipv4Addr::new(10, 0, 9, 3),
                aliases: vec![],
            }],
        });
        containers.push(DnsContainer {
            id: "other".into(),
            name: "other".into(),
            endpoints: vec![DnsEndpoint {
                network: "elsewhere".into(),
                ip: Ipv4Addr::new(10, 0, 8, 3),
                aliases: vec![],
            }],
        });
        assert!(view.replace_all(networks, containers).is_empty());
        assert_eq!(view.lookup(QUERIER, "busybox02"), dns::view::Lookup::Found(vec![Ipv4Addr::new(10, 0, 9, 3)]));
        assert_eq!(view.lookup(QUERIER, "other"), dns::view::Lookup::NxDomain);
        assert_eq!(view.lookup(QUERIER, "example.org"), dns::view::Lookup::Unknown { may_forward: true });
    }
}
