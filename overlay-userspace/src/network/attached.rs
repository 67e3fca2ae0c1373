//! What is attached to a network: `overlay network inspect` lists its endpoints by
//! host, and `overlay network rm` removes it only while nothing is. Both read the
//! network's addresses from the IPAM, which itself finds networks in the registry.

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::Serialize;

use super::{
    NetworkError, NetworkRecord,
    ipam::{self, Allocation},
    keys,
    registry::{ATTEMPTS, find, find_entry, stored_id},
};
use crate::{
    cluster::{self, NodeRecord},
    store::{Condition, Op, Store, Transact},
};

/// An endpoint attached to a network, as `overlay network inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointView {
    pub endpoint: String,
    pub address: Ipv4Addr,
    pub node_id: String,
}

/// `overlay network inspect`: the record and the endpoints on each host (by node name).
#[derive(Clone, Debug, Serialize)]
pub struct NetworkView {
    #[serde(flatten)]
    pub network: NetworkRecord,
    pub scope: &'static str,
    pub endpoints: BTreeMap<String, Vec<EndpointView>>,
}

/// Node ID -> node name, for the live nodes.
async fn node_names<S: Store>(store: &S) -> Result<BTreeMap<String, String>, NetworkError> {
    let listing = store.list(cluster::keys::NODES).await?;
    Ok(listing
        .entries
        .iter()
        .filter_map(|e| serde_json::from_slice::<NodeRecord>(&e.value).ok())
        .map(|r| (r.id, r.name))
        .collect())
}

fn host_name(names: &BTreeMap<String, String>, node_id: &str) -> String {
    names.get(node_id).cloned().unwrap_or_else(|| node_id.to_owned())
}

/// The network and its endpoints grouped by host (the node's name, or its ID if the
/// node is not registered).
pub async fn inspect<S: Store>(store: &S, network: &str) -> Result<NetworkView, NetworkError> {
    let record = find(store, network).await?;
    let allocations = ipam::allocations(store, &record.id).await?;
    let names = node_names(store).await?;
    let mut endpoints: BTreeMap<String, Vec<EndpointView>> = BTreeMap::new();
    for allocation in allocations {
        endpoints.entry(host_name(&names, &allocation.node)).or_default().push(EndpointView {
            endpoint: allocation.endpoint,
            address: allocation.address,
            node_id: allocation.node,
        });
    }
    Ok(NetworkView { scope: record.scope(), network: record, endpoints })
}

fn describe(allocations: &[Allocation], names: &BTreeMap<String, String>) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = allocations
        .iter()
        .take(SHOWN)
        .map(|a| format!("{} ({} on {})", a.endpoint, a.address, host_name(names, &a.node)))
        .collect();
    if allocations.len() > SHOWN {
        text.push(format!("and {} more", allocations.len() - SHOWN));
    }
    text.join(", ")
}

/// Removes a network (by name, ID or unique ID prefix) if no endpoint is attached,
/// atomically: an address allocated at the same moment either makes the removal fail
/// (naming it) or fails itself because the network is gone.
pub async fn remove<S: Transact>(store: &S, network: &str) -> Result<NetworkRecord, NetworkError> {
    for _ in 0..ATTEMPTS {
        let (record, revision) = find_entry(store, network).await?;
        let mut when = vec![
            Condition::ModRevision(keys::id(&record.id), revision),
            Condition::PrefixEmpty(ipam::keys::network(&record.id)),
        ];
        let mut then = vec![Op::Delete(keys::id(&record.id))];
        // The name and VNI keys go too, if they are still this network's.
        for key in [keys::name(&record.name), keys::vni(record.vni)] {
            if let Some(entry) = store.get(&key).await?
                && stored_id(&entry) == record.id
            {
                when.push(Condition::ModRevision(key.clone(), entry.mod_revision));
                then.push(Op::Delete(key));
            }
        }
        if store.txn(when, then, Vec::new()).await?.succeeded {
            tracing::info!(network = %record.name, id = %record.id, "network removed");
            return Ok(record);
        }
        let attached = ipam::allocations(store, &record.id).await?;
        if !attached.is_empty() {
            let names = node_names(store).await?;
            return Err(NetworkError::InUse {
                name: record.name,
                count: attached.len(),
                endpoints: describe(&attached, &names),
            });
        }
        // The record changed, or an endpoint came and went: look again.
    }
    Err(NetworkError::Contention { operation: "network rm", attempts: ATTEMPTS })
}
