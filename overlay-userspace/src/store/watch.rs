//! A watch that outlives connection losses: it resumes from the last revision it saw,
//! and lists again when that revision was compacted away, the store was reset, or the
//! store keeps no history to resume from (ZooKeeper).

use std::time::Duration;

use tokio::sync::mpsc;

use super::{Backoff, Entry, Store, WatchEvent, WatchMessage, WatchStart};
use crate::shutdown::Shutdown;

/// What a [`watch_prefix`] receiver gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchUpdate {
    /// Everything under the prefix now: forget what you knew and start from this. Sent
    /// first, and again after a compaction or a store reset made the history unusable.
    Reset(Vec<Entry>),
    /// One change after the last reset.
    Event(WatchEvent),
}

/// Watches every key under `prefix`. The task ends when `shutdown` fires or the
/// receiver is dropped; store failures are logged and retried with backoff.
pub fn watch_prefix<S: Store>(store: S, prefix: String, shutdown: Shutdown) -> mpsc::Receiver<WatchUpdate> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        tokio::select! {
            _ = run(store, &prefix, tx.clone(), &shutdown) => {}
            _ = shutdown.wait() => {}
            _ = tx.closed() => {}
        }
    });
    rx
}

/// For a store that keeps history: where its raw watch starts replaying, and the listing
/// to send first for [`WatchStart::Listing`]. A listing is read at one revision; the
/// history from the next one on is everything that happened after it.
pub(super) async fn history_start<S: Store>(
    store: &S,
    prefix: &str,
    start: WatchStart,
) -> Result<(Option<super::Listing>, i64), super::StoreError> {
    Ok(match start {
        WatchStart::Listing => {
            let listing = store.list(prefix).await?;
            let next = listing.revision + 1;
            (Some(listing), next)
        }
        WatchStart::Revision(revision) => (None, revision),
    })
}

