//! The cluster's keys, relative to the cluster root `/PREFIX/` (docs/store.md).

/// Layout version: bumped if the meaning of a key changes incompatibly.
pub const ROOT: &str = "v1/";

/// `v1/nodes/ID`: a node's record, attached to the node's lease.
pub const NODES: &str = "v1/nodes/";
/// `v1/health/ID`: the leading manager's verdict on a node, attached to the manager's lease.
pub const HEALTH: &str = "v1/health/";
/// `v1/manager/leader`: the leading manager, attached to its lease.
pub const LEADER: &str = "v1/manager/leader";

pub fn node(id: &str) -> String {
    format!("{NODES}{id}")
}

pub fn health(id: &str) -> String {
    format!("{HEALTH}{id}")
}
