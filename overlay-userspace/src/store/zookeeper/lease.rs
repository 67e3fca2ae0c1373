//! Leases as ZooKeeper sessions.
//!
//! Each lease is a session of its own, opened with the lease's TTL as its timeout: its
//! ID is the session ID, the keys attached to it are its ephemeral nodes (so an entry's
//! `lease` is the node's `ephemeralOwner`), and the server deletes them when the session
//! expires. The session is *detached*: a process that exits, or drops its store, leaves
//! the session to expire on the server within the TTL, as an etcd lease does; only
//! [`revoke`] deletes the keys at once.
//!
//! The client keeps a session alive by itself; a lease must expire when its holder stops
//! refreshing it, so a watchdog revokes a lease that [`keep_alive`] has not been called
//! for within its TTL. Each refresh writes the lease's node `/PREFIX/leases/ID` (an
//! ephemeral node of the session, holding the TTL): its `mtime` is the last refresh in
//! the server's clock, which [`status`] compares with the server's clock as last seen in
//! the `mtime` of a write of this process.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use zookeeper_client::{self as zk, Client, CreateMode};

use super::{ZkStore, open_session};
use crate::store::{LeaseId, LeaseStatus, StoreError};

/// A sample of the server's clock older than this is taken again.
const CLOCK_MAX_AGE: Duration = Duration::from_secs(30);

/// How often [`revoke`] lists the session's nodes again when one vanished meanwhile.
const REVOKE_ATTEMPTS: u32 = 5;

/// A lease this process granted.
pub(super) struct Held {
    client: Client,
    ttl: Duration,
    refreshed: Instant,
}

/// The server's clock (milliseconds since the epoch, the `mtime` of a write) at an
/// instant of this host's monotonic clock.
#[derive(Clone, Copy)]
pub(super) struct ClockSample {
    server_ms: i64,
    at: Instant,
}

/// What a lease's node holds.
#[derive(Serialize, Deserialize)]
struct LeaseRecord {
    ttl_ms: u64,
}

fn node_path(store: &ZkStore, lease: LeaseId) -> String {
    // Session IDs are unsigned in ZooKeeper's own tools.
    format!("{}/{:016x}", store.leases_dir(), lease as u64)
}

fn record(ttl: Duration) -> Vec<u8> {
    let record = LeaseRecord { ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX) };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Remembers the server's clock from the `mtime` of a write sent at `sent`.
fn sample(store: &ZkStore, mtime: i64, sent: Instant) {
    let at = sent + sent.elapsed() / 2;
    *store.inner.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(ClockSample { server_ms: mtime, at });
}

fn held(store: &ZkStore, lease: LeaseId) -> Option<(Client, Duration)> {
    let leases = store.inner.leases.lock().unwrap_or_else(|e| e.into_inner());
    leases.get(&lease).map(|held| (held.client.clone(), held.ttl))
}

fn forget(store: &ZkStore, lease: LeaseId) -> Option<Held> {
    store.inner.leases.lock().unwrap_or_else(|e| e.into_inner()).remove(&lease)
}

/// A lease this process does not hold: gone, or another process's (an error).
async fn not_held(store: &ZkStore, lease: LeaseId) -> Result<(), StoreError> {
    let client = store.client().await?;
    match store.read(&client, &node_path(store, lease)).await? {
        Some(_) => Err(StoreError::ForeignLease { lease }),
        None => Ok(()),
    }
}

pub(super) async fn grant(store: &ZkStore, ttl: Duration) -> Result<LeaseId, StoreError> {
    let ttl = ttl.max(Duration::from_secs(1));
    let inner = &store.inner;
    let client = open_session(&inner.cluster, inner.credentials.as_ref(), inner.timeout, ttl, true).await?;
    let lease = client.session_id().0;
    let granted = client.session_timeout();
    if granted != ttl {
        tracing::warn!(
            "ZooKeeper granted lease {lease:x} a TTL of {granted:?} instead of {ttl:?}: its minSessionTimeout and \
             maxSessionTimeout (2 and 20 ticks by default) must allow the TTL"
        );
    }
    let options = CreateMode::Ephemeral.with_acls(store.acls());
    let sent = Instant::now();
    let (stat, _) =
        store.request("grant lease", client.create(&node_path(store, lease), &record(granted), &options)).await?;
    if stat.mtime > 0 {
        sample(store, stat.mtime, sent);
    }
    inner
        .leases
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(lease, Held { client, ttl: granted, refreshed: Instant::now() });
    watch_over(store, lease);
    Ok(lease)
}

