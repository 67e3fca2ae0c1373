//! Cluster-wide overlay networks: created once from any host, seen with the same ID
//! from every host. A network has a unique ID, a unique VNI, a subnet and a gateway.
//!
//! - [`spec`]: the checks on what the operator gives, before anything is written;
//! - [`subnet`]: overlaps, and the choice of a free subnet from the default pool;
//! - [`registry`]: create, list and find, in the store, and restore what a store lost;
//! - [`ipam`]: the cluster-wide address allocator: addresses within a network;
//! - [`attached`]: what is attached to a network (its addresses): inspect, and remove
//!   only when nothing is;
//! - [`host`]: each agent publishes its host's IPv4 routes and addresses, so that no
//!   overlay subnet shadows a network a member host reaches.
//!
//! The keys are in [`keys`] and docs/store.md; the behaviour in docs/networks.md.

pub mod attached;
mod error;
pub mod host;
pub mod ipam;
pub mod keys;
pub mod registry;
pub mod spec;
pub mod subnet;

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use attached::{EndpointView, NetworkView, inspect, remove};
pub use error::NetworkError;
pub use host::{HostAddress, HostNetworks, HostRoute};
pub use registry::{Restored, create, find, list, restore, restore_all};
pub use spec::{Addressing, CreateRequest, DRIVER, NetworkSpec};
pub use subnet::{SubnetPool, Taken};

/// VNIs handed to networks: Docker's overlay range, clear of the low values people
/// configure by hand for kernel VXLAN devices.
pub const VNI_FIRST: u32 = 4096;
/// The largest 24-bit VXLAN network identifier.
pub const VNI_LAST: u32 = (1 << 24) - 1;

/// A network's record under `v1/networks/ids/ID`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 64 hexadecimal digits (12 to 64 when given by the Docker plugin).
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Dynamic addresses come from here only (static ones from the whole subnet).
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    pub vni: u32,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Unix time (seconds) of the creation.
    pub created_at: u64,
}

impl NetworkRecord {
    /// The first 12 digits of the ID, as `overlay network ls` prints it.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// `network ls`'s SCOPE column: an overlay network spans the cluster.
    pub fn scope(&self) -> &'static str {
        "global"
    }
}

/// A fresh network ID: 64 hexadecimal digits, 256 random bits.
pub fn new_id() -> String {
    format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>())
}
