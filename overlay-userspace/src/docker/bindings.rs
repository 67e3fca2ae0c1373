//! Which cluster network each Docker network of this host is bound to.
//!
//! Docker gives the driver no network name, and its network IDs differ per host. Cluster
//! networks never overlap, so a subnet names at most one cluster network: a new Docker
//! network binds at once to the cluster network with its subnet, if there is one.
//! Otherwise, once dockerd has stored it, the plugin reads its name from dockerd and
//! creates the cluster network under that name (Docker's network ID as its ID), or
//! binds to the cluster network of that name if it has the same subnet and gateway
//! ([`settle`]). Networks created through Docker are marked under
//! `v1/docker/networks/CLUSTER_ID` for the mirror of the other hosts.
//!
//! The bindings follow dockerd: a network dockerd no longer has (its data root was
//! wiped, or it removed the network while the plugin was down) is forgotten, with its
//! endpoints ([`follow_dockerd`]).

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::{
    client::NetworkSummary,
    endpoints,
    error::DriverError,
    plugin::{Job, Plugin},
    state::{Binding, DockerNetwork, State},
};
use crate::{
    network::{self, CreateRequest, NetworkError, NetworkRecord, NetworkSpec},
    store::{Backoff, Store, Transact},
};

/// Marks a cluster network created through Docker (the mirror makes it appear in the
/// dockerd of every host): `v1/docker/networks/CLUSTER_ID` → [`Marker`].
pub const MARKERS: &str = "v1/docker/networks/";
/// How long an address or endpoint request waits for a network whose cluster side is
/// still being created.
const PENDING_WAIT: Duration = Duration::from_secs(15);
/// Asking dockerd for a network it is storing: from this delay, doubling to the next,
/// for at most the last. It takes dockerd a few milliseconds.
const SETTLE_FIRST_TRY: Duration = Duration::from_millis(20);
const SETTLE_MAX_DELAY: Duration = Duration::from_millis(500);
const SETTLE_GIVE_UP: Duration = Duration::from_secs(30);

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

/// The cluster network a Docker network of this host is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNetwork {
    pub id: String,
    pub vni: u32,
    pub gateway: Ipv4Addr,
}

/// What a call knows of the network it is about.
#[derive(Clone, Copy, Debug)]
pub enum Lookup<'a> {
    /// Network driver calls name this host's Docker network.
    DockerNetwork(&'a str),
    /// IPAM calls name only the pool, which is the subnet.
    Subnet(Ipv4Net),
}

/// The cluster network whose subnet is exactly `subnet`.
pub async fn cluster_network_with<S: Store + Transact>(
    p: &Plugin<S>,
    subnet: Ipv4Net,
) -> Result<Option<NetworkRecord>, DriverError> {
    Ok(network::list(&p.backend.store).await?.into_iter().find(|n| n.subnet == subnet))
}

