use std::{path::PathBuf, time::Duration};

use super::ACCEPTED_FORMS;

/// What went wrong with the cluster store, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {reason}; expected {ACCEPTED_FORMS}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "{scheme}:// stores are not supported: there is no Consul backend (no Consul server to test it \
         against); run etcd or ZooKeeper and use {ACCEPTED_FORMS}"
    )]
    UnsupportedBackend { scheme: String },
    #[error("no store given: pass --store URL or set OVERLAY_STORE, e.g. {ACCEPTED_FORMS}")]
    NoUrl,
    #[error("invalid store option: {0}")]
    InvalidOption(String),
    #[error("cannot read {what} {path}: {source}")]
    ReadFile { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "the store at {endpoints} stayed unreachable for {waited:?} (last error: {last_error}); \
         check that {store} runs and listens there, or raise --store-timeout"
    )]
    Unreachable { store: &'static str, endpoints: String, waited: Duration, last_error: String },
    #[error("the store at {endpoints} did not answer within {timeout:?} ({operation})")]
    Timeout { endpoints: String, operation: &'static str, timeout: Duration },
    #[error("store request {operation} failed: {message}")]
    Request { operation: &'static str, message: String },
    #[error("the store refused the credentials of user {user:?}: {message}; check --store-user and the password")]
    Auth { user: String, message: String },
    #[error(
        "the store requires authentication ({message}): pass --store-user, with the password in \
         OVERLAY_STORE_PASSWORD or --store-password-file"
    )]
    AuthRequired { message: String },
    #[error(
        "the store denied {operation} ({message}): grant the store user a role with read-write access to the cluster's prefix"
    )]
    PermissionDenied { operation: &'static str, message: String },
    #[error("a watch started at revision {requested} is before the store's compaction at {compacted}")]
    Compacted { requested: i64, compacted: i64 },
    /// The lease expired or was revoked (etcd: not found; ZooKeeper: its session ended).
    #[error("lease {lease:x} is gone (expired or revoked)")]
    LeaseGone { lease: i64 },
    /// ZooKeeper: the lease is another process's session, which only that process can use.
    #[error(
        "lease {lease:x} is the ZooKeeper session of another process: only the process that granted it \
         can attach keys to it or keep it alive"
    )]
    ForeignLease { lease: i64 },
    /// A key the backend cannot store as given.
    #[error("the store cannot hold key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("stopped while waiting for the store")]
    Stopped,
}

impl StoreError {
    /// Whether retrying the same request later may succeed (the store was down or slow).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Timeout { .. } | StoreError::Request { .. } | StoreError::Unreachable { .. })
    }
}
