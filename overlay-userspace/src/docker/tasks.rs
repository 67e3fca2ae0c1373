//! What runs beside the plugin socket.

use std::{collections::BTreeMap, net::Ipv4Addr, sync::Arc, time::Duration};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::{
    DockerDns, DockerError, MARKERS, Plugin,
    client::NetworkCreate,
    driver,
    state::{Binding, DockerNetwork},
};
use crate::{
    cluster::keys as cluster_keys,
    dns::{self, NameView},
    endpoint,
    network::ipam::Release,
    network::{self, CreateRequest, NetworkError, NetworkSpec},
    store::{Store, Transact, WatchEvent, WatchUpdate, watch_prefix},
    topology::{NamesTouched, Topology},
};

/// The querier the Docker resolver answers as: dockerd forwards from the host, not
/// from a container, so it sees every overlay network bound to this host's Docker.
pub const QUERIER: &str = "_docker-host";
/// A network only that querier is on, so that it exists even with no network bound
/// (names that are not the cluster's are then still forwarded).
const QUERIER_NETWORK: &str = "_docker";
/// How often endpoint records are checked against the current lease, and the mirror
/// against dockerd, besides on every change.
const RESYNC: Duration = Duration::from_secs(3);

/// `v1/docker/networks/CLUSTER_ID`: a cluster network created through Docker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub name: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    #[serde(default)]
    pub internal: bool,
    /// The node whose Docker created it.
    pub created_on: String,
}

/// A Docker or alias name the resolver accepts (letters, digits, '-', '_', dot-separated
/// labels of 1 to 63); other names are not published, so they cannot spoil the names
/// of every host.
pub fn dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// After a restart: endpoints whose host interface is still there (their container
/// kept running) get their datapath entry back; the others are undone and their
/// addresses released. Records are re-published by [`republish`]. Networks whose
/// binding was interrupted are bound again.
pub async fn recover<S: Store + Transact>(p: &Arc<Plugin<S>>) {
    let mut state = p.state.lock().await;
    let mut gone = Vec::new();
    for e in state.endpoints.values().filter(|e| e.joined) {
        match p.backend.host.link_index(&e.host_interface).await {
            Ok(Some(_)) => {
                let spec = crate::datapath::LocalEndpointSpec {
                    vni: e.vni,
                    ip: e.ip,
                    mac: e.mac,
                    host_interface: e.host_interface.clone(),
                };
                if let Err(error) = p.backend.datapath.lock().await.add_local_endpoint(&spec) {
                    tracing::error!("endpoint {}: restoring its datapath entry: {error}", e.id);
                }
                if e.container.is_none() {
                    tokio::spawn(learn_name(p.clone(), e.id.clone()));
                }
            }
            Ok(None) => gone.push(e.id.clone()),
            Err(error) => tracing::warn!("endpoint {}: {error}", e.id),
        }
    }
    for id in gone {
        if let Some(e) = state.endpoints.remove(&id) {
            tracing::info!("endpoint {id}: its container went away while the plugin was stopped; cleaning up");
            driver::detach(p, &e).await;
            if let Some(allocation) = &e.allocation {
                let _ = p.backend.ipam.release(&e.cluster_network, &Release::Endpoint(allocation.clone())).await;
            }
        }
    }
    for n in state.networks.values().filter(|n| n.binding == Binding::Pending) {
        tokio::spawn(bind_new_network(p.clone(), n.docker_id.clone()));
    }
    if let Err(error) = state.save(&p.config.state_dir) {
        tracing::error!("{error}");
    }
}

pub fn spawn_all<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    dns: Option<DockerDns>,
    tasks: &mut JoinSet<()>,
) -> Result<(), DockerError> {
    let view = NameView::new();
    if let Some(DockerDns { sockets, upstreams }) = dns {
        let resolver = dns::serve(sockets, QUERIER, view.clone(), upstreams)?;
        let shutdown = p.shutdown.clone();
        tasks.spawn(async move {
            shutdown.wait().await;
            resolver.stop().await;
        });
    }
    tasks.spawn(republish(p.clone()));
    tasks.spawn(follow_cluster(p.clone(), view));
    Ok(())
}