/// The cluster network of the Docker network `lookup` names (for a subnet: the Docker
/// network of this host with that subnet, else the cluster network with it). Waits for
/// a binding that is still pending.
pub async fn cluster_network<S: Store + Transact>(
    p: &Plugin<S>,
    lookup: Lookup<'_>,
) -> Result<ClusterNetwork, DriverError> {
    let deadline = Instant::now() + PENDING_WAIT;
    loop {
        let changed = p.bindings_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let state = p.state.lock().await;
            let docker_network = match lookup {
                Lookup::DockerNetwork(id) => state.networks.get(id),
                Lookup::Subnet(subnet) => state.network_with_subnet(subnet),
            };
            match docker_network.map(|n| (n, &n.binding)) {
                Some((n, Binding::Bound { cluster_id, vni, .. })) => {
                    return Ok(ClusterNetwork { id: cluster_id.clone(), vni: *vni, gateway: n.gateway });
                }
                Some((_, Binding::Failed { message })) => return Err(DriverError::BindingFailed(message.clone())),
                Some((_, Binding::Pending)) => {}
                None => {
                    drop(state);
                    return match lookup {
                        Lookup::DockerNetwork(id) => Err(DriverError::UnknownNetwork(id.to_owned())),
                        Lookup::Subnet(subnet) => match cluster_network_with(p, subnet).await? {
                            Some(record) => {
                                Ok(ClusterNetwork { id: record.id, vni: record.vni, gateway: record.gateway })
                            }
                            None => Err(DriverError::NoNetworkWithSubnet(subnet)),
                        },
                    };
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, changed).await.is_err() {
            return Err(DriverError::StillBinding);
        }
    }
}

/// [`Job::SettleNetwork`]: waits until dockerd has stored the Docker network Docker
/// just created (so that it is known to dockerd from then on), and binds it if it is
/// pending: creates its cluster network under the name dockerd gives it, or binds to
/// the cluster network of that name if it has the same subnet and gateway.
pub async fn settle<S: Store + Transact>(p: Arc<Plugin<S>>, docker_id: String) {
    let mut name = None;
    if let Some(docker) = &p.docker {
        let give_up = tokio::time::Instant::now() + SETTLE_GIVE_UP;
        let mut backoff = Backoff::new(SETTLE_FIRST_TRY, SETTLE_MAX_DELAY);
        let mut warned = false;
        while name.is_none() && tokio::time::Instant::now() < give_up {
            if !p.state.lock().await.networks.contains_key(&docker_id) {
                return; // dockerd deleted it meanwhile
            }
            match docker.network_name(&docker_id).await {
                Ok(found) => name = found,
                Err(error) if !warned => {
                    warned = true;
                    tracing::warn!("{error}");
                }
                Err(error) => tracing::debug!("{error}"),
            }
            if name.is_none() && p.shutdown.sleep(backoff.next_delay()).await.is_err() {
                return;
            }
        }
    }
    let Some(network) = p.state.lock().await.networks.get(&docker_id).cloned() else { return };
    if name.is_some() && !network.known_to_docker {
        let mut state = p.state.lock().await;
        if let Some(n) = state.networks.get_mut(&docker_id) {
            n.known_to_docker = true;
            p.save_or_log(&state);
        }
    }
    if network.binding != Binding::Pending {
        return;
    }
    let name = name.unwrap_or_else(|| format!("docker-{}", docker_id.get(..12).unwrap_or(&docker_id)));
    let binding = match create_or_find(&p, &docker_id, &name, &network).await {
        Ok(binding) => binding,
        Err(error) => {
            tracing::error!("Docker network {name} ({docker_id}): {error}");
            Binding::Failed { message: format!("Docker network {name}: {error}") }
        }
    };
    let mut state = p.state.lock().await;
    if let Some(n) = state.networks.get_mut(&docker_id) {
        n.binding = binding;
    }
    p.save_or_log(&state);
    drop(state);
    p.bindings_changed.notify_waiters();
}

async fn create_or_find<S: Store + Transact>(
    p: &Plugin<S>,
    docker_id: &str,
    name: &str,
    n: &DockerNetwork,
) -> Result<Binding, DriverError> {
    let request = CreateRequest {
        name: name.to_owned(),
        subnet: Some(n.subnet.to_string()),
        gateway: Some(n.gateway.to_string()),
        internal: n.internal,
        id: Some(docker_id.to_owned()),
        ..CreateRequest::default()
    };
    let spec = NetworkSpec::parse(&request)?;
    let record = match network::create(&p.backend.store, &spec, &p.config.subnet_pool).await {
        Ok(record) => record,
        Err(NetworkError::AlreadyExists { .. }) => {
            let existing = network::find(&p.backend.store, name).await?;
            if existing.subnet != n.subnet || existing.gateway != n.gateway {
                return Err(DriverError::NameTaken {
                    name: name.to_owned(),
                    subnet: existing.subnet,
                    gateway: existing.gateway,
                });
            }
            existing
        }
        Err(error) => return Err(error.into()),
    };
    let marker = Marker {
        name: record.name.clone(),
        subnet: record.subnet,
        gateway: record.gateway,
        internal: record.internal,
        created_on: p.backend.node_name.clone(),
    };
    let value =
        serde_json::to_vec(&marker).map_err(|source| DriverError::Encode { what: "a network marker", source })?;
    p.backend.store.put(&format!("{MARKERS}{}", record.id), value, None).await?;
    tracing::info!(network = %record.name, id = %record.id, "Docker network bound to the cluster network");
    Ok(Binding::Bound { cluster_id: record.id, name: record.name, vni: record.vni })
}

/// After a restart: the networks whose binding was interrupted are settled again.
pub fn resume<S>(p: &Plugin<S>, state: &State) {
    for n in state.networks.values().filter(|n| n.binding == Binding::Pending || !n.known_to_docker) {
        p.submit(Job::SettleNetwork { docker_id: n.docker_id.clone() });
    }
}

/// Forgets the Docker network `docker_id` of this host, which dockerd no longer has,
/// and removes its endpoints and releases their addresses (their containers are gone
/// with it, and dockerd will not call to release them). Its cluster network
/// stays: other hosts may use it, and creating the network here again binds to it.
pub async fn forget<S: Store + Transact>(p: &Plugin<S>, state: &mut State, docker_id: &str) {
    let Some(network) = state.networks.remove(docker_id) else { return };
    let endpoints: Vec<_> = state.endpoints.values().filter(|e| e.docker_network == docker_id).cloned().collect();
    for e in endpoints {
        state.endpoints.remove(&e.id);
        endpoints::remove_gone(p, &e).await;
    }
    let cluster = match &network.binding {
        Binding::Bound { name, .. } => name.as_str(),
        _ => "none",
    };
    tracing::info!(docker_id, cluster_network = cluster, "forgot a Docker network that dockerd no longer has");
}

/// Looks at dockerd's networks of this driver: notes those it has, and forgets those it
/// no longer has. Returns the listing (for the mirror), `None` if dockerd did not answer.
/// A network dockerd has not stored yet (its creation is under way) is not forgotten:
/// only one that dockerd had shown before the listing began can be missing from it.
pub async fn follow_dockerd<S: Store + Transact>(p: &Plugin<S>) -> Option<Vec<NetworkSummary>> {
    let docker = p.docker.as_ref()?;
    let known_before: BTreeSet<String> = {
        let state = p.state.lock().await;
        state.networks.values().filter(|n| n.known_to_docker).map(|n| n.docker_id.clone()).collect()
    };
    let listed = match docker.networks(&p.config.name).await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::debug!("dockerd's networks: {error}");
            return None;
        }
    };
    let mut state = p.state.lock().await;
    let mut changed = false;
    let mut lost = Vec::new();
    for n in state.networks.values_mut() {
        if listed.iter().any(|l| l.id == n.docker_id) {
            changed |= !n.known_to_docker;
            n.known_to_docker = true;
        } else if known_before.contains(&n.docker_id) {
            lost.push(n.docker_id.clone());
        }
    }
    for docker_id in &lost {
        forget(p, &mut state, docker_id).await;
    }
    if changed || !lost.is_empty() {
        p.save_or_log(&state);
    }
    drop(state);
    if !lost.is_empty() {
        p.bindings_changed.notify_waiters();
    }
    Some(listed)
}

/// Whether dockerd has lost the Docker network `n` of this host, which a call is about
/// to refuse a request over. Asks dockerd; `false` when it cannot tell (no API, or no
/// answer), or when dockerd has never been seen to have it.
pub async fn lost_by_dockerd<S>(p: &Plugin<S>, n: &DockerNetwork) -> bool {
    let Some(docker) = &p.docker else { return false };
    n.known_to_docker && matches!(docker.network_name(&n.docker_id).await, Ok(None))
}
