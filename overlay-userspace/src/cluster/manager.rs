//! The manager: one of possibly several `overlay manage` processes leads, chosen by the
//! store's election `v1/manager/leader` ([`Store::campaign`], on the manager's lease: when
//! the leader dies its lease expires and another takes the lead). The leader follows the
//! nodes through a watch and writes each node's health, and places containers on them
//! ([`placement`](super::placement)).

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use super::{
    ClusterError, Health, HealthRecord, NodeRecord, Timing,
    health::classify,
    keys::{self, HEALTH, NODES},
    placement::Placement,
    unix_now,
};
use crate::{
    container::record,
    shutdown::Shutdown,
    store::{Backoff, Entry, LeaseId, Store, WatchEvent, WatchUpdate, name_under, watch_prefix},
};
use serde::{Deserialize, Serialize};

/// The leading manager, under `v1/manager/leader`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerRecord {
    pub id: String,
    pub name: String,
    pub address: Option<IpAddr>,
    pub hostname: String,
    /// Unix time at which it took the lead.
    pub since: u64,
}

#[derive(Clone, Debug)]
pub struct ManagerConfig {
    pub name: String,
    pub address: Option<IpAddr>,
    pub hostname: String,
    pub timing: Timing,
    /// How often the leader checks the nodes' leases.
    pub check_interval: Duration,
}

/// A node as the manager tracks it.
struct Tracked {
    record: NodeRecord,
    lease: Option<LeaseId>,
    health: Option<HealthRecord>,
}

struct Manager<S: Store> {
    store: S,
    config: ManagerConfig,
    id: String,
    lease: Option<LeaseId>,
    leading: bool,
    nodes: BTreeMap<String, Tracked>,
    /// (key, revision) of malformed node records already reported.
    reported: HashSet<(String, i64)>,
    /// Set when the node view must be listed afresh.
    relist: bool,
    /// The containers, of which the leader places those without a node.
    placement: Placement,
}

/// Runs a manager until `shutdown`: campaigns, leads or follows, and on shutdown
/// revokes its lease so that another manager takes over at once.
pub async fn run<S: Store>(store: S, config: ManagerConfig, shutdown: Shutdown) -> Result<(), ClusterError> {
    let id = format!("{:016x}", rand::random::<u64>());
    let mut nodes_rx = watch_prefix(store.clone(), NODES.to_owned(), shutdown.clone());
    let mut manager = Manager {
        store,
        config,
        id,
        lease: None,
        leading: false,
        nodes: BTreeMap::new(),
        reported: HashSet::new(),
        relist: false,
        placement: Placement::default(),
    };
    let mut containers_rx = watch_prefix(manager.store.clone(), record::CONTAINERS.to_owned(), shutdown.clone());
    tracing::info!(manager_id = %manager.id, name = %manager.config.name, "manager started");
    // Retries stay well under the TTL so that the lease survives a short outage.
    let mut backoff =
        Backoff::new(Duration::from_millis(250), manager.config.timing.heartbeat.max(Duration::from_millis(500)));
    let mut next_beat = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(manager.config.check_interval.min(manager.config.timing.heartbeat));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            update = nodes_rx.recv() => match update {
                Some(update) => manager.apply(update),
                None => break,
            },
            update = containers_rx.recv() => match update {
                Some(update) => {
                    manager.placement.apply(update);
                    manager.place().await;
                }
                None => break,
            },
            _ = tick.tick() => {
                let beat_due = tokio::time::Instant::now() >= next_beat;
                match manager.step(beat_due).await {
                    Ok(()) => {
                        manager.place().await;
                        if std::mem::take(&mut manager.relist) {
                            // The lease was lost: the store may have been reset, and a
                            // reset store's history does not continue ours. Start over.
                            nodes_rx = watch_prefix(manager.store.clone(), NODES.to_owned(), shutdown.clone());
                        }
                        backoff.reset();
                        if beat_due {
                            next_beat = tokio::time::Instant::now() + manager.config.timing.heartbeat;
                        }
                    }
                    Err(ClusterError::Store(error)) => {
                        let delay = backoff.next_delay();
                        tracing::warn!("manager cannot reach the store ({error}); retrying in {delay:?}");
                        if shutdown.sleep(delay).await.is_err() {
                            break;
                        }
                    }
                    Err(other) => return Err(other),
                }
            }
        }
    }
    if let Some(lease) = manager.lease {
        match manager.store.revoke_lease(lease).await {
            Ok(()) => tracing::info!("manager stopped; its lease is revoked"),
            Err(error) => tracing::warn!("manager stopped; could not revoke its lease ({error})"),
        }
    }
    Ok(())
}

impl<S: Store> Manager<S> {
    /// As leader: places the containers that have no node, on the live nodes that are
    /// not Unhealthy (a node not checked yet counts as healthy).
    async fn place(&self) {
        if !self.leading {
            return;
        }
        let nodes: Vec<&NodeRecord> = self
            .nodes
            .values()
            .filter(|t| t.health.as_ref().is_none_or(|h| h.status == Health::Healthy))
            .map(|t| &t.record)
            .collect();
        self.placement.place_pending(&self.store, &nodes).await;
    }

    fn apply(&mut self, update: WatchUpdate) {
        match update {
            WatchUpdate::Reset(entries) => {
                let before: HashSet<String> = self.nodes.keys().cloned().collect();
                let mut seen = HashSet::new();
                for entry in entries {
                    if let Some(id) = self.upsert(entry) {
                        seen.insert(id);
                    }
                }
                for gone in before.difference(&seen) {
                    self.remove(gone);
                }
            }
            WatchUpdate::Event(WatchEvent::Put(entry)) => {
                self.upsert(entry);
            }
            WatchUpdate::Event(WatchEvent::Delete { key, .. }) => {
                if let Some(id) = name_under(&key, NODES) {
                    let id = id.to_owned();
                    self.remove(&id);
                }
            }
        }
    }

