//! The overlay host daemon and CLI as a library: the binary `overlay` is a thin layer
//! over these modules, and the integration tests drive them directly.

pub mod agent;
pub mod cluster;
pub mod container;
pub mod datapath;
pub mod dns;
pub mod docker;
pub mod egress;
pub mod endpoint;
pub mod engine;
pub mod labels;
pub mod metrics;
pub mod netlink;
pub mod netns;
pub mod network;
pub mod shutdown;
pub mod store;
pub mod topology;