async fn run<S: Store>(store: S, prefix: &str, tx: mpsc::Sender<WatchUpdate>, shutdown: &Shutdown) {
    // At most 2 s between attempts: after a partition heals, a watch that resumes late
    // leaves the host behind the cluster for as long.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    // The last revision delivered; None: list first.
    let mut last_seen: Option<i64> = None;
    loop {
        let start = match last_seen {
            // A store without history (ZooKeeper) lists again after every break.
            Some(seen) if store.keeps_history() => match store.current_revision().await {
                // A store restored or recreated empty counts revisions from 1 again:
                // history after `seen` would never come, so list again.
                Ok(current) if current < seen => {
                    tracing::warn!(
                        "the store's revision went back from {seen} to {current} (it was reset); listing {prefix:?} again"
                    );
                    WatchStart::Listing
                }
                Ok(_) => WatchStart::Revision(seen + 1),
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!("the store is unreachable ({error}); resuming the watch of {prefix:?} in {delay:?}");
                    if shutdown.sleep(delay).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
            _ => WatchStart::Listing,
        };
        if start == WatchStart::Listing {
            last_seen = None;
        }
        let mut messages = match store.watch(prefix, start).await {
            Ok(messages) => {
                backoff.reset();
                messages
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!("watching {prefix:?} in the store failed ({error}); retrying in {delay:?}");
                if shutdown.sleep(delay).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let broken = loop {
            match messages.recv().await {
                Some(Ok(WatchMessage::Listing(listing))) => {
                    if tx.send(WatchUpdate::Reset(listing.entries)).await.is_err() {
                        return;
                    }
                    last_seen = Some(listing.revision);
                }
                Some(Ok(WatchMessage::Events(events))) => {
                    backoff.reset();
                    for event in events {
                        last_seen = Some(event.revision());
                        if tx.send(WatchUpdate::Event(event)).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(WatchMessage::Compacted { compact_revision })) => {
                    tracing::info!(
                        "the store compacted its history up to revision {compact_revision}, past this watch of \
                         {prefix:?} (at {}); listing again",
                        last_seen.unwrap_or_default()
                    );
                    last_seen = None;
                    break None;
                }
                Some(Err(error)) => break Some(format!("broke ({error})")),
                None => break Some("ended".to_owned()),
            }
        };
        if let Some(how) = broken {
            let delay = backoff.next_delay();
            match last_seen {
                Some(seen) if store.keeps_history() => {
                    tracing::warn!("the watch of {prefix:?} {how}; resuming after revision {seen} in {delay:?}")
                }
                _ => tracing::warn!("the watch of {prefix:?} {how}; listing again in {delay:?}"),
            }
            if shutdown.sleep(delay).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use tokio::sync::mpsc;

    use super::*;
    use crate::store::{Expect, LeaseId, LeaseStatus, Listing, PutOutcome, StoreError};

    /// An in-memory store with a history, compaction and watches that can be broken.
    #[derive(Clone, Default)]
    struct Fake {
        state: Arc<Mutex<State>>,
    }

    #[derive(Default)]
    struct State {
        revision: i64,
        data: BTreeMap<String, Entry>,
        history: Vec<WatchEvent>,
        compacted: i64,
        watchers: Vec<(String, mpsc::Sender<Result<WatchMessage, StoreError>>)>,
        lists: usize,
        watch_starts: Vec<i64>,
    }

    impl Fake {
        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap()
        }

        fn write(&self, key: &str, value: &str) -> i64 {
            let mut s = self.state();
            s.revision += 1;
            let entry = Entry { key: key.into(), value: value.into(), mod_revision: s.revision, lease: None };
            s.data.insert(key.into(), entry.clone());
            let event = WatchEvent::Put(entry);
            s.history.push(event.clone());
            s.watchers.retain(|(prefix, tx)| {
                !key.starts_with(prefix.as_str()) || tx.try_send(Ok(WatchMessage::Events(vec![event.clone()]))).is_ok()
            });
            s.revision
        }

        /// Every open watch stream ends, as when the connection to the store breaks.
        fn break_watches(&self) {
            self.state().watchers.clear();
        }

        fn compact(&self) {
            let mut s = self.state();
            s.compacted = s.revision;
        }

        /// The store comes back empty, counting revisions from the start.
        fn wipe(&self) {
            let mut s = self.state();
            let (lists, starts) = (s.lists, std::mem::take(&mut s.watch_starts));
            *s = State { lists, watch_starts: starts, ..State::default() };
        }
    }

    fn unsupported() -> StoreError {
        StoreError::Request { operation: "fake", message: "not supported".into() }
    }

    impl Store for Fake {
        fn endpoints(&self) -> String {
            "fake".into()
        }
        async fn current_revision(&self) -> Result<i64, StoreError> {
            Ok(self.state().revision)
        }
        async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
            Ok(self.state().data.get(key).cloned())
        }
        async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
            let mut s = self.state();
            s.lists += 1;
            let entries = s.data.values().filter(|e| e.key.starts_with(prefix)).cloned().collect();
            Ok(Listing { entries, revision: s.revision })
        }
        async fn put(&self, _: &str, _: Vec<u8>, _: Option<LeaseId>) -> Result<(), StoreError> {
            Err(unsupported())
        }
        async fn put_if(&self, _: &str, _: Vec<u8>, _: Option<LeaseId>, _: Expect) -> Result<PutOutcome, StoreError> {
            Err(unsupported())
        }
        async fn delete(&self, _: &str) -> Result<bool, StoreError> {
            Err(unsupported())
        }
        async fn delete_if(&self, _: &str, _: i64) -> Result<bool, StoreError> {
            Err(unsupported())
        }
        async fn grant_lease(&self, _: Duration) -> Result<LeaseId, StoreError> {
            Err(unsupported())
        }
        async fn keep_alive(&self, _: LeaseId) -> Result<bool, StoreError> {
            Err(unsupported())
        }
        async fn lease_status(&self, _: LeaseId) -> Result<Option<LeaseStatus>, StoreError> {
            Err(unsupported())
        }
        async fn revoke_lease(&self, _: LeaseId) -> Result<(), StoreError> {
            Err(unsupported())
        }
        async fn campaign(&self, _: &str, _: Vec<u8>, _: LeaseId) -> Result<bool, StoreError> {
            Err(unsupported())
        }
        async fn leader(&self, _: &str) -> Result<Option<Entry>, StoreError> {
            Err(unsupported())
        }
        fn keeps_history(&self) -> bool {
            true
        }
        async fn watch(
            &self,
            prefix: &str,
            start: WatchStart,
        ) -> Result<mpsc::Receiver<Result<WatchMessage, StoreError>>, StoreError> {
            let (listing, from_revision) = history_start(self, prefix, start).await?;
            let mut s = self.state();
            s.watch_starts.push(from_revision);
            let (tx, rx) = mpsc::channel(64);
            if let Some(listing) = listing {
                let _ = tx.try_send(Ok(WatchMessage::Listing(listing)));
            }
            if from_revision <= s.compacted {
                let _ = tx.try_send(Ok(WatchMessage::Compacted { compact_revision: s.compacted }));
                return Ok(rx);
            }
            let replay: Vec<WatchEvent> = s
                .history
                .iter()
                .filter(|e| e.revision() >= from_revision && key_of(e).starts_with(prefix))
                .cloned()
                .collect();
            if !replay.is_empty() {
                let _ = tx.try_send(Ok(WatchMessage::Events(replay)));
            }
            s.watchers.push((prefix.to_owned(), tx));
            Ok(rx)
        }
    }

    fn key_of(event: &WatchEvent) -> &str {
        match event {
            WatchEvent::Put(entry) => &entry.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    async fn next(rx: &mut mpsc::Receiver<WatchUpdate>) -> WatchUpdate {
        tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("no watch update within 5s").unwrap()
    }

    fn keys(update: &WatchUpdate) -> Vec<String> {
        match update {
            WatchUpdate::Reset(entries) => entries.iter().map(|e| e.key.clone()).collect(),
            WatchUpdate::Event(event) => vec![key_of(event).to_owned()],
        }
    }

    #[tokio::test]
    async fn resumes_after_the_last_revision_then_relists_after_compaction_or_reset() {
        let store = Fake::default();
        store.write("n/a", "1");
        store.write("other/x", "1");
        let mut rx = watch_prefix(store.clone(), "n/".into(), Shutdown::never());

        let first = next(&mut rx).await;
        assert!(matches!(first, WatchUpdate::Reset(_)), "{first:?}");
        assert_eq!(keys(&first), ["n/a"]);
        let b = store.write("n/b", "1");
        assert_eq!(next(&mut rx).await, WatchUpdate::Event(WatchEvent::Put(store.state().data["n/b"].clone())));

        // The connection breaks and a write happens meanwhile: the watch resumes right
        // after the last revision it delivered, without listing again.
        store.break_watches();
        store.write("n/c", "1");
        assert_eq!(keys(&next(&mut rx).await), ["n/c"]);
        assert_eq!(store.state().lists, 1);
        assert_eq!(store.state().watch_starts.last(), Some(&(b + 1)));

        // Broken again, and the history it would resume from is compacted: list again.
        store.break_watches();
        store.write("n/d", "1");
        store.compact();
        let relisted = next(&mut rx).await;
        assert!(matches!(relisted, WatchUpdate::Reset(_)), "{relisted:?}");
        assert_eq!(keys(&relisted), ["n/a", "n/b", "n/c", "n/d"]);
        assert_eq!(store.state().lists, 2);
        store.write("n/e", "1");
        assert_eq!(keys(&next(&mut rx).await), ["n/e"]);

        // The store comes back empty (revisions start over): list again.
        store.break_watches();
        store.wipe();
        store.write("n/z", "1");
        let relisted = next(&mut rx).await;
        assert!(matches!(relisted, WatchUpdate::Reset(_)), "{relisted:?}");
        assert_eq!(keys(&relisted), ["n/z"]);
        assert_eq!(store.state().lists, 3);
    }
}
