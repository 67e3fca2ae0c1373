//! The cluster as `overlay list` and `overlay info` show it, read from the store.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

use super::{ClusterError, Health, HealthRecord, ManagerRecord, NodeRecord, health::classify, keys};
use crate::store::{Store, name_under};

/// A live node and its health.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub record: NodeRecord,
    /// The leading manager's verdict (none before its first check of this node, or when
    /// no manager leads).
    pub health: Option<HealthRecord>,
    /// Without a verdict: the node's lease as this view read it, judged by the manager's
    /// rule (status, seconds since the last heartbeat). A node that has just joined has
    /// a fresh lease, so it is Healthy before any manager has looked at it.
    pub lease_health: Option<(Health, i64)>,
}

impl NodeView {
    /// "Healthy" or "Unhealthy": the manager's verdict, else what the node's lease says.
    /// "Unknown" only for a record without a lease (written by hand) or whose lease
    /// expired while the view was read (the node is leaving).
    pub fn status(&self) -> String {
        match (&self.health, self.lease_health) {
            (Some(verdict), _) => verdict.status.to_string(),
            (None, Some((status, _))) => status.to_string(),
            (None, None) => "Unknown".to_owned(),
        }
    }

    /// Seconds since the node's last heartbeat, as the verdict or the lease read gives it.
    pub fn heartbeat_age_secs(&self) -> Option<i64> {
        self.health.as_ref().map(|h| h.heartbeat_age_secs).or(self.lease_health.map(|(_, age)| age))
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
/// skipped, never fatal. A node without a verdict costs one lease request.
pub async fn read<S: Store>(store: &S) -> Result<ClusterView, ClusterError> {
    let mut skipped = Vec::new();
    let mut health: BTreeMap<String, HealthRecord> = BTreeMap::new();
    for entry in store.list(keys::HEALTH).await?.entries {
        let Some(id) = name_under(&entry.key, keys::HEALTH) else { continue };
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
        let Some(id) = name_under(&entry.key, keys::NODES) else {
            tracing::warn!("skipping unexpected key {}", entry.key);
            skipped.push(entry.key);
            continue;
        };
        match serde_json::from_slice::<NodeRecord>(&entry.value) {
            Ok(record) if record.id == id => {
                let health = health.remove(id);
                let lease_health = match (&health, entry.lease) {
                    (None, Some(lease)) => store.lease_status(lease).await?.map(|lease| {
                        let heartbeat = Duration::from_millis(record.heartbeat_ms);
                        classify(lease.granted_ttl, lease.remaining_ttl, heartbeat)
                    }),
                    _ => None,
                };
                nodes.push(NodeView { record, health, lease_health });
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
    let manager = match store.leader(keys::LEADER).await? {
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
