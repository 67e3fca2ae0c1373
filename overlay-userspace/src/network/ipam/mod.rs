//! Cluster-wide address allocation: no two endpoints ever hold one address, whatever
//! the concurrency, because every allocation is a store transaction that creates the
//! address's key only if it is absent ([`allocator`]). An allocation belongs to an
//! endpoint and its node and is attached to the node's lease: when the node's lease
//! expires, its addresses are free again.
//!
//! One allocator ([`Ipam`]) serves `overlay run` and the Docker IPAM plugin. The keys
//! are in [`keys`] and docs/store.md.

mod allocator;
mod error;
pub mod keys;
mod range;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use allocator::{Ipam, Release};
pub use error::IpamError;
pub use range::AddressRange;

use crate::store::{Store, StoreError};

/// An allocated address, under `v1/ipam/NETWORK_ID/addresses/IP`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub network_id: String,
    pub address: Ipv4Addr,
    /// Who holds it (a container, or a Docker endpoint).
    pub endpoint: String,
    /// The ID of the node whose lease holds it.
    pub node: String,
    /// Unix time (seconds).
    pub allocated_at: u64,
}

/// Every address allocated in a network, sorted by address. Malformed entries are
/// logged and skipped.
pub async fn allocations<S: Store>(store: &S, network_id: &str) -> Result<Vec<Allocation>, StoreError> {
    let listing = store.list(&keys::addresses(network_id)).await?;
    let mut allocations: Vec<Allocation> = listing
        .entries
        .iter()
        .filter_map(|entry| match serde_json::from_slice::<Allocation>(&entry.value) {
            Ok(allocation) => Some(allocation),
            Err(error) => {
                tracing::warn!("skipping malformed allocation at {}: {error}", entry.key);
                None
            }
        })
        .collect();
    allocations.sort_by_key(|a| a.address);
    Ok(allocations)
}
