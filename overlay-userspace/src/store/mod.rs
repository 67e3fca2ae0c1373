//! The cluster store: a small key-value interface ([`Store`]) with etcd v3 or ZooKeeper
//! behind it.
//!
//! Every key a caller names is relative to the cluster's root `/PREFIX/` taken from the
//! store URL, so clusters sharing one store never see each other's keys. The layout of
//! the keys, and how each backend maps leases, revisions, watches and elections onto its
//! own primitives, is in docs/store.md. Values are the callers' business (JSON in practice).
//!
//! Adding a backend means a module implementing [`Store`] and [`Transact`] and a variant
//! of [`AnyStore`]; callers are written against the traits or against `AnyStore`.

mod backoff;
mod election;
mod error;
mod etcd;
mod key;
mod txn;
mod url;
mod watch;
mod zookeeper;

use std::{future::Future, path::PathBuf, time::Duration};

use tokio::sync::mpsc;

pub use backoff::Backoff;
pub use error::StoreError;
pub use etcd::EtcdStore;
pub use key::name_under;
pub use txn::{Condition, Op, Transact, TxnOutcome};
pub use url::{Backend, DEFAULT_PREFIX, ETCD_DEFAULT_PORT, StoreUrl, ZOOKEEPER_DEFAULT_PORT, parse as parse_url};
pub use watch::{WatchUpdate, watch_prefix};
pub use zookeeper::ZkStore;

use crate::shutdown::Shutdown;

/// The forms `--store` accepts, for error messages.
pub const ACCEPTED_FORMS: &str = "etcd://HOST:PORT[,HOST:PORT…]/PREFIX (e.g. etcd://192.168.1.140:2379/my_cluster) \
     or zk://HOST:PORT[,HOST:PORT…]/PREFIX (e.g. zk://192.168.1.140:2181/my_cluster)";

/// A lease granted by the store; keys attached to it vanish when it expires.
pub type LeaseId = i64;

/// A key and its value as the store holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the cluster root (no leading `/PREFIX/`).
    pub key: String,
    pub value: Vec<u8>,
    /// The store revision of the last write to this key.
    pub mod_revision: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// The entries under a prefix and the store revision they were read at.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub revision: i64,
}

/// The condition of a conditional write ([`Store::put_if`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist.
    Absent,
    /// The key must still be at this modification revision.
    ModRevision(i64),
}

/// What a conditional write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// The condition did not hold; this is what the key holds now (`None`: absent).
    Conflict(Option<Entry>),
}

/// Time left on a live lease, in whole seconds as the store counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    pub granted_ttl: i64,
    pub remaining_ttl: i64,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put(Entry),
    Delete { key: String, revision: i64 },
}

impl WatchEvent {
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put(entry) => entry.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// Where a backend's raw watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchStart {
    /// With a [`WatchMessage::Listing`] of everything under the prefix, then every change
    /// after it. The backend makes sure that no change falls between the two.
    Listing,
    /// With the changes from this revision on, replayed from the store's history. Only for
    /// a store that [keeps history](Store::keeps_history).
    Revision(i64),
}

/// What a backend's raw watch stream yields; [`watch_prefix`] turns it into a watch that
/// survives reconnects and compaction.
#[derive(Debug)]
pub enum WatchMessage {
    /// Everything under the prefix when the watch started ([`WatchStart::Listing`]).
    Listing(Listing),
    Events(Vec<WatchEvent>),
    /// The start revision was compacted away: the caller must list again.
    Compacted {
        compact_revision: i64,
    },
}