/// Names a network Docker just created (from dockerd, once it has stored it) and
/// creates its cluster network, or binds to the cluster network of that name if it has
/// the same subnet and gateway.
pub async fn bind_new_network<S: Store + Transact>(p: Arc<Plugin<S>>, docker_id: String) {
    let mut name = None;
    if let Some(docker) = &p.docker {
        for attempt in 0..300u32 {
            match docker.network_name(&docker_id).await {
                Ok(Some(found)) => {
                    name = Some(found);
                    break;
                }
                Ok(None) => {}
                Err(error) if attempt % 50 == 0 => tracing::warn!("{error}"),
                Err(_) => {}
            }
            if p.shutdown.sleep(Duration::from_millis(100)).await.is_err() {
                return;
            }
        }
    }
    let name = name.unwrap_or_else(|| format!("docker-{}", docker_id.get(..12).unwrap_or(&docker_id)));
    let Some(network) = p.state.lock().await.networks.get(&docker_id).cloned() else { return };
    let binding = match create_or_find(&p, &docker_id, &name, &network).await {
        Ok(binding) => binding,
        Err(message) => {
            tracing::error!("Docker network {name} ({docker_id}): {message}");
            Binding::Failed { message: format!("Docker network {name}: {message}") }
        }
    };
    let mut state = p.state.lock().await;
    if let Some(n) = state.networks.get_mut(&docker_id) {
        n.binding = binding;
    }
    if let Err(error) = state.save(&p.config.state_dir) {
        tracing::error!("{error}");
    }
    drop(state);
    p.bindings_changed.notify_waiters();
}

async fn create_or_find<S: Store + Transact>(
    p: &Plugin<S>,
    docker_id: &str,
    name: &str,
    n: &DockerNetwork,
) -> Result<Binding, String> {
    let request = CreateRequest {
        name: name.to_owned(),
        subnet: Some(n.subnet.to_string()),
        gateway: Some(n.gateway.to_string()),
        internal: n.internal,
        id: Some(docker_id.to_owned()),
        ..CreateRequest::default()
    };
    let spec = NetworkSpec::parse(&request).map_err(|e| e.to_string())?;
    let record = match network::create(&p.backend.store, &spec, &p.config.subnet_pool).await {
        Ok(record) => record,
        Err(NetworkError::AlreadyExists { .. }) => {
            let existing = network::find(&p.backend.store, name).await.map_err(|e| e.to_string())?;
            if existing.subnet != n.subnet || existing.gateway != n.gateway {
                return Err(format!(
                    "the cluster network {name} has subnet {} and gateway {}; remove this Docker network and create \
                     it with --subnet {} --gateway {}",
                    existing.subnet, existing.gateway, existing.subnet, existing.gateway
                ));
            }
            existing
        }
        Err(error) => return Err(error.to_string()),
    };
    let marker = Marker {
        name: record.name.clone(),
        subnet: record.subnet,
        gateway: record.gateway,
        internal: record.internal,
        created_on: p.backend.node_name.clone(),
    };
    let value = serde_json::to_vec(&marker).map_err(|e| e.to_string())?;
    p.backend.store.put(&format!("{MARKERS}{}", record.id), value, None).await.map_err(|e| e.to_string())?;
    tracing::info!(network = %record.name, id = %record.id, "Docker network bound to the cluster network");
    Ok(Binding::Bound { cluster_id: record.id, name: record.name, vni: record.vni })
}

/// Learns the name (and aliases) of the container behind an endpoint from dockerd,
/// which knows it once the container has started, and publishes them.
pub async fn learn_name<S: Store + Transact>(p: Arc<Plugin<S>>, endpoint_id: String) {
    let Some(docker) = &p.docker else { return };
    let mut delay = Duration::from_millis(50);
    for _ in 0..60 {
        if p.shutdown.sleep(delay).await.is_err() {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(2));
        let Some(network) = p.state.lock().await.endpoints.get(&endpoint_id).map(|e| e.docker_network.clone()) else {
            return;
        };
        let found = match docker.container_of(&network, &endpoint_id).await {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(error) => {
                tracing::debug!("endpoint {endpoint_id}: {error}");
                continue;
            }
        };
        let mut state = p.state.lock().await;
        let Some(e) = state.endpoints.get_mut(&endpoint_id) else { return };
        if !dns_name(&found.name) {
            tracing::warn!("container {:?} is not a DNS name; other hosts cannot resolve it", found.name);
            return;
        }
        e.aliases = found.aliases.into_iter().filter(|a| dns_name(a) && *a != found.name).collect();
        e.container = Some(found.name);
        let e = e.clone();
        if e.joined
            && let Err(error) = driver::publish(&p, &e).await
        {
            tracing::warn!("endpoint {endpoint_id}: {error}");
        }
        if let Err(error) = state.save(&p.config.state_dir) {
            tracing::error!("{error}");
        }
        return;
    }
}

