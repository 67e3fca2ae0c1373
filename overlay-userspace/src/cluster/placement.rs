//! The leading manager's placement of containers: it follows the container records
//! (`v1/containers/NAME`) and gives each one that has no node yet the node the
//! [`scheduler`](super::scheduler) picks among the live, healthy nodes. A container
//! that cannot be placed gets a failed status saying why, so `overlay run` can tell.

use std::collections::BTreeMap;

use super::{
    NodeRecord,
    scheduler::{self, Candidate},
};
use crate::{
    container::record::{self, ContainerRecord, ContainerStatus, State},
    store::{Entry, Expect, PutOutcome, Store, WatchEvent, WatchUpdate, name_under},
};

/// The container records, by name, as the watch of [`record::CONTAINERS`] reports them.
#[derive(Debug, Default)]
pub struct Placement {
    containers: BTreeMap<String, Entry>,
}

impl Placement {
    pub fn apply(&mut self, update: WatchUpdate) {
        match update {
            WatchUpdate::Reset(entries) => {
                self.containers = entries
                    .into_iter()
                    .filter_map(|e| Some((name_under(&e.key, record::CONTAINERS)?.to_owned(), e)))
                    .collect();
            }
            WatchUpdate::Event(WatchEvent::Put(entry)) => {
                if let Some(name) = name_under(&entry.key, record::CONTAINERS) {
                    self.containers.insert(name.to_owned(), entry);
                }
            }
            WatchUpdate::Event(WatchEvent::Delete { key, .. }) => {
                if let Some(name) = name_under(&key, record::CONTAINERS) {
                    self.containers.remove(name);
                }
            }
        }
    }

    /// Places every container that has no node yet on one of `nodes` (the live nodes
    /// that are not Unhealthy). Each placement is a write conditional on the record's
    /// revision, so a container changed meanwhile is left for the next round.
    pub async fn place_pending<S: Store>(&self, store: &S, nodes: &[&NodeRecord]) {
        let pending: Vec<(String, Entry, ContainerRecord)> = self
            .containers
            .iter()
            .filter_map(|(name, e)| {
                let r = serde_json::from_slice::<ContainerRecord>(&e.value).ok()?;
                r.node_id.is_none().then(|| (name.clone(), e.clone(), r))
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in self.containers.values() {
            if let Some(node) = serde_json::from_slice::<ContainerRecord>(&e.value).ok().and_then(|r| r.node_id) {
                *counts.entry(node).or_default() += 1;
            }
        }
        for (name, entry, mut container) in pending {
            let candidates: Vec<Candidate> = nodes
                .iter()
                .map(|n| Candidate {
                    id: n.id.clone(),
                    name: n.name.clone(),
                    labels: n.all_labels(),
                    containers: counts.get(&n.id).copied().unwrap_or(0),
                })
                .collect();
            match scheduler::place(&candidates, None, &container.constraints, container.strategy, rand::random()) {
                Ok(node) => {
                    container.node_id = Some(node.clone());
                    let Ok(value) = serde_json::to_vec(&container) else { continue };
                    match store.put_if(&entry.key, value, None, Expect::ModRevision(entry.mod_revision)).await {
                        Ok(PutOutcome::Written) => {
                            *counts.entry(node.clone()).or_default() += 1;
                            let node_name = nodes.iter().find(|n| n.id == node).map(|n| n.name.as_str()).unwrap_or("");
                            tracing::info!("placed container {name} on {node_name} ({:?})", container.strategy);
                        }
                        Ok(PutOutcome::Conflict(_)) => {}
                        Err(error) => tracing::warn!("placing container {name}: {error}"),
                    }
                }
                Err(error) => {
                    let status = ContainerStatus {
                        name: name.clone(),
                        node_id: String::new(),
                        node_name: "-".into(),
                        state: State::Failed,
                        message: Some(error.to_string()),
                        networks: Vec::new(),
                        ports: Vec::new(),
                        netns: String::new(),
                    };
                    let key = record::status_key(&name);
                    if let Ok(value) = serde_json::to_vec(&status) {
                        let _ = store.put_if(&key, value, None, Expect::Absent).await;
                    }
                }
            }
        }
    }
}
