use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::{network::NetworkError, store::StoreError};

/// What went wrong allocating or releasing an address, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("invalid {what} {value:?}: use 1 to 128 letters, digits, '.', '_', ':' or '-'")]
    InvalidName { what: &'static str, value: String },
    #[error("{address} is outside the subnet {subnet} of network {network:?}; request an address inside it")]
    OutsideSubnet { address: Ipv4Addr, network: String, subnet: Ipv4Net },
    #[error(
        "{address} is the {what} of network {network:?} and is never given to an endpoint; request another address"
    )]
    Reserved { address: Ipv4Addr, what: &'static str, network: String },
    #[error(
        "{address} is already in use on network {network:?} by endpoint {endpoint} on node {node}; \
         request another address, or leave it out to get a free one"
    )]
    AddressInUse { address: Ipv4Addr, network: String, endpoint: String, node: String },
    #[error(
        "endpoint {endpoint} already has address {address} on network {network:?}; release it first to \
         change it"
    )]
    EndpointHasAddress { endpoint: String, network: String, address: Ipv4Addr },
    #[error(
        "network {network:?} has no free address: all {count} addresses of {range} are allocated; remove \
         containers from it, or create a network with a larger subnet"
    )]
    Exhausted { network: String, range: Ipv4Net, count: u32 },
    #[error(
        "the node's lease {lease:x} no longer exists (its registration expired or was revoked); the agent must \
         register again before it allocates addresses"
    )]
    LeaseGone { lease: i64 },
    #[error("the addresses of network {network:?} kept changing ({attempts} attempts); try again")]
    Contention { network: String, attempts: u32 },
    #[error("encoding an allocation: {0}")]
    Encode(#[from] serde_json::Error),
}
