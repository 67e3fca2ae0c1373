//! A node's membership: its record under `v1/nodes/ID`, attached to a lease that the
//! agent keeps alive. If the lease is lost (the store was reset, or the host was paused
//! past the TTL) the agent registers again by itself.

use std::time::Duration;

use super::{ClusterError, Identity, NodeRecord, Timing, keys};
use crate::{
    shutdown::Shutdown,
    store::{Backoff, Expect, LeaseId, PutOutcome, Store},
};

/// Every this many heartbeats the agent also checks that its record is still there
/// (someone may have deleted it by hand).
const VERIFY_EVERY: u32 = 5;

/// A registered node. [`Membership::run`] keeps it registered until shutdown.
pub struct Membership<S: Store> {
    store: S,
    record: NodeRecord,
    identity: Identity,
    timing: Timing,
    lease: LeaseId,
    /// Tells the agent's other tasks the current lease, which changes when the node
    /// registers again; what they publish must be attached to it.
    lease_tx: tokio::sync::watch::Sender<LeaseId>,
    /// Containers running here, copied into the record when it changes.
    containers: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    /// The previous run's lease, kept alive until this instant: what it holds (this
    /// host's endpoints and addresses) must outlive the restart until this run has
    /// published it again under its own lease.
    predecessor: Option<(LeaseId, tokio::time::Instant)>,
}

impl<S: Store> Membership<S> {
    /// Registers the node under a new lease. Fails with
    /// [`ClusterError::DuplicateIdentity`] if another live node holds the same ID at
    /// another address; the same node restarting at the same address takes its record
    /// over. Store errors are returned (the caller decides whether to retry).
    pub async fn join(store: S, record: NodeRecord, identity: Identity, timing: Timing) -> Result<Self, ClusterError> {
        let lease = store.grant_lease(timing.ttl).await?;
        let (lease_tx, _) = tokio::sync::watch::channel(lease);
        let mut membership =
            Membership { store, record, identity, timing, lease, lease_tx, containers: None, predecessor: None };
        if let Err(error) = membership.register().await {
            let _ = membership.store.revoke_lease(lease).await;
            return Err(error);
        }
        tracing::info!(
            node_id = %membership.record.id,
            name = %membership.record.name,
            address = %membership.record.address,
            "joined the cluster"
        );
        Ok(membership)
    }

    pub fn record(&self) -> &NodeRecord {
        &self.record
    }

    /// The current lease, updated when the node registers again.
    pub fn lease(&self) -> tokio::sync::watch::Receiver<LeaseId> {
        self.lease_tx.subscribe()
    }

    /// Keeps the record's container count equal to `count` (checked every heartbeat).
    pub fn count_containers(&mut self, count: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        self.containers = Some(count);
    }

    /// Writes the record under the current lease, refusing a live twin elsewhere.
    async fn register(&mut self) -> Result<(), ClusterError> {
        let key = keys::node(&self.record.id);
        let value = serde_json::to_vec(&self.record)?;
        loop {
            let (expect, previous_lease) = match self.store.get(&key).await? {
                None => (Expect::Absent, None),
                Some(existing) => {
                    match serde_json::from_slice::<NodeRecord>(&existing.value) {
                        Ok(registered) if registered.address != self.record.address => {
                            return Err(ClusterError::DuplicateIdentity {
                                id: self.record.id.clone(),
                                registered: registered.address,
                                registered_name: registered.name,
                                ours: self.record.address,
                                identity_file: self.identity.file.clone(),
                            });
                        }
                        Ok(_) => {
                            if existing.lease != Some(self.lease) {
                                tracing::info!("taking over the registration left by this node's previous run");
                            }
                        }
                        Err(error) => {
                            tracing::warn!("replacing the malformed record at {key}: {error}");
                        }
                    }
                    (Expect::ModRevision(existing.mod_revision), existing.lease)
                }
            };
            match self.store.put_if(&key, value.clone(), Some(self.lease), expect).await? {
                PutOutcome::Written => {
                    // The previous run's lease is not revoked but kept alive a while, then left
                    // to expire: the endpoints it holds are still served by this host, and
                    // losing it would make every peer drop them until this run publishes
                    // them again under its own lease.
                    if let Some(old) = previous_lease.filter(|old| *old != self.lease) {
                        let until = tokio::time::Instant::now() + 2 * self.timing.ttl;
                        tracing::debug!("keeping the previous run's lease {old:x} alive for {:?}", 2 * self.timing.ttl);
                        self.predecessor = Some((old, until));
                        let _ = self.store.keep_alive(old).await;
                    }
                    return Ok(());
                }
                // Someone wrote in between: look again.
                PutOutcome::Conflict(_) => continue,
            }
        }
    }