    /// Adds or updates a node from its record; malformed records are reported once and skipped.
    fn upsert(&mut self, entry: Entry) -> Option<String> {
        let id = name_under(&entry.key, NODES)?.to_owned();
        let record = match serde_json::from_slice::<NodeRecord>(&entry.value) {
            Ok(record) if record.id == id => record,
            Ok(record) => {
                if self.reported.insert((entry.key.clone(), entry.mod_revision)) {
                    tracing::warn!("skipping {}: it holds the record of node {}", entry.key, record.id);
                }
                return None;
            }
            Err(error) => {
                if self.reported.insert((entry.key.clone(), entry.mod_revision)) {
                    tracing::warn!("skipping malformed node record at {}: {error}", entry.key);
                }
                return None;
            }
        };
        match self.nodes.get_mut(&id) {
            Some(tracked) => {
                tracked.record = record;
                tracked.lease = entry.lease;
            }
            None => {
                tracing::info!(node_id = %id, name = %record.name, address = %record.address, "node joined");
                self.nodes.insert(id.clone(), Tracked { record, lease: entry.lease, health: None });
            }
        }
        Some(id)
    }

    fn remove(&mut self, id: &str) {
        if let Some(tracked) = self.nodes.remove(id) {
            tracing::info!(
                node_id = %id,
                name = %tracked.record.name,
                address = %tracked.record.address,
                "node left (its lease expired or was revoked)"
            );
        }
    }

    /// One tick: keep the lease (when a beat is due), campaign if not leading, and as
    /// leader check the nodes.
    async fn step(&mut self, beat_due: bool) -> Result<(), ClusterError> {
        let lease = match self.lease {
            Some(lease) => {
                if beat_due && !self.store.keep_alive(lease).await? {
                    tracing::warn!("the manager's lease expired (store reset or outage); campaigning again");
                    self.lease = None;
                    self.step_down();
                    self.relist = true;
                    return Ok(());
                }
                lease
            }
            None => {
                let lease = self.store.grant_lease(self.config.timing.ttl).await?;
                self.lease = Some(lease);
                lease
            }
        };
        if self.leading {
            match self.store.leader(keys::LEADER).await? {
                Some(entry) if entry.lease == Some(lease) => {}
                _ => {
                    tracing::warn!("this manager lost the lead");
                    self.step_down();
                }
            }
        }
        if !self.leading {
            self.campaign(lease).await?;
        }
        if self.leading {
            self.check_health(lease).await?;
        }
        Ok(())
    }

    fn step_down(&mut self) {
        self.leading = false;
        for tracked in self.nodes.values_mut() {
            tracked.health = None;
        }
    }

    async fn campaign(&mut self, lease: LeaseId) -> Result<(), ClusterError> {
        let record = ManagerRecord {
            id: self.id.clone(),
            name: self.config.name.clone(),
            address: self.config.address,
            hostname: self.config.hostname.clone(),
            since: unix_now(),
        };
        let value = serde_json::to_vec(&record)?;
        if self.store.campaign(keys::LEADER, value, lease).await? {
            tracing::info!(name = %self.config.name, "this manager leads the cluster");
            self.leading = true;
        }
        Ok(())
    }

    /// Classifies each node from its lease and writes the verdicts that changed.
    async fn check_health(&mut self, lease: LeaseId) -> Result<(), ClusterError> {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in ids {
            let Some(tracked) = self.nodes.get(&id) else { continue };
            let Some(node_lease) = tracked.lease else {
                continue;
            };
            let Some(status) = self.store.lease_status(node_lease).await? else {
                // Expired: usually the watch reports the record's deletion next. But the
                // node may have registered again under a new lease that the watch missed
                // (a reset store): read its record to be sure.
                let key = keys::node(&id);
                match self.store.get(&key).await? {
                    Some(entry) if entry.lease != Some(node_lease) => {
                        self.upsert(entry);
                    }
                    Some(_) => {}
                    None => self.remove(&id),
                }
                continue;
            };
            let heartbeat = Duration::from_millis(tracked.record.heartbeat_ms);
            let (health, age) = classify(status.granted_ttl, status.remaining_ttl, heartbeat);
            let previous = tracked.health.clone();
            if previous.as_ref().map(|h| h.status) == Some(health) {
                continue;
            }
            let record = HealthRecord {
                status: health,
                heartbeat_age_secs: age,
                since: unix_now(),
                checked_by: self.config.name.clone(),
            };
            self.store.put(&keys::health(&id), serde_json::to_vec(&record)?, Some(lease)).await?;
            let name = &tracked.record.name;
            let address = tracked.record.address;
            match (previous, health) {
                (Some(_), Health::Healthy) => tracing::info!("node {name} ({address}) is Healthy again"),
                (_, Health::Unhealthy) => {
                    tracing::warn!("node {name} ({address}) is Unhealthy: no heartbeat for {age}s")
                }
                (None, Health::Healthy) => tracing::debug!("node {name} ({address}) is Healthy"),
            }
            if let Some(tracked) = self.nodes.get_mut(&id) {
                tracked.health = Some(record);
            }
        }
        // Verdicts on nodes that are gone.
        let listing = self.store.list(HEALTH).await?;
        for entry in listing.entries {
            if let Some(id) = name_under(&entry.key, HEALTH)
                && !self.nodes.contains_key(id)
            {
                self.store.delete_if(&entry.key, entry.mod_revision).await?;
            }
        }
        Ok(())
    }
}
