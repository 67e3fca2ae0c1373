//! The cluster's epoch: how an agent tells a store that lost its data (wiped, restored
//! empty, or the cluster's prefix deleted) from records removed on purpose. Container
//! and network records carry no lease, so a store that comes back empty looks, record by
//! record, like one where everything was removed; acting on that would take every
//! container down.
//!
//! `v1/_epoch` holds a random value written once, without a lease, by the first agent
//! that finds it missing. Each agent remembers the value it saw first. A store where it
//! is missing, or holds another value, has lost what it held when this agent started:
//! every agent that checks after the loss finds so (the first one writes a new value,
//! which the others find different from theirs). Each [`Epoch::check`] that finds so
//! counts a *restore*; the agent's tasks compare that count with the last one they acted
//! on, and after a new one republish what they own instead of removing what they no
//! longer find (docs/store.md, "When the store loses its data").

use std::time::Duration;

use tokio::sync::Mutex;

use crate::store::{Expect, PutOutcome, Store, StoreError, WatchEvent, WatchUpdate};

/// The key, relative to the cluster's root. Its name sorts before every other key under
/// `v1/`: etcd reports the keys of one deletion of a prefix in key order, so a host
/// hears that the epoch went before it hears that any record went.
pub const KEY: &str = "v1/_epoch";

/// How long, after a restore, a host keeps what it knew of the other hosts (their
/// containers in its datapath, their names, their nodes as members) while they publish
/// theirs again: removals wait this long. Every agent notices a restore within a few
/// seconds (its watch lists again, or sees the epoch deleted) and republishes within
/// seconds more.
pub const RESTORE_HOLD: Duration = Duration::from_secs(30);

/// Whether an update of a watch of `v1/` may mean the store lost its data: a listing
/// again (after a store reset, among others) or the epoch's deletion. [`Epoch::check`]
/// tells.
pub fn may_signal_loss(update: &WatchUpdate) -> bool {
    match update {
        WatchUpdate::Reset(_) => true,
        WatchUpdate::Event(WatchEvent::Delete { key, .. }) => key == KEY,
        WatchUpdate::Event(_) => false,
    }
}

/// What [`Epoch::check`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// How many restores this agent has noticed; a task that acted on a smaller number
    /// has a restore to act on.
    pub restores: u64,
    /// When the last restore was noticed.
    pub restored_at: Option<tokio::time::Instant>,
}

impl Standing {
    /// Whether the last restore is recent enough that removals wait ([`RESTORE_HOLD`]).
    pub fn holding(&self) -> bool {
        self.restored_at.is_some_and(|at| at.elapsed() < RESTORE_HOLD)
    }

    /// Whether a restore was noticed since a task last acted on one (`acted`: the
    /// restores it has acted on, brought up to date here).
    pub fn unacted(&self, acted: &mut u64) -> bool {
        std::mem::replace(acted, self.restores) < self.restores
    }
}

#[derive(Default)]
struct State {
    /// The value this agent knows; `None` before its first check.
    known: Option<String>,
    standing: Standing,
}

/// This agent's memory of the epoch, shared by its tasks.
#[derive(Default)]
pub struct Epoch {
    state: Mutex<State>,
}

impl Epoch {
    pub fn new() -> Epoch {
        Epoch::default()
    }

    /// Reads `v1/_epoch` and compares it with the value this agent knows. Missing: a new
    /// value is written (the first agent to find it so wins; the others read its value).
    /// Missing or another value when this agent knew one: a restore is counted. The
    /// first check of an agent trusts what it finds.
    pub async fn check<S: Store>(&self, store: &S) -> Result<Standing, StoreError> {
        let mut state = self.state.lock().await;
        let stored = match store.get(KEY).await? {
            Some(entry) => String::from_utf8_lossy(&entry.value).into_owned(),
            None => {
                let fresh = format!("{:032x}", rand::random::<u128>());
                match store.put_if(KEY, fresh.clone().into_bytes(), None, Expect::Absent).await? {
                    PutOutcome::Written => fresh,
                    PutOutcome::Conflict(Some(entry)) => String::from_utf8_lossy(&entry.value).into_owned(),
                    // Deleted again at once: the next check writes it.
                    PutOutcome::Conflict(None) => return Ok(state.standing),
                }
            }
        };
        match state.known.as_deref() {
            Some(known) if known == stored => {}
            Some(_) => {
                state.standing.restores += 1;
                state.standing.restored_at = Some(tokio::time::Instant::now());
                tracing::warn!(
                    "the store lost its data (wiped, restored empty, or the cluster's prefix deleted): this host \
                     publishes what it runs again, and keeps the other hosts' containers for {RESTORE_HOLD:?} \
                     while they do"
                );
                state.known = Some(stored);
            }
            None => state.known = Some(stored),
        }
        Ok(state.standing)
    }

    /// The restores noticed so far, without asking the store.
    pub async fn standing(&self) -> Standing {
        self.state.lock().await.standing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_is_acted_on_once() {
        let standing = Standing { restores: 2, restored_at: None };
        let mut acted = 1;
        assert!(standing.unacted(&mut acted));
        assert_eq!(acted, 2);
        assert!(!standing.unacted(&mut acted));
    }
}
