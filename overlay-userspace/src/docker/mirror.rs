//! The mirror of cluster networks onto this host's dockerd: a network created through
//! Docker on any host (marked under `v1/docker/networks/`) is created in this dockerd
//! too (`POST /networks/create` with its subnet and gateway, which binds by subnet),
//! and removed from it when its cluster network is gone (but not while the store's loss
//! of its data is recent: `cluster::epoch`). Networks removed from this host's Docker
//! while still in use elsewhere are declined: not brought back here.

use std::collections::BTreeMap;

use super::{bindings::Marker, client::NetworkCreate, client::NetworkSummary, plugin::Plugin};
use crate::{
    store::{Store, Transact},
    topology::Topology,
};

/// One pass: `listed` is dockerd's networks of this driver, as it listed them just now.
pub async fn pass<S: Store + Transact>(
    p: &Plugin<S>,
    topology: &Topology,
    markers: &BTreeMap<String, Marker>,
    listed: &[NetworkSummary],
) {
    let Some(docker) = &p.docker else { return };
    let state = p.state.lock().await.clone();
    for (cluster_id, marker) in markers {
        let wanted = topology.networks.contains_key(cluster_id) && !state.declined.contains(cluster_id);
        let present =
            listed.iter().any(|n| n.name == marker.name) || state.networks.values().any(|n| n.subnet == marker.subnet);
        if !wanted || present {
            continue;
        }
        let create = NetworkCreate {
            name: &marker.name,
            driver: &p.config.name,
            subnet: marker.subnet.to_string(),
            gateway: marker.gateway.to_string(),
            internal: marker.internal,
            cluster_id,
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
        p.save_or_log(&current);
    }
    let holding = match &p.backend.epoch {
        Some(epoch) => epoch.standing().await.holding(),
        None => false,
    };
    for n in listed.iter().filter(|_| !holding) {
        let Some(cluster_id) = state.networks.get(&n.id).and_then(|b| b.cluster_id()) else { continue };
        if !topology.networks.contains_key(cluster_id) && !markers.contains_key(cluster_id) {
            match docker.remove_network(&n.id).await {
                Ok(()) => {
                    tracing::info!(network = %n.name, "removed from this host's Docker: the cluster network is gone")
                }
                Err(error) => tracing::warn!("mirror: {error}"),
            }
        }
    }
}
