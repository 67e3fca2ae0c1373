//! Endpoints: a container's interface on an overlay network, as published in the store
//! by the agent that runs the container. Every host's datapath and DNS follow them.
//!
//! `v1/endpoints/NETWORK-ID/ENDPOINT-ID` → [`EndpointRecord`] (JSON), attached to the
//! lease of the node that runs the container, so a dead node's endpoints vanish.
//!
//! Both the agent (its own containers) and the Docker plugin (Docker's) publish them,
//! through [`publish`], [`withdraw`] and [`keep_on_lease`].

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{
    datapath::LocalEndpointSpec,
    network::{
        self, NetworkError,
        ipam::{Ipam, IpamError, keys as ipam_keys},
    },
    store::{LeaseId, Store, StoreError, Transact},
};

/// Directory of all endpoints.
pub const ENDPOINTS: &str = "v1/endpoints/";

pub fn key(network_id: &str, endpoint_id: &str) -> String {
    format!("{ENDPOINTS}{network_id}/{endpoint_id}")
}

pub fn network_dir(network_id: &str) -> String {
    format!("{ENDPOINTS}{network_id}/")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub id: String,
    pub network_id: String,
    pub node_id: String,
    /// The container's name (resolvable by DNS on the network).
    pub container: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("encoding the record of endpoint {id}: {source}")]
    Encode { id: String, source: serde_json::Error },
    #[error("publishing endpoint {id}: {source}")]
    Store { id: String, source: StoreError },
}

impl EndpointRecord {
    /// This host's datapath entry for the endpoint, whose veth's host side is
    /// `host_interface`, on the network with VNI `vni`.
    pub fn local_spec(&self, vni: u32, host_interface: &str) -> LocalEndpointSpec {
        LocalEndpointSpec { vni, ip: self.ip, mac: self.mac, host_interface: host_interface.to_owned() }
    }

    /// Parses a stored value; `None` (after a warning) for a malformed one, which is
    /// skipped rather than trusted.
    pub fn parse(key: &str, value: &[u8]) -> Option<EndpointRecord> {
        match serde_json::from_slice::<EndpointRecord>(value) {
            Ok(record) if key.ends_with(&format!("/{}", record.id)) => Some(record),
            Ok(_) => {
                tracing::warn!("skipping endpoint {key}: its ID does not match its key");
                None
            }
            Err(error) => {
                tracing::warn!("skipping malformed endpoint {key}: {error}");
                None
            }
        }
    }
}

/// Writes `record` under `lease` (the node's): from then on every host's datapath and
/// DNS have it, until it is withdrawn or the lease ends.
pub async fn publish<S: Store>(store: &S, record: &EndpointRecord, lease: LeaseId) -> Result<(), EndpointError> {
    let value = serde_json::to_vec(record).map_err(|source| EndpointError::Encode { id: record.id.clone(), source })?;
    store
        .put(&key(&record.network_id, &record.id), value, Some(lease))
        .await
        .map_err(|source| EndpointError::Store { id: record.id.clone(), source })
}

/// Deletes `record` from the store: every host drops the endpoint.
pub async fn withdraw<S: Store>(store: &S, record: &EndpointRecord) -> Result<(), StoreError> {
    store.delete(&key(&record.network_id, &record.id)).await.map(|_| ())
}

/// Keeps an endpoint of this node on `lease`, the node's current one: if its record or
/// its address is not on it (the store lost the node's previous lease, or all its data,
/// or the agent registered again), takes the address again under `lease` (`allocation`:
/// the IPAM endpoint that holds it, if the cluster IPAM gave it) and publishes the record
/// again. A network the store lost is put back first, as this host last read it
/// ([`network::restore`]): a network holding an address of ours cannot have been removed
/// on purpose. Returns whether it had to; an error only when the store cannot be read,
/// which the caller retries. An address the IPAM refuses (another endpoint took it
/// meanwhile) is logged, and asked for again at the next call.
pub async fn keep_on_lease<S: Transact>(
    store: &S,
    ipam: &Ipam<S>,
    record: &EndpointRecord,
    allocation: Option<&str>,
    lease: LeaseId,
) -> Result<bool, StoreError> {
    let on_lease = |entry: Option<crate::store::Entry>| entry.is_some_and(|e| e.lease == Some(lease));
    let published = on_lease(store.get(&key(&record.network_id, &record.id)).await?);
    let allocated = match allocation {
        Some(allocation) => on_lease(store.get(&ipam_keys::endpoint(&record.network_id, allocation)).await?),
        None => true,
    };
    if published && allocated {
        return Ok(false);
    }
    if let Some(allocation) = allocation.filter(|_| !allocated) {
        let take = || ipam.allocate(&record.network_id, allocation, &record.node_id, lease, Some(record.ip));
        let mut taken = take().await;
        if matches!(taken, Err(IpamError::Network(NetworkError::NotFound { .. })))
            && let Some(network) = ipam.known_network(&record.network_id)
            && network::restore_all(store, std::slice::from_ref(&*network)).await
        {
            taken = take().await;
        }
        if let Err(error) = taken {
            tracing::error!(
                "the endpoint of {} keeps {} but the cluster IPAM says: {error}",
                record.container,
                record.ip
            );
        }
    }
    if !published && let Err(error) = publish(store, record, lease).await {
        tracing::warn!("re-publishing the endpoint of {}: {error}", record.container);
    }
    Ok(true)
}
