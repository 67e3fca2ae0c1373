//! Docker endpoints on this host: attached (the veth, the datapath entry, the record
//! every host follows), detached, recovered after a restart of the plugin, named once
//! dockerd knows the container, and kept on the node's current lease.

use std::{collections::BTreeMap, os::fd::AsFd, sync::Arc, time::Duration};

use super::{
    error::DriverError,
    plugin::Plugin,
    state::{DockerEndpoint, State},
};
use crate::{
    dns,
    egress::{self, host::connect_container},
    endpoint::{self, EndpointRecord},
    netlink::VethSpec,
    network::ipam::Release,
    store::{Backoff, Store, Transact},
};

/// How often the endpoint records are checked against the current lease, besides on
/// every change of the lease.
const REPUBLISH_EVERY: Duration = Duration::from_secs(3);
/// Asking dockerd for the container behind a new endpoint: from this delay, doubling to
/// the next, for at most the last. dockerd knows the name once the container has
/// started, shortly after the join.
const NAME_FIRST_TRY: Duration = Duration::from_millis(50);
const NAME_MAX_DELAY: Duration = Duration::from_secs(2);
const NAME_GIVE_UP: Duration = Duration::from_secs(120);
/// How long an endpoint of the state must be missing from dockerd's view before it is
/// taken for gone: dockerd lists an endpoint only once it is joined to a container, a
/// moment after the plugin created it.
const UNLISTED_FOR: Duration = Duration::from_secs(10);

/// The record other hosts learn the endpoint from (datapath and names). Until dockerd
/// has told the container's name, it is `docker-` and the endpoint ID's first 12 digits.
pub fn record_of<S>(p: &Plugin<S>, e: &DockerEndpoint) -> EndpointRecord {
    EndpointRecord {
        id: e.id.clone(),
        network_id: e.cluster_network.clone(),
        node_id: p.backend.node_id.clone(),
        container: e.container.clone().unwrap_or_else(|| format!("docker-{}", e.id.get(..12).unwrap_or(&e.id))),
        aliases: e.aliases.clone(),
        ip: e.ip,
        mac: e.mac,
    }
}

/// The veth (`ip link add ovX mtu M type veth peer name opX address MAC mtu M`, both in
/// the host's namespace: dockerd moves the peer into the container), the datapath on
/// the host side, and the endpoint record under the node's lease. A failure undoes what
/// was made.
pub async fn attach<S: Store + Transact>(p: &Plugin<S>, e: &DockerEndpoint) -> Result<(), DriverError> {
    p.backend.host.delete_link(&e.host_interface).await?;
    let here = std::fs::File::open("/proc/thread-self/ns/net").map_err(DriverError::OwnNamespace)?;
    p.backend
        .host
        .create_veth(&VethSpec {
            name: &e.host_interface,
            peer_name: &e.peer_interface,
            peer_netns: here.as_fd(),
            peer_mac: Some(e.mac),
            mtu: p.config.mtu,
        })
        .await?;
    let rest = async {
        p.backend.host.set_up(&e.host_interface).await?;
        connect(p, e).await?;
        let record = record_of(p, e);
        p.backend.datapath.lock().await.add_local_endpoint(&record.local_spec(e.vni, &e.host_interface))?;
        endpoint::publish(&p.backend.store, &record, p.lease_id()).await?;
        Ok::<_, DriverError>(())
    };
    if let Err(error) = rest.await {
        detach(p, e).await;
        return Err(error);
    }
    Ok(())
}

/// The host's side of egress for an endpoint (docs/egress.md): its /32 route, unless
/// its network is internal, and its published ports, as native containers have them.
async fn connect<S>(p: &Plugin<S>, e: &DockerEndpoint) -> Result<(), DriverError> {
    let Some(egress) = &p.backend.egress else {
        return match e.ports.is_empty() {
            true => Ok(()),
            false => Err(DriverError::PortMap("this agent runs without egress, so it publishes no ports".into())),
        };
    };
    if e.internal {
        return Ok(());
    }
    connect_container(&p.backend.host, &e.host_interface, e.ip, e.mac).await?;
    if !e.ports.is_empty() {
        egress.publish(&egress::docker_owner(&e.id), e.ip, &e.ports).await?;
    }
    Ok(())
}