    /// A new lease and a new registration, after the old lease was lost.
    async fn rejoin(&mut self) -> Result<(), ClusterError> {
        self.lease = self.store.grant_lease(self.timing.ttl).await?;
        if let Err(error) = self.register().await {
            let _ = self.store.revoke_lease(self.lease).await;
            return Err(error);
        }
        self.lease_tx.send_replace(self.lease);
        Ok(())
    }

    /// Keeps the registration alive until `shutdown`, then revokes the lease so that the
    /// node disappears at once. Returns an error only for a duplicate identity found
    /// when registering again; store outages are logged and outlasted.
    pub async fn run(mut self, shutdown: Shutdown) -> Result<(), ClusterError> {
        let mut beats: u32 = 0;
        let mut failures: u32 = 0;
        let mut backoff = Backoff::new(self.timing.heartbeat, self.timing.ttl.max(Duration::from_secs(5)));
        let mut registered = true;
        loop {
            let delay = if registered { self.timing.heartbeat } else { backoff.next_delay() };
            if shutdown.sleep(delay).await.is_err() {
                self.leave().await;
                return Ok(());
            }
            let step = if registered { self.beat(&mut beats).await } else { self.rejoin().await.map(|()| true) };
            match step {
                Ok(alive) => {
                    if !registered {
                        tracing::info!(node_id = %self.record.id, "registered again");
                    }
                    if failures > 0 {
                        tracing::info!("the store answers again after {failures} failed attempts");
                        failures = 0;
                    }
                    backoff.reset();
                    registered = alive;
                    if !alive {
                        tracing::warn!(
                            "this node's lease expired in the store (the store was reset, or this host was cut \
                             off or paused longer than the {:?} TTL); registering again",
                            self.timing.ttl
                        );
                    }
                }
                Err(ClusterError::Store(error)) => {
                    failures += 1;
                    // Say it on the first failure and then now and then, not every beat.
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!("cannot reach the store to keep this node registered ({error}); retrying");
                    }
                }
                Err(fatal) => {
                    tracing::error!("{fatal}");
                    return Err(fatal);
                }
            }
        }
    }

    /// One heartbeat; `Ok(false)` if the lease is gone and the node must register again.
    async fn beat(&mut self, beats: &mut u32) -> Result<bool, ClusterError> {
        if !self.store.keep_alive(self.lease).await? {
            return Ok(false);
        }
        if let Some((old, until)) = self.predecessor {
            if tokio::time::Instant::now() < until {
                // Best effort: if it is gone already, there is nothing left to protect.
                let _ = self.store.keep_alive(old).await;
            } else {
                self.predecessor = None;
            }
        }
        if let Some(count) = &self.containers {
            let now = count.load(std::sync::atomic::Ordering::Relaxed) as u64;
            if now != u64::from(self.record.containers) {
                self.record.containers = u32::try_from(now).unwrap_or(u32::MAX);
                self.register().await?;
            }
        }
        *beats = beats.wrapping_add(1);
        if (*beats).is_multiple_of(VERIFY_EVERY) {
            let key = keys::node(&self.record.id);
            let current = self.store.get(&key).await?;
            if current.as_ref().and_then(|e| e.lease) != Some(self.lease) {
                tracing::warn!("this node's record at {key} was removed or replaced; writing it again");
                self.register().await?;
            }
        }
        Ok(true)
    }

    /// Revokes the lease: the record disappears from the store at once.
    pub async fn leave(&self) {
        match self.store.revoke_lease(self.lease).await {
            Ok(()) => tracing::info!(node_id = %self.record.id, "left the cluster"),
            Err(error) => tracing::warn!(
                "could not revoke this node's lease ({error}); its record expires within {:?}",
                self.timing.ttl
            ),
        }
    }
}
