//! Endpoints: a container's interface on an overlay network, as published in the store
//! by the agent that runs the container. Every host's datapath and DNS follow them.
//!
//! `v1/endpoints/NETWORK-ID/ENDPOINT-ID` → [`EndpointRecord`] (JSON), attached to the
//! lease of the node that runs the container, so a dead node's endpoints vanish.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Directory of all endpoints.
pub const ENDPOINTS: &str = "v1/endpoints/";

pub fn key(network_id: &str, endpoint_id: &str) -> String {
    format!("{ENDPOINTS}{network_id}/{endpoint_id}")
}

pub fn network_dir(network_id: &str) -> String {
    format!("{ENDPOINTS}{network_id}/")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub id: String,
    pub network_id: String,
    pub node_id: String,
    /// The container's name (resolvable by DNS on the network).
    pub container: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

impl EndpointRecord {
    /// Parses a stored value; `None` (after a warning) for a malformed one, which is
    /// skipped rather than trusted.
    pub fn parse(key: &str, value: &[u8]) -> Option<EndpointRecord> {
        match serde_json::from_slice::<EndpointRecord>(value) {
            Ok(record) if key.ends_with(&format!("/{}", record.id)) => Some(record),
            Ok(_) => {
                tracing::warn!("skipping endpoint {key}: its ID does not match its key");
                None
            }
            Err(error) => {
                tracing::warn!("skipping malformed endpoint {key}: {error}");
                None
            }
        }
    }
}