/// Revokes `lease` once it has not been refreshed for its TTL. The task holds the store
/// only weakly: a store that is dropped leaves its leases to the server.
fn watch_over(store: &ZkStore, lease: LeaseId) {
    let weak = Arc::downgrade(&store.inner);
    tokio::spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let left = {
                let leases = inner.leases.lock().unwrap_or_else(|e| e.into_inner());
                let Some(held) = leases.get(&lease) else { return };
                (held.refreshed + held.ttl).saturating_duration_since(Instant::now())
            };
            if left.is_zero() {
                let store = ZkStore { inner };
                tracing::warn!("lease {lease:x} was not kept alive within its TTL: it expires");
                if let Err(error) = revoke(&store, lease).await {
                    tracing::warn!("lease {lease:x}: {error}; ZooKeeper expires its session within the TTL");
                }
                return;
            }
            drop(inner);
            tokio::time::sleep(left).await;
        }
    });
}

/// The session of a lease this process holds, for writes of keys attached to it.
pub(super) async fn session(store: &ZkStore, lease: LeaseId) -> Result<Client, StoreError> {
    match held(store, lease) {
        Some((client, _)) if !client.state().is_terminated() => Ok(client),
        Some(_) => {
            forget(store, lease);
            Err(StoreError::LeaseGone { lease })
        }
        None => {
            not_held(store, lease).await?;
            Err(StoreError::LeaseGone { lease })
        }
    }
}

pub(super) async fn keep_alive(store: &ZkStore, lease: LeaseId) -> Result<bool, StoreError> {
    let client = {
        let mut leases = store.inner.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.get_mut(&lease).map(|held| {
            held.refreshed = Instant::now();
            (held.client.clone(), held.ttl)
        })
    };
    let Some((client, ttl)) = client else {
        return not_held(store, lease).await.map(|()| false);
    };
    if client.state().is_terminated() {
        forget(store, lease);
        return Ok(false);
    }
    let path = node_path(store, lease);
    let sent = Instant::now();
    match store.bounded("keep lease alive", client.set_data(&path, &record(ttl), None)).await {
        Ok(stat) => {
            sample(store, stat.mtime, sent);
            Ok(true)
        }
        Err((_, Some(zk::Error::SessionExpired))) => {
            forget(store, lease);
            Ok(false)
        }
        // Revoked by another process (see [`revoke`]).
        Err((_, Some(zk::Error::NoNode))) => {
            forget(store, lease);
            Ok(false)
        }
        Err((error, _)) => Err(error),
    }
}

/// The server's clock now, from the last sample or a new one (a write of the leases
/// directory, whose `mtime` is the server's time).
async fn server_now(store: &ZkStore, client: &Client) -> Result<i64, StoreError> {
    let cached = *store.inner.clock.lock().unwrap_or_else(|e| e.into_inner());
    let sample = match cached {
        Some(sample) if sample.at.elapsed() < CLOCK_MAX_AGE => sample,
        _ => {
            let sent = Instant::now();
            let stat =
                store.request("read the server's clock", client.set_data(&store.leases_dir(), &[], None)).await?;
            sample(store, stat.mtime, sent);
            ClockSample { server_ms: stat.mtime, at: sent + sent.elapsed() / 2 }
        }
    };
    Ok(sample.server_ms + i64::try_from(sample.at.elapsed().as_millis()).unwrap_or(i64::MAX))
}