/// Keeps every joined endpoint's record and address on the node's current lease (after
/// a restart, or when the node registered again under a new lease).
async fn republish<S: Store + Transact>(p: Arc<Plugin<S>>) {
    let mut lease = p.backend.lease.clone();
    loop {
        let state = p.state.lock().await;
        let current = p.lease_id();
        for e in state.endpoints.values().filter(|e| e.joined) {
            match p.backend.store.get(&endpoint::key(&e.cluster_network, &e.id)).await {
                Ok(Some(entry)) if entry.lease == Some(current) => {}
                Ok(_) => {
                    if let Err(error) = driver::publish(&p, e).await {
                        tracing::warn!("re-publishing endpoint {}: {error}", e.id);
                    }
                    if let Some(allocation) = &e.allocation
                        && let Err(error) = p
                            .backend
                            .ipam
                            .allocate(&e.cluster_network, allocation, &p.backend.node_id, current, Some(e.ip))
                            .await
                    {
                        tracing::error!("endpoint {} keeps {} but the cluster IPAM says: {error}", e.id, e.ip);
                    }
                }
                Err(_) => break, // the store is unreachable: at the next tick
            }
        }
        drop(state);
        tokio::select! {
            _ = tokio::time::sleep(RESYNC) => {}
            changed = lease.changed() => if changed.is_err() { return },
            _ = p.shutdown.wait() => return,
        }
    }
}

/// Follows the cluster: the Docker resolver's names, and the mirror.
async fn follow_cluster<S: Store + Transact>(p: Arc<Plugin<S>>, view: NameView) {
    let mut updates = watch_prefix(p.backend.store.clone(), cluster_keys::ROOT.to_owned(), p.shutdown.clone());
    let mut cluster = Topology::default();
    let mut markers: BTreeMap<String, Marker> = BTreeMap::new();
    let mut synced = false;
    let mut resync = tokio::time::interval(RESYNC);
    let mut mirrored = tokio::time::Instant::now() - RESYNC;
    loop {
        let mut tick = false;
        tokio::select! {
            update = updates.recv() => {
                let Some(update) = update else { return };
                absorb(&mut cluster, &mut markers, update);
                while let Ok(more) = updates.try_recv() {
                    absorb(&mut cluster, &mut markers, more);
                }
                synced = true;
            }
            _ = p.bindings_changed.notified() => {}
            _ = resync.tick() => tick = true,
            _ = p.shutdown.wait() => return,
        }
        if !synced {
            continue;
        }
        let bound = p.state.lock().await.bound_names();
        update_view(&view, &cluster, &bound);
        // dockerd is asked at most once a second (other keys change more often).
        if p.config.mirror && (tick || mirrored.elapsed() >= Duration::from_secs(1)) {
            mirror(&p, &cluster, &markers).await;
            mirrored = tokio::time::Instant::now();
        }
    }
}

fn absorb(cluster: &mut Topology, markers: &mut BTreeMap<String, Marker>, update: WatchUpdate) {
    match update {
        WatchUpdate::Reset(entries) => {
            *cluster = Topology::from_entries(&entries);
            markers.clear();
            for entry in &entries {
                put_marker(markers, &entry.key, &entry.value);
            }
        }
        WatchUpdate::Event(event) => {
            match &event {
                WatchEvent::Put(entry) => put_marker(markers, &entry.key, &entry.value),
                WatchEvent::Delete { key, .. } => {
                    if let Some(id) = key.strip_prefix(MARKERS) {
                        markers.remove(id);
                    }
                }
            }
            // This view is rebuilt whole after each batch (see `update_view`), so what
            // changed is not tracked.
            cluster.apply(&event, &mut NamesTouched::default());
        }
    }
}