/// Undoes [`attach`], ignoring what is already gone.
pub async fn detach<S: Store>(p: &Plugin<S>, e: &DockerEndpoint) {
    if let Some(egress) = &p.backend.egress
        && let Err(error) = egress.unpublish(&egress::docker_owner(&e.id)).await
    {
        tracing::warn!("endpoint {}: removing its published ports: {error}", e.id);
    }
    let record = record_of(p, e);
    if let Err(error) =
        p.backend.datapath.lock().await.remove_local_endpoint(&record.local_spec(e.vni, &e.host_interface))
    {
        tracing::debug!("endpoint {}: datapath removal: {error}", e.id);
    }
    if let Err(error) = endpoint::withdraw(&p.backend.store, &record).await {
        tracing::warn!("endpoint {}: removing its record: {error}", e.id);
    }
    if let Err(error) = p.backend.host.delete_link(&e.host_interface).await {
        tracing::warn!("endpoint {}: {error}", e.id);
    }
}

/// An endpoint whose container is gone without dockerd saying so (it went away while
/// the plugin was stopped, or dockerd lost its network): detached, and its address
/// released.
pub async fn remove_gone<S: Store + Transact>(p: &Plugin<S>, e: &DockerEndpoint) {
    detach(p, e).await;
    if let Some(allocation) = &e.allocation
        && let Err(error) = p.backend.ipam.release(&e.cluster_network, &Release::Endpoint(allocation.clone())).await
    {
        tracing::warn!("endpoint {}: releasing {}: {error}", e.id, e.ip);
    }
}

/// After a restart: endpoints whose host interface is still there (their container
/// kept running) get their datapath entry back, and their name is learnt if it was not
/// yet; the others are removed ([`remove_gone`]). Records go back on the lease through
/// [`keep_on_lease`].
pub async fn recover<S: Store + Transact>(p: &Plugin<S>, state: &mut State) {
    let mut gone = Vec::new();
    for e in state.endpoints.values().filter(|e| e.joined) {
        match p.backend.host.link_index(&e.host_interface).await {
            Ok(Some(_)) => {
                let spec = record_of(p, e).local_spec(e.vni, &e.host_interface);
                if let Err(error) = p.backend.datapath.lock().await.add_local_endpoint(&spec) {
                    tracing::error!("endpoint {}: restoring its datapath entry: {error}", e.id);
                }
                if let Err(error) = connect(p, e).await {
                    tracing::error!("endpoint {}: restoring its way out and published ports: {error}", e.id);
                }
                if e.container.is_none() {
                    p.submit(super::plugin::Job::LearnName { endpoint_id: e.id.clone() });
                }
            }
            Ok(None) => gone.push(e.id.clone()),
            Err(error) => tracing::warn!("endpoint {}: {error}", e.id),
        }
    }
    for id in gone {
        if let Some(e) = state.endpoints.remove(&id) {
            tracing::info!("endpoint {id}: its container went away while the plugin was stopped; cleaning up");
            remove_gone(p, &e).await;
        }
    }
    // Ports published for endpoints this state no longer has.
    if let Some(egress) = &p.backend.egress {
        let keep = state.endpoints.values().filter(|e| e.joined).map(|e| egress::docker_owner(&e.id)).collect();
        if let Err(error) = egress.retain("docker/", &keep).await {
            tracing::warn!("removing the published ports of endpoints that are gone: {error}");
        }
    }
}

