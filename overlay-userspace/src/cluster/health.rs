//! A node's health as the leading manager sees it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    /// Heartbeats arrive on time.
    Healthy,
    /// The lease is still alive but heartbeats are late: the node may be hung or cut off.
    Unhealthy,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
        })
    }
}

/// The manager's verdict on a node, under `v1/health/ID`, attached to the manager's
/// lease (it vanishes when no manager leads).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub status: Health,
    /// Seconds since the node's last heartbeat, as the store counts them.
    pub heartbeat_age_secs: i64,
    /// Unix time at which the status last changed.
    pub since: u64,
    /// The name of the manager that wrote this.
    pub checked_by: String,
}

/// A heartbeat is late once two have been missed, plus a second of slack for the store's
/// whole-second lease clock.
pub fn late_after(heartbeat: Duration) -> i64 {
    let beat = i64::try_from(heartbeat.as_millis().div_ceil(1000)).unwrap_or(i64::MAX / 4);
    2 * beat + 1
}

/// Classifies a node from its lease: `granted_ttl - remaining_ttl` is how long ago the
/// node last refreshed it.
pub fn classify(granted_ttl: i64, remaining_ttl: i64, heartbeat: Duration) -> (Health, i64) {
    let age = (granted_ttl - remaining_ttl).max(0);
    let status = if age > late_after(heartbeat) { Health::Unhealthy } else { Health::Healthy };
    (status, age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_heartbeats_make_a_node_unhealthy() {
        let beat = Duration::from_secs(1);
        assert_eq!(classify(8, 8, beat).0, Health::Healthy);
        assert_eq!(classify(8, 6, beat).0, Health::Healthy);
        assert_eq!(classify(8, 5, beat).0, Health::Healthy);
        assert_eq!(classify(8, 4, beat), (Health::Unhealthy, 4));
        assert_eq!(classify(12, 9, Duration::from_secs(3)).0, Health::Healthy);
        assert_eq!(classify(12, 4, Duration::from_secs(3)).0, Health::Unhealthy);
        // Sub-second heartbeats round up to a second.
        assert_eq!(late_after(Duration::from_millis(300)), 3);
    }
}
