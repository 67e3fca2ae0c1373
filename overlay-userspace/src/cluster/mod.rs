//! The cluster: nodes joining under a lease ([`membership`]), the manager that keeps
//! their health and leads by election ([`manager`]), the placement of containers on
//! nodes ([`placement`], choosing by [`scheduler`]), and the view that `overlay list`
//! and `overlay info` print ([`view`]), and the cluster's [`epoch`], by which an agent
//! tells a store that lost its data from removals. Everything goes through the
//! [`crate::store`] interface; the keys are in [`keys`] and docs/store.md.

pub mod epoch;
mod error;
pub mod health;
pub mod identity;
pub mod keys;
pub mod manager;
pub mod membership;
pub mod node;
pub mod placement;
pub mod scheduler;
pub mod view;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use epoch::Epoch;
pub use error::ClusterError;
pub use health::{Health, HealthRecord};
pub use identity::{DEFAULT_STATE_DIR, Identity, StateLock, lock_state_dir};
pub use manager::{ManagerConfig, ManagerRecord};
pub use membership::Membership;
pub use node::{EngineEndpoint, HostFacts, NodeRecord};
pub use view::{ClusterView, NodeView};

/// How often a lease is refreshed and how long it lives without refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat: Duration,
    pub ttl: Duration,
}

impl Timing {
    /// A dead node disappears within 12 s; it is Unhealthy after 7 s without heartbeat.
    pub const DEFAULT: Timing = Timing { heartbeat: Duration::from_secs(3), ttl: Duration::from_secs(12) };

    /// The TTL is counted in whole seconds (etcd's lease unit), at least 2 s (etcd's
    /// minimum), and must leave room for two missed heartbeats.
    pub fn new(heartbeat: Duration, ttl: Duration) -> Result<Self, ClusterError> {
        if heartbeat < Duration::from_millis(100) {
            return Err(ClusterError::InvalidTiming(format!("--heartbeat {heartbeat:?} is below 100ms")));
        }
        if ttl.subsec_nanos() != 0 || ttl < Duration::from_secs(2) {
            return Err(ClusterError::InvalidTiming(format!(
                "--ttl {ttl:?} must be a whole number of seconds, at least 2s"
            )));
        }
        if ttl < heartbeat * 2 {
            return Err(ClusterError::InvalidTiming(format!(
                "--ttl {ttl:?} must be at least twice --heartbeat {heartbeat:?}, or one late heartbeat drops the node"
            )));
        }
        Ok(Timing { heartbeat, ttl })
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_checks() {
        assert!(Timing::new(Timing::DEFAULT.heartbeat, Timing::DEFAULT.ttl).is_ok());
        assert!(Timing::new(Duration::from_secs(1), Duration::from_secs(3)).is_ok());
        assert!(Timing::new(Duration::from_secs(2), Duration::from_secs(3)).is_err());
        assert!(Timing::new(Duration::from_secs(1), Duration::from_millis(2500)).is_err());
        assert!(Timing::new(Duration::from_millis(10), Duration::from_secs(3)).is_err());
        assert!(Timing::new(Duration::from_millis(500), Duration::from_secs(1)).is_err());
        assert!(Timing::DEFAULT.ttl <= Duration::from_secs(15));
    }
}
