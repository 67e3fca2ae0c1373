use ipnet::Ipv4Net;

use crate::store::StoreError;

/// What went wrong with an overlay network, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid network name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("unknown driver {driver:?}: the only driver is \"overlay\" (--driver overlay, or leave it out)")]
    UnknownDriver { driver: String },
    #[error("invalid {option} {value:?}: {reason}")]
    InvalidPrefix { option: &'static str, value: String, reason: String },
    #[error("invalid {option} {value:?}: the host bits are set; did you mean {network}?")]
    HostBitsSet { option: &'static str, value: String, network: Ipv4Net },
    #[error(
        "--subnet {subnet} is too small: a network needs a network address, a broadcast address, a gateway \
         and at least one container, so a prefix of at most /30"
    )]
    SubnetTooSmall { subnet: Ipv4Net },
    #[error("invalid --gateway {value:?}: {reason}")]
    InvalidGateway { value: String, reason: String },
    #[error("--ip-range {range} is not inside --subnet {subnet}; give a range within the subnet")]
    RangeOutsideSubnet { range: Ipv4Net, subnet: Ipv4Net },
    #[error(
        "--ip-range {range} holds no address a container could get (only the network, broadcast or gateway \
         address); give a larger range"
    )]
    RangeEmpty { range: Ipv4Net },
    #[error("{option} needs --subnet: give the subnet it belongs to")]
    NeedsSubnet { option: &'static str },
    #[error("invalid label {label:?}: {reason}; labels are KEY=VALUE, e.g. --label team=web")]
    InvalidLabel { label: String, reason: &'static str },
    #[error("invalid network ID {id:?}: expected 12 to 64 lowercase hexadecimal digits")]
    InvalidId { id: String },
    #[error("invalid default subnet pool {value}: {reason}")]
    InvalidPool { value: String, reason: String },
    #[error("a network named {name:?} already exists (ID {id}); pick another name or remove it first")]
    AlreadyExists { name: String, id: String },
    #[error("a network with ID {id} already exists; use another ID")]
    IdTaken { id: String },
    #[error(
        "subnet {subnet} overlaps {other_subnet} of overlay network {other:?}; pick a subnet that overlaps no \
         network (`overlay network ls`), or leave --subnet out to get a free one"
    )]
    OverlapsNetwork { subnet: Ipv4Net, other: String, other_subnet: Ipv4Net },
    #[error(
        "subnet {subnet} overlaps the {what} {prefix}{on} of host {host}: containers on it could not reach \
         that host's network; pick another subnet, or leave --subnet out to get a free one"
    )]
    OverlapsHost { subnet: Ipv4Net, what: &'static str, prefix: Ipv4Net, on: String, host: String },
    #[error(
        "no free /{size} in the default pool {pool}: every one overlaps an overlay network or a route or address \
         of a member host (first: {first}); give --subnet, or configure a larger or other default pool"
    )]
    PoolExhausted { pool: Ipv4Net, size: u8, first: String },
    #[error("no free VNI: all {count} VXLAN network identifiers are taken; remove unused networks")]
    NoVni { count: u32 },
    #[error("no network named {network:?} (or with that ID); see `overlay network ls`")]
    NotFound { network: String },
    #[error("{network:?} is ambiguous: it starts the IDs of {candidates}; give more of the ID or the name")]
    Ambiguous { network: String, candidates: String },
    #[error("network {name:?} has {count} attached endpoint(s): {endpoints}; remove or disconnect them first")]
    InUse { name: String, count: usize, endpoints: String },
    #[error("the store kept changing under {operation} ({attempts} attempts); try again")]
    Contention { operation: &'static str, attempts: u32 },
    #[error("reading this host's {what} over netlink (`ip -4 {what}`): {message}")]
    Netlink { what: &'static str, message: String },
    #[error("encoding a record: {0}")]
    Encode(#[from] serde_json::Error),
}
