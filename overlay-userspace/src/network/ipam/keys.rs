//! IPAM's keys, relative to the cluster root (docs/store.md). Both keys of an
//! allocation are written, re-leased and deleted together, in one transaction.

/// `v1/ipam/NETWORK_ID/`: everything allocated in one network.
pub fn network(network_id: &str) -> String {
    format!("v1/ipam/{network_id}/")
}

/// `v1/ipam/NETWORK_ID/addresses/`: one key per allocated address.
pub fn addresses(network_id: &str) -> String {
    format!("v1/ipam/{network_id}/addresses/")
}

/// `v1/ipam/NETWORK_ID/addresses/A.B.C.D`: the [`super::Allocation`], on the node's lease.
pub fn address(network_id: &str, address: std::net::Ipv4Addr) -> String {
    format!("v1/ipam/{network_id}/addresses/{address}")
}

/// `v1/ipam/NETWORK_ID/endpoints/ENDPOINT`: the endpoint's address, on the node's lease.
pub fn endpoint(network_id: &str, endpoint: &str) -> String {
    format!("v1/ipam/{network_id}/endpoints/{endpoint}")
}