/// The operations the cluster needs from a key-value store. Keys are relative to the
/// cluster root. Every call is bounded by the store's request timeout.
pub trait Store: Clone + Send + Sync + 'static {
    /// The endpoints, for messages.
    fn endpoints(&self) -> String;
    /// The store's current revision (a cheap request, also used as a reachability probe).
    fn current_revision(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send;
    /// Every key that starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Listing, StoreError>> + Send;
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes only if `expect` holds, atomically.
    fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        expect: Expect,
    ) -> impl Future<Output = Result<PutOutcome, StoreError>> + Send;
    /// Deletes `key`; true if it existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deletes `key` only if it is still at `mod_revision`; true if it was deleted.
    fn delete_if(&self, key: &str, mod_revision: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn grant_lease(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId, StoreError>> + Send;
    /// Refreshes the lease once; `Ok(false)` if it no longer exists (expired or revoked).
    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// `None` if the lease no longer exists.
    fn lease_status(&self, lease: LeaseId) -> impl Future<Output = Result<Option<LeaseStatus>, StoreError>> + Send;
    /// Revokes the lease, deleting its keys at once. A lease already gone is not an error.
    fn revoke_lease(&self, lease: LeaseId) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Whether the store keeps a history of changes that a watch can resume from
    /// ([`WatchStart::Revision`]): etcd does, until it compacts; ZooKeeper does not, so its
    /// watches list again after every break.
    fn keeps_history(&self) -> bool;
    /// Streams changes under `prefix` from `start` on. The stream ends (the receiver
    /// closes) or yields an error when the connection breaks; see [`watch_prefix`] for a
    /// watch that resumes by itself.
    fn watch(
        &self,
        prefix: &str,
        start: WatchStart,
    ) -> impl Future<Output = Result<mpsc::Receiver<Result<WatchMessage, StoreError>>, StoreError>> + Send;
    /// Stands for the lead of `election` (a key) with `value`, for as long as `lease`
    /// lives; true if this lease leads now. Call it again to stay a candidate: it never
    /// blocks waiting for the lead. etcd: the key itself, created only if absent, on the
    /// lease; ZooKeeper: ephemeral sequential candidates under it, the lowest leads.
    fn campaign(
        &self,
        election: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The leader of `election`: its value and lease (`None`: nobody leads).
    fn leader(&self, election: &str) -> impl Future<Output = Result<Option<Entry>, StoreError>> + Send;
}

/// PEM files for TLS to the store.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// TLS material, read from [`TlsFiles`] when the configuration is built.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key, for stores that require client authentication.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

/// Everything needed to reach the store, validated.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub url: StoreUrl,
    pub tls: Option<TlsConfig>,
    pub credentials: Option<Credentials>,
    /// Bound on each request.
    pub request_timeout: Duration,
}

pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

impl StoreConfig {
    /// Validates the options and reads the TLS files, before anything is sent.
    pub fn new(url: &str, tls: &TlsFiles, user: Option<String>, password: Option<String>) -> Result<Self, StoreError> {
        let url = parse_url(url)?;
        if url.backend == Backend::ZooKeeper && (tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some()) {
            return Err(StoreError::InvalidOption(
                "--store-ca, --store-cert and --store-key are for etcd: this build speaks plain TCP to ZooKeeper \
                 (use digest authentication with --store-user, on a trusted network)"
                    .into(),
            ));
        }
        let read = |what: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| StoreError::ReadFile { what, path: path.clone(), source })
        };
        let tls = match (&tls.ca, &tls.cert, &tls.key) {
            (None, None, None) => None,
            (ca, cert, key) => {
                let identity = match (cert, key) {
                    (Some(cert), Some(key)) => {
                        Some((read("client certificate (--store-cert)", cert)?, read("client key (--store-key)", key)?))
                    }
                    (None, None) => None,
                    _ => {
                        return Err(StoreError::InvalidOption(
                            "--store-cert and --store-key go together: give both or neither".into(),
                        ));
                    }
                };
                let ca_pem = ca.as_ref().map(|ca| read("CA certificate (--store-ca)", ca)).transpose()?;
                Some(TlsConfig { ca_pem, identity })
            }
        };
        let credentials = match (user, password) {
            (None, None) => None,
            (Some(user), Some(password)) if !user.is_empty() => Some(Credentials { user, password }),
            (Some(_), Some(_)) => return Err(StoreError::InvalidOption("--store-user is empty".into())),
            (Some(_), None) => {
                return Err(StoreError::InvalidOption(
                    "--store-user needs a password: set OVERLAY_STORE_PASSWORD or --store-password-file".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(StoreError::InvalidOption("a store password was given without --store-user".into()));
            }
        };
        Ok(StoreConfig { url, tls, credentials, request_timeout: DEFAULT_REQUEST_TIMEOUT })
    }
}

/// The store the URL names. Callers hold this (or are generic over [`Store`]).
#[derive(Clone)]
pub enum AnyStore {
    // Boxed: the etcd client is large, the ZooKeeper store is one pointer.
    Etcd(Box<EtcdStore>),
    ZooKeeper(ZkStore),
}

/// Connects to the store, retrying with backoff while it is unreachable and saying so.
/// With `give_up_after`, fails with [`StoreError::Unreachable`] after that long; without
/// it, retries until `shutdown` fires. Invalid credentials or TLS settings fail at once.
pub async fn connect(
    config: &StoreConfig,
    give_up_after: Option<Duration>,
    shutdown: &Shutdown,
) -> Result<AnyStore, StoreError> {
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        let attempt = async {
            let store = match config.url.backend {
                Backend::Etcd => AnyStore::Etcd(Box::new(EtcdStore::connect(config).await?)),
                Backend::ZooKeeper => AnyStore::ZooKeeper(ZkStore::connect(config).await?),
            };
            store.current_revision().await?;
            Ok::<_, StoreError>(store)
        };
        // An attempt never outlasts what is left of the caller's patience.
        let budget = give_up_after.map_or(config.request_timeout, |limit| {
            limit.saturating_sub(started.elapsed()).clamp(Duration::from_millis(100), config.request_timeout)
        });
        let attempt = async {
            tokio::time::timeout(budget, attempt).await.unwrap_or_else(|_| {
                Err(StoreError::Timeout {
                    endpoints: config.url.endpoints.join(","),
                    operation: "connect",
                    timeout: budget,
                })
            })
        };
        let error = match attempt.await {
            Ok(store) => {
                if started.elapsed() > Duration::from_secs(1) {
                    tracing::info!(store = %config.url, "store reachable");
                }
                return Ok(store);
            }
            Err(error) if !error.is_transient() => return Err(error),
            Err(error) => error,
        };
        let waited = started.elapsed();
        if let Some(limit) = give_up_after
            && waited >= limit
        {
            return Err(StoreError::Unreachable {
                store: config.url.backend.name(),
                endpoints: config.url.endpoints.join(","),
                waited: limit,
                last_error: error.to_string(),
            });
        }
        let mut delay = backoff.next_delay();
        if let Some(limit) = give_up_after {
            delay = delay.min(limit.saturating_sub(waited)).max(Duration::from_millis(50));
        }
        match give_up_after {
            Some(limit) => tracing::warn!(
                "store {} unreachable ({error}); retrying in {delay:?}, giving up after {limit:?} (--store-timeout)",
                config.url
            ),
            None => tracing::warn!(
                "store {} unreachable ({error}); retrying in {delay:?} until it answers (--store-timeout to give up)",
                config.url
            ),
        }
        if shutdown.sleep(delay).await.is_err() {
            return Err(StoreError::Stopped);
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Etcd($store) => $call,
            AnyStore::ZooKeeper($store) => $call,
        }
    };
}