pub(super) async fn status(store: &ZkStore, lease: LeaseId) -> Result<Option<LeaseStatus>, StoreError> {
    let client = store.client().await?;
    let Some(node) = store.read(&client, &node_path(store, lease)).await? else { return Ok(None) };
    let ttl_ms = serde_json::from_slice::<LeaseRecord>(&node.data).map_err(|error| StoreError::Request {
        operation: "lease time to live",
        message: format!("the node of lease {lease:x} holds no lease record: {error}"),
    })?;
    let ttl_ms = i64::try_from(ttl_ms.ttl_ms).unwrap_or(i64::MAX);
    let age = (server_now(store, &client).await? - node.stat.mtime).max(0);
    let remaining = (ttl_ms - age).max(0);
    // Whole seconds, as etcd counts them: the TTL rounded, what is left rounded up.
    Ok(Some(LeaseStatus { granted_ttl: (ttl_ms + 500) / 1000, remaining_ttl: (remaining + 999) / 1000 }))
}

/// Deletes every node of the lease's session in one `multi`; the session, detached, is
/// left to expire with nothing in it.
pub(super) async fn revoke(store: &ZkStore, lease: LeaseId) -> Result<(), StoreError> {
    let Some(held) = forget(store, lease) else { return revoke_foreign(store, lease).await };
    if held.client.state().is_terminated() {
        return Ok(());
    }
    // Every node of a lease's session is in its cluster.
    let mine = store.inner.root.clone();
    for _ in 0..REVOKE_ATTEMPTS {
        let nodes = match store.bounded("revoke lease", held.client.list_ephemerals(&mine)).await {
            Ok(nodes) => nodes,
            Err((_, Some(zk::Error::SessionExpired))) => return Ok(()),
            Err((error, _)) => return Err(error),
        };
        if nodes.is_empty() {
            return Ok(());
        }
        let mut writer = held.client.new_multi_writer();
        for node in &nodes {
            writer.add_delete(node, None).map_err(|e| store.error("revoke lease", &e))?;
        }
        // One was deleted meanwhile (moved to another lease): list again.
        if deleted(store, writer).await? {
            return Ok(());
        }
    }
    Err(kept_changing(lease))
}

/// Commits the deletes of a revocation: false if a node had changed or gone meanwhile
/// (look again); a session that expired meanwhile took its nodes with it.
async fn deleted(store: &ZkStore, mut writer: zk::MultiWriter<'_>) -> Result<bool, StoreError> {
    match tokio::time::timeout(store.inner.timeout, writer.commit()).await {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(zk::MultiWriteError::OperationFailed { source: zk::Error::NoNode | zk::Error::BadVersion, .. })) => {
            Ok(false)
        }
        Ok(Err(zk::MultiWriteError::RequestFailed { source: zk::Error::SessionExpired })) => Ok(true),
        Ok(Err(error)) => Err(store.error("revoke lease", &zk::Error::from(error))),
        Err(_) => Err(StoreError::Timeout {
            endpoints: store.inner.cluster.clone(),
            operation: "revoke lease",
            timeout: store.inner.timeout,
        }),
    }
}

fn kept_changing(lease: LeaseId) -> StoreError {
    StoreError::Request {
        operation: "revoke lease",
        message: format!("the keys of lease {lease:x} kept changing ({REVOKE_ATTEMPTS} attempts)"),
    }
}

/// Revokes another process's lease, as etcd lets any client do: its keys and its node
/// are deleted in one `multi` (found by their owner, which takes a walk of the
/// cluster's keys). The session itself cannot be ended from here; its holder learns of
/// the revocation at its next [`keep_alive`], which finds the lease's node gone.
async fn revoke_foreign(store: &ZkStore, lease: LeaseId) -> Result<(), StoreError> {
    let client = store.client().await?;
    let node = node_path(store, lease);
    for _ in 0..REVOKE_ATTEMPTS {
        let Some(lease_node) = store.read(&client, &node).await? else { return Ok(()) };
        let (entries, _) = store.walk(&client, "").await?;
        let mut writer = client.new_multi_writer();
        for entry in entries.iter().filter(|e| e.lease == Some(lease)) {
            let path = store.key_path(&entry.key)?;
            writer.add_delete(&path, None).map_err(|e| store.error("revoke lease", &e))?;
        }
        writer.add_delete(&node, Some(lease_node.stat.version)).map_err(|e| store.error("revoke lease", &e))?;
        // A key went or the holder refreshed meanwhile: look again.
        if deleted(store, writer).await? {
            return Ok(());
        }
    }
    Err(kept_changing(lease))
}