fn put_marker(markers: &mut BTreeMap<String, Marker>, key: &str, value: &[u8]) {
    if let Some(id) = key.strip_prefix(MARKERS) {
        match serde_json::from_slice::<Marker>(value) {
            Ok(marker) => {
                markers.insert(id.to_owned(), marker);
            }
            Err(error) => tracing::warn!("skipping malformed Docker network marker {key}: {error}"),
        }
    }
}

/// The cluster's names, and the querier on every network bound to this host's Docker.
pub fn view_records(cluster: &Topology, bound: &[String]) -> (Vec<dns::DnsNetwork>, Vec<dns::DnsContainer>) {
    let (mut networks, mut containers) = cluster.dns_records();
    networks.push(dns::DnsNetwork { name: QUERIER_NETWORK.into(), internal: false });
    let endpoints = std::iter::once(QUERIER_NETWORK.to_owned())
        .chain(bound.iter().cloned())
        .map(|network| dns::DnsEndpoint { network, ip: Ipv4Addr::UNSPECIFIED, aliases: Vec::new() })
        .collect();
    containers.push(dns::DnsContainer { id: QUERIER.into(), name: QUERIER.into(), endpoints });
    (networks, containers)
}

fn update_view(view: &NameView, cluster: &Topology, bound: &[String]) {
    let (networks, containers) = view_records(cluster, bound);
    for error in view.replace_all(networks, containers) {
        tracing::warn!("a name left out of Docker's DNS: {error}");
    }
}

/// Makes this dockerd hold the networks created through Docker anywhere in the
/// cluster, and drop those whose cluster network is gone.
async fn mirror<S: Store + Transact>(p: &Plugin<S>, cluster: &Topology, markers: &BTreeMap<String, Marker>) {
    let Some(docker) = &p.docker else { return };
    let existing = match docker.networks(&p.config.name).await {
        Ok(existing) => existing,
        Err(error) => {
            tracing::debug!("mirror: {error}");
            return;
        }
    };
    let state = p.state.lock().await.clone();
    for (cluster_id, marker) in markers {
        let wanted = cluster.networks.contains_key(cluster_id) && !state.declined.contains(cluster_id);
        let present = existing.iter().any(|n| n.name == marker.name)
            || state.networks.values().any(|n| n.subnet == marker.subnet);
        if !wanted || present {
            continue;
        }
        let create = NetworkCreate {
            name: &marker.name,
            driver: &p.config.name,
            subnet: marker.subnet.to_string(),
            gateway: marker.gateway.to_string(),
            internal: marker.internal,
        };
        match docker.create_network(&create).await {
            Ok(()) => {
                tracing::info!(network = %marker.name, "created in this host's Docker (made through Docker on {})", marker.created_on)
            }
            Err(error) => tracing::warn!("mirror: {error}"),
        }
    }
    // A declined network that is gone from the cluster needs no more remembering.
    if state.declined.iter().any(|id| !markers.contains_key(id)) {
        let mut current = p.state.lock().await;
        current.declined.retain(|id| markers.contains_key(id));
        if let Err(error) = current.save(&p.config.state_dir) {
            tracing::error!("{error}");
        }
    }
    for n in &existing {
        let Some(cluster_id) = state.networks.get(&n.id).and_then(|b| b.cluster_id()) else { continue };
        if !cluster.networks.contains_key(cluster_id) && !markers.contains_key(cluster_id) {
            match docker.remove_network(&n.id).await {
                Ok(()) => {
                    tracing::info!(network = %n.name, "removed from this host's Docker: the cluster network is gone")
                }
                Err(error) => tracing::warn!("mirror: {error}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dns_names_are_published() {
        for good in ["busybox01", "web.1", "a_b-c"] {
            assert!(dns_name(good), "{good}");
        }
        for bad in ["", "a..b", ".a", "a b", &"x".repeat(64)] {
            assert!(!dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_querier_sees_the_bound_networks_and_forwards_the_rest() {
        let view = NameView::new();
        let (networks, mut containers) = view_records(&Topology::default(), &["my_network".to_owned()]);
        containers.push(dns::DnsContainer {
            id: "busybox02".into(),
            name: "busybox02".into(),
            endpoints: vec![dns::DnsEndpoint {
                network: "my_network".into(),
                ip: Ipv4Addr::new(10, 0, 9, 3),
                aliases: vec![],
            }],
        });
        containers.push(dns::DnsContainer {
            id: "other".into(),
            name: "other".into(),
            endpoints: vec![dns::DnsEndpoint {
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
