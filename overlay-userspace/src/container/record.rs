//! Containers in the store: what `overlay run` asks for, and what the agent running it
//! reports.
//!
//! `v1/containers/NAME` → [`ContainerRecord`]: written once by `overlay run` (the name is
//! taken by whoever creates the key), its `node_id` set by the leading manager's
//! scheduler (or by `run --node`), deleted by `overlay rm`.
//! `v1/container-status/NAME` → [`ContainerStatus`]: written by the agent that runs it,
//! attached to that node's lease.

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::egress::PortMapping;
use crate::store::{Store, StoreError};

pub const CONTAINERS: &str = "v1/containers/";
pub const STATUS: &str = "v1/container-status/";

pub fn key(name: &str) -> String {
    format!("{CONTAINERS}{name}")
}

pub fn status_key(name: &str) -> String {
    format!("{STATUS}{name}")
}

/// One network a container joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    /// The network's name or ID.
    pub network: String,
    /// A static address (`--ip`), granted only if free.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The live node with the fewest containers.
    #[default]
    Spread,
    /// The live node with the most containers (fill one host before the next).
    Binpack,
    /// Any live node.
    Random,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    /// 64 hexadecimal digits.
    pub id: String,
    pub networks: Vec<NetworkRequest>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Started inside the container when given.
    #[serde(default)]
    pub command: Vec<String>,
    /// Ports published on the host's addresses (`-p HOSTPORT:PORT[/PROTO]`), to the
    /// container's address on its first network.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Labels a node must carry (`--constraint label=value`).
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// The node that runs it; `None` until the scheduler places it.
    #[serde(default)]
    pub node_id: Option<String>,
    pub created_at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Failed,
}

/// An address a running container holds on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedNetwork {
    pub network: String,
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub interface: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub node_id: String,
    pub node_name: String,
    pub state: State,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub networks: Vec<AttachedNetwork>,
    /// The ports published on the node's addresses.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// The network namespace, under /run/netns on the node.
    pub netns: String,
}

/// Every container record with the status its agent reported (none yet: not placed,
/// starting, or its node is down). Malformed values are skipped.
pub async fn list_with_status<S: Store>(
    store: &S,
) -> Result<Vec<(ContainerRecord, Option<ContainerStatus>)>, StoreError> {
    let mut statuses: BTreeMap<String, ContainerStatus> = store
        .list(STATUS)
        .await?
        .entries
        .iter()
        .filter_map(|e| serde_json::from_slice::<ContainerStatus>(&e.value).ok())
        .map(|s| (s.name.clone(), s))
        .collect();
    Ok(store
        .list(CONTAINERS)
        .await?
        .entries
        .iter()
        .filter_map(|e| serde_json::from_slice::<ContainerRecord>(&e.value).ok())
        .map(|r| {
            let status = statuses.remove(&r.name);
            (r, status)
        })
        .collect())
}

/// `overlay rm NAME`: the record goes (its agent stops the container and releases its
/// addresses), and with it a status no agent will remove (a placement failure).
/// `false` if there was no such container.
pub async fn remove<S: Store>(store: &S, name: &str) -> Result<bool, StoreError> {
    if !store.delete(&key(name)).await? {
        return Ok(false);
    }
    if let Some(entry) = store.get(&status_key(name)).await?
        && entry.lease.is_none()
    {
        store.delete_if(&entry.key, entry.mod_revision).await?;
    }
    Ok(true)
}

/// A container name: what Docker accepts, and short enough for a namespace name.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if name.is_empty() || name.len() > 63 || !ok_start || !ok_chars {
        return Err(format!(
            "invalid container name {name:?}: use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("busybox01").is_ok());
        assert!(validate_name("web.1_a-b").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
