use std::{net::IpAddr, path::PathBuf};

use crate::store::StoreError;

/// What went wrong with joining or managing the cluster, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid label {label:?}: {reason}; labels are KEY=VALUE, e.g. --label zone=east")]
    InvalidLabel { label: String, reason: String },
    #[error("invalid --advertise {value:?}: {reason}")]
    InvalidAdvertise { value: String, reason: String },
    #[error("invalid node name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid timing: {0}")]
    InvalidTiming(String),
    #[error("cannot use state directory {path}: {source}; pick another with --state-dir")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error(
        "another overlay agent already runs with state directory {path}; stop it, or give this one \
         its own --state-dir"
    )]
    StateDirInUse { path: PathBuf },
    #[error(
        "the node identity file {path} is corrupt ({reason}); delete it or start with --reset-identity \
         to get a fresh identity"
    )]
    CorruptIdentity { path: PathBuf, reason: String },
    #[error(
        "node ID {id} is already registered by a live node advertising {registered} (name {registered_name:?}), \
         and this host advertises {ours}: two hosts share one identity (was this host cloned from the other?). \
         Give this host a fresh identity: delete {identity_file} or start the agent with --reset-identity"
    )]
    DuplicateIdentity { id: String, registered: IpAddr, registered_name: String, ours: IpAddr, identity_file: PathBuf },
    #[error("cannot read {what} of this host from {path}: {source}")]
    HostFacts { what: &'static str, path: &'static str, source: std::io::Error },
    #[error("encoding a record: {0}")]
    Encode(#[from] serde_json::Error),
}