impl Store for AnyStore {
    fn endpoints(&self) -> String {
        dispatch!(self, s => s.endpoints())
    }
    async fn current_revision(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.current_revision().await)
    }
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        dispatch!(self, s => s.get(key).await)
    }
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        dispatch!(self, s => s.list(prefix).await)
    }
    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<(), StoreError> {
        dispatch!(self, s => s.put(key, value, lease).await)
    }
    async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        expect: Expect,
    ) -> Result<PutOutcome, StoreError> {
        dispatch!(self, s => s.put_if(key, value, lease, expect).await)
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete(key).await)
    }
    async fn delete_if(&self, key: &str, mod_revision: i64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_if(key, mod_revision).await)
    }
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        dispatch!(self, s => s.grant_lease(ttl).await)
    }
    async fn keep_alive(&self, lease: LeaseId) -> Result<bool, StoreError> {
        dispatch!(self, s => s.keep_alive(lease).await)
    }
    async fn lease_status(&self, lease: LeaseId) -> Result<Option<LeaseStatus>, StoreError> {
        dispatch!(self, s => s.lease_status(lease).await)
    }
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        dispatch!(self, s => s.revoke_lease(lease).await)
    }
    fn keeps_history(&self) -> bool {
        dispatch!(self, s => s.keeps_history())
    }
    async fn watch(
        &self,
        prefix: &str,
        start: WatchStart,
    ) -> Result<mpsc::Receiver<Result<WatchMessage, StoreError>>, StoreError> {
        dispatch!(self, s => s.watch(prefix, start).await)
    }
    async fn campaign(&self, election: &str, value: Vec<u8>, lease: LeaseId) -> Result<bool, StoreError> {
        dispatch!(self, s => s.campaign(election, value, lease).await)
    }
    async fn leader(&self, election: &str) -> Result<Option<Entry>, StoreError> {
        dispatch!(self, s => s.leader(election).await)
    }
}
