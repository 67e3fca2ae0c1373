//! The resolver that dockerd's embedded DNS forwards unknown names to. dockerd's
//! resolv.conf names it at a link-local address, which is not a loopback one, so dockerd
//! forwards from each container's own namespace: the query leaves the container as any
//! packet does, and the datapath sends it to the resolver's namespace
//! ([`super::resolver_namespace`]), having checked the source address against the
//! container's veth. The resolver tells its askers apart by that address: a Docker
//! container gets the names of its own networks, as a native container does from its
//! own resolver, and nothing of the networks it is not on. The host's own queries
//! (dockerd resolving a registry) get no container names. Other names are forwarded to
//! the host's real resolvers.

use std::{net::Ipv4Addr, sync::Arc};

use super::{
    error::DockerError,
    plugin::Backend,
    resolver_namespace::{self, ResolverNamespace},
};
use crate::{
    datapath::Datapath,
    dns::{self, DnsContainer, DnsEndpoint, DnsNetwork, NameView, Querier, Upstreams},
    netlink::Netlink,
    topology::Topology,
};

/// Who asks when the source is no container: the host itself. It sees no container
/// names; what is not the cluster's is forwarded for it.
pub const QUERIER: &str = "_docker-host";
/// A network only that querier is on, so that it exists in the view.
const QUERIER_NETWORK: &str = "_docker";

/// Where the resolver goes and where it forwards.
pub struct DockerDns {
    /// Its address: link-local, the one `nameserver` of the resolv.conf dockerd reads.
    pub address: Ipv4Addr,
    /// Its namespace (`/run/netns/NETNS`).
    pub netns: String,
    /// Where names that are not the cluster's go (the host's real resolvers; never the
    /// resolver itself).
    pub upstreams: Arc<Upstreams>,
}

/// A running resolver: its sockets, served, and its namespace.
pub struct Running {
    resolver: dns::Resolver,
    namespace: ResolverNamespace,
}

/// Makes the resolver's namespace, points the datapath at it and serves `view` there.
pub async fn start<S>(dns: DockerDns, backend: &Backend<S>, view: NameView) -> Result<Running, DockerError> {
    let namespace = resolver_namespace::create(&dns.netns, dns.address, &backend.host).await?;
    let serving = async {
        backend
            .datapath
            .lock()
            .await
            .set_resolver(&namespace.spec())
            .map_err(|e| DockerError::Resolver(format!("sending containers' queries to it: {e}")))?;
        let querier = Querier::BySource { others: QUERIER.to_owned() };
        Ok::<_, DockerError>(dns::serve_as(namespace.sockets()?, querier, view, dns.upstreams)?)
    };
    match serving.await {
        Ok(resolver) => {
            tracing::info!(address = %namespace.ip, netns = %namespace.netns, "DNS for Docker containers serving");
            Ok(Running { resolver, namespace })
        }
        Err(error) => {
            let _ = backend.datapath.lock().await.clear_resolver();
            resolver_namespace::remove(&namespace.netns, &backend.host).await;
            Err(error)
        }
    }
}

impl Running {
    /// Stops serving, forgets the resolver in the datapath and removes its namespace.
    pub async fn stop<S>(self, backend: &Backend<S>) {
        self.resolver.stop().await;
        if let Err(error) = backend.datapath.lock().await.clear_resolver() {
            tracing::warn!("the Docker resolver stopped, but the datapath still points at it: {error}");
        }
        resolver_namespace::remove(&self.namespace.netns, &backend.host).await;
    }
}

/// Takes away a resolver that an earlier run left (its namespace `netns`, and the
/// datapath pointed at it), for an agent that runs without one now (no `--docker`, or
/// `--docker-dns off`). Nothing is done when there is none.
pub async fn remove_stale(netns: &str, datapath: &tokio::sync::Mutex<Datapath>, host: &Netlink) {
    if !crate::netns::path(netns).exists() {
        return;
    }
    tracing::info!(%netns, "removing the DNS resolver for Docker containers that an earlier run left");
    if let Err(error) = datapath.lock().await.clear_resolver() {
        tracing::warn!("the datapath still points at the earlier Docker resolver: {error}");
    }
    resolver_namespace::remove(netns, host).await;
}

/// The cluster's names, and the host's querier, which sees none of them.
pub fn view_records(topology: &Topology) -> (Vec<DnsNetwork>, Vec<DnsContainer>) {
    let (mut networks, mut containers) = topology.dns_records();
    networks.push(DnsNetwork { name: QUERIER_NETWORK.into(), internal: false });
    let endpoint = DnsEndpoint { network: QUERIER_NETWORK.into(), ip: Ipv4Addr::UNSPECIFIED, aliases: Vec::new() };
    containers.push(DnsContainer { id: QUERIER.into(), name: QUERIER.into(), endpoints: vec![endpoint] });
    (networks, containers)
}

/// Rebuilds the view whole: it is small (this host's dockerd asks for few names).
pub fn update_view(view: &NameView, topology: &Topology) {
    let (networks, containers) = view_records(topology);
    for error in view.replace_all(networks, containers) {
        tracing::warn!("a name left out of Docker's DNS: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, network: &str, ip: [u8; 4]) -> DnsContainer {
        DnsContainer {
            id: name.into(),
            name: name.into(),
            endpoints: vec![DnsEndpoint { network: network.into(), ip: Ipv4Addr::from(ip), aliases: vec![] }],
        }
    }

    #[test]
    fn each_container_sees_its_networks_and_the_host_none() {
        let view = NameView::new();
        let (mut networks, mut containers) = view_records(&Topology::default());
        for name in ["net_a", "net_b"] {
            networks.push(DnsNetwork { name: name.into(), internal: false });
        }
        containers.push(container("busybox01", "net_a", [10, 0, 9, 2]));
        containers.push(container("busybox02", "net_a", [10, 0, 9, 3]));
        containers.push(container("busybox03", "net_b", [10, 0, 10, 2]));
        assert!(view.replace_all(networks, containers).is_empty());
        // Who asks is the container that holds the query's source address.
        let asker = view.container_at(Ipv4Addr::new(10, 0, 9, 2)).unwrap();
        assert_eq!(asker, "busybox01");
        assert_eq!(view.lookup(&asker, "busybox02"), dns::view::Lookup::Found(vec![Ipv4Addr::new(10, 0, 9, 3)]));
        assert_eq!(view.lookup(&asker, "busybox03"), dns::view::Lookup::NxDomain);
        assert_eq!(view.lookup(QUERIER, "busybox02"), dns::view::Lookup::NxDomain);
        assert_eq!(view.lookup(QUERIER, "example.org"), dns::view::Lookup::Unknown { may_forward: true });
        assert_eq!(view.container_at(Ipv4Addr::new(192, 168, 1, 141)), None);
    }
}
