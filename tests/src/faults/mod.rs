//! The fault scenarios of a real cluster (issue 16): each written once, sized by its
//! caller: the integration tests run them small, `cargo xtask bench --faults` large, and
//! both get the same figures back.

pub mod audit;
pub mod churn;
pub mod crash;
pub mod docker_crash;
pub mod fixture;
pub mod leader_kill;
pub mod partition;
pub mod wipe;

pub use audit::{Audit, audit};