/// Removes endpoints dockerd is done with but the state still holds ([`remove_gone`]).
/// An agent killed during `docker rm` or `docker stop` leaves such an endpoint: dockerd's
/// Leave or DeleteEndpoint call failed, dockerd went on without it, and a restart that
/// came before dockerd had deleted the container's namespace found its veth still there.
/// `unlisted` holds since when each endpoint has been missing from dockerd's networks;
/// one missing for [`UNLISTED_FOR`] goes. Networks dockerd cannot be asked about now, or
/// no longer has (the bindings forget those), are left alone.
pub async fn forget_unlisted<S: Store + Transact>(
    p: &Plugin<S>,
    unlisted: &mut BTreeMap<String, tokio::time::Instant>,
) {
    let Some(docker) = &p.docker else { return };
    let mut by_network: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in p.state.lock().await.endpoints.values() {
        by_network.entry(e.docker_network.clone()).or_default().push(e.id.clone());
    }
    let known: std::collections::BTreeSet<&String> = by_network.values().flatten().collect();
    unlisted.retain(|id, _| known.contains(id));
    let now = tokio::time::Instant::now();
    for (network, ids) in &by_network {
        let listed = match docker.network_endpoints(network).await {
            Ok(Some(listed)) => listed,
            Ok(None) => continue,
            Err(error) => {
                tracing::debug!("dockerd's endpoints on {network}: {error}");
                return;
            }
        };
        for id in ids {
            if listed.contains(id) {
                unlisted.remove(id);
            } else {
                unlisted.entry(id.clone()).or_insert(now);
            }
        }
    }
    let due: Vec<String> = unlisted
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= UNLISTED_FOR)
        .map(|(id, _)| id.clone())
        .collect();
    if due.is_empty() {
        return;
    }
    let mut state = p.state.lock().await;
    let mut removed = false;
    for id in due {
        unlisted.remove(&id);
        // Deleted meanwhile by dockerd's own call: nothing left to do.
        if let Some(e) = state.endpoints.remove(&id) {
            tracing::info!("endpoint {id}: dockerd no longer has it (a call of its was cut short); cleaning up");
            remove_gone(p, &e).await;
            removed = true;
        }
    }
    if removed {
        p.save_or_log(&state);
    }
}

/// [`Job::LearnName`](super::plugin::Job::LearnName): the name (and aliases) of the
/// container behind an endpoint, from dockerd, which knows it once the container has
/// started; published at once. Names that are not DNS names are not published, so they
/// cannot spoil the names of every host.
pub async fn learn_name<S: Store + Transact>(p: Arc<Plugin<S>>, endpoint_id: String) {
    let Some(docker) = &p.docker else { return };
    let give_up = tokio::time::Instant::now() + NAME_GIVE_UP;
    let mut backoff = Backoff::new(NAME_FIRST_TRY, NAME_MAX_DELAY);
    while tokio::time::Instant::now() < give_up {
        if p.shutdown.sleep(backoff.next_delay()).await.is_err() {
            return;
        }
        let Some(network) = p.state.lock().await.endpoints.get(&endpoint_id).map(|e| e.docker_network.clone()) else {
            return; // left meanwhile
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
        if let Err(error) = dns::check_name(&found.name, "container") {
            tracing::warn!("container {:?} is not published under its name: {error}", found.name);
            return;
        }
        e.aliases =
            found.aliases.into_iter().filter(|a| dns::check_name(a, "alias").is_ok() && *a != found.name).collect();
        e.container = Some(found.name);
        let e = e.clone();
        if e.joined
            && let Err(error) = endpoint::publish(&p.backend.store, &record_of(&p, &e), p.lease_id()).await
        {
            tracing::warn!("endpoint {endpoint_id}: {error}");
        }
        p.save_or_log(&state);
        return;
    }
    tracing::warn!("endpoint {endpoint_id}: dockerd named no container for it within {NAME_GIVE_UP:?}");
}

/// Keeps every joined endpoint's record and address on the node's current lease (after
/// a restart, or when the node registered again under a new lease), until shutdown.
pub async fn republish<S: Store + Transact>(p: Arc<Plugin<S>>) {
    let mut lease = p.backend.lease.clone();
    loop {
        let state = p.state.lock().await;
        let current = p.lease_id();
        for e in state.endpoints.values().filter(|e| e.joined) {
            let record = record_of(&p, e);
            let held =
                endpoint::keep_on_lease(&p.backend.store, &p.backend.ipam, &record, e.allocation.as_deref(), current);
            if let Err(error) = held.await {
                tracing::debug!("endpoints on the current lease: {error}; again in {REPUBLISH_EVERY:?}");
                break;
            }
        }
        drop(state);
        tokio::select! {
            _ = tokio::time::sleep(REPUBLISH_EVERY) => {}
            changed = lease.changed() => if changed.is_err() { return },
            _ = p.shutdown.wait() => return,
        }
    }
}
