//! The cluster as `overlay list` and `overlay info` show it, read from the store.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ClusterError, HealthRecord, ManagerRecord, NodeRecord, keys};
use crate::store::Store;

/// A live node and the leading manager's verdict on it (none if no manager leads).
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub record: NodeRecord,
    pub health: Option<HealthRecord>,
}

impl NodeView {
    /// "Healthy", "Unhealthy", or "Unknown" when no manager has judged the node yet.
    pub fn status(&self) -> String {
        self.health.as_ref().map_or_else(|| "Unknown".to_owned(), |h| h.status.to_string())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    /// Sorted by name, then address.
    pub nodes: Vec<NodeView>,
    pub manager: Option<ManagerRecord>,
    /// Keys whose value could not be read (logged).
    pub skipped: Vec<String>,
}

/// Reads the nodes, their health and the leader. Malformed values are logged and
/// skipped, never fatal.
pub async fn read<S: Store>(store: &S) -> Result<ClusterView, ClusterError> {
    let mut skipped = Vec::new();
    let mut health: BTreeMap<String, HealthRecord> = BTreeMap::new();
    for entry in store.list(keys::HEALTH).await?.entries {
        let Some(id) = keys::id_of(&entry.key, keys::HEALTH) else { continue };
        match serde_json::from_slice(&entry.value) {
            Ok(record) => {
                health.insert(id.to_owned(), record);
            }
            Err(error) => {
                tracing::warn!("skipping malformed health record at {}: {error}", entry.key);
                skipped.push(entry.key);
            }
        }
    }
    let mut nodes = Vec::new();
    for entry in store.list(keys::NODES).await?.entries {
        let Some(id) = keys::id_of(&entry.key, keys::NODES) else {
            tracing::warn!("skipping unexpected key {}", entry.key);
            skipped.push(entry.key);
            continue;
        };
        match serde_json::from_slice::<NodeRecord>(&entry.value) {
            Ok(record) if record.id == id => {
                let health = health.remove(id);
                nodes.push(NodeView { record, health });
            }
            Ok(record) => {
                tracing::warn!("skipping {}: it holds the record of node {}", entry.key, record.id);
                skipped.push(entry.key);
            }
            Err(error) => {
                tracing::warn!("skipping malformed node record at {}: {error}", entry.key);
                skipped.push(entry.key);
            }
        }
    }
    nodes.sort_by(|a, b| (&a.record.name, a.record.address).cmp(&(&b.record.name, b.record.address)));
    let manager = match store.get(keys::LEADER).await? {
        None => None,
        Some(entry) => match serde_json::from_slice(&entry.value) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!("skipping malformed manager record at {}: {error}", entry.key);
                skipped.push(entry.key);
                None
            }
        },
    };
    Ok(ClusterView { nodes, manager, skipped })
}
