//! Raw watches: a persistent recursive watch on the prefix's directory, registered
//! before the listing so that no change falls between the two.
//!
//! ZooKeeper's notifications name a node and what happened, not its value: each created
//! or changed node is read when its notification arrives, so a put reports the node as
//! it is then (the last of several quick changes may come more than once), and a node
//! deleted before it is read is reported by its deletion only. Changes of directories
//! are not keys and are skipped. Notifications sent while the connection was down can
//! be lost (ZOOKEEPER-4698), so the stream ends at the first disconnection, and the
//! caller ([`crate::store::watch_prefix`]) lists again.

use std::collections::HashSet;

use tokio::sync::mpsc;
use zookeeper_client::{AddWatchMode, EventType, SessionState};

use super::{ZkStore, split_prefix};
use crate::store::{StoreError, WatchEvent, WatchMessage};

pub(super) async fn watch(
    store: &ZkStore,
    prefix: &str,
) -> Result<mpsc::Receiver<Result<WatchMessage, StoreError>>, StoreError> {
    let client = store.client().await?;
    let dir = store.key_path(split_prefix(prefix).0)?;
    let mut watcher = store.request("watch", client.watch(&dir, AddWatchMode::PersistentRecursive)).await?;
    let (listing, dirs) = store.listing(&client, prefix).await?;
    let (tx, rx) = mpsc::channel(64);
    let mut revision = listing.revision;
    // The channel is new and empty: this cannot fail for want of room.
    let _ = tx.try_send(Ok(WatchMessage::Listing(listing)));
    let (store, prefix) = (store.clone(), prefix.to_owned());
    let mut dirs: HashSet<String> = dirs.into_iter().collect();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                event = watcher.changed() => event,
                // Nobody listens any more: dropping the watcher removes it.
                _ = tx.closed() => return,
            };
            let path = event.path;
            let change = match event.event_type {
                EventType::Session => {
                    let message = match event.session_state {
                        SessionState::Disconnected => "the connection to ZooKeeper was lost".to_owned(),
                        SessionState::SyncConnected | SessionState::ConnectedReadOnly => continue,
                        // A terminal state is the watcher's last event.
                        state => format!("the ZooKeeper session ended ({state})"),
                    };
                    let _ = tx.send(Err(StoreError::Request { operation: "watch", message })).await;
                    return;
                }
                EventType::NodeChildrenChanged => continue,
                EventType::NodeDeleted => {
                    if dirs.remove(&path) {
                        continue;
                    }
                    // Only ZooKeeper 3.9 and later send the zxid of the change.
                    if event.zxid > 0 {
                        revision = revision.max(event.zxid);
                    }
                    store.key_of(&path).map(|key| WatchEvent::Delete { key, revision })
                }
                EventType::NodeCreated | EventType::NodeDataChanged => {
                    if event.event_type == EventType::NodeDataChanged && dirs.contains(&path) {
                        continue;
                    }
                    match store.read(&client, &path).await {
                        Err(error) => {
                            let _ = tx.send(Err(error)).await;
                            return;
                        }
                        Ok(None) => None,
                        Ok(Some(node)) if node.is_dir() => {
                            dirs.insert(path);
                            None
                        }
                        Ok(Some(node)) => store.entry(&path, &node).map(|entry| {
                            revision = revision.max(entry.mod_revision);
                            WatchEvent::Put(entry)
                        }),
                    }
                }
            };
            let Some(change) = change else { continue };
            let key = match &change {
                WatchEvent::Put(entry) => &entry.key,
                WatchEvent::Delete { key, .. } => key,
            };
            if !key.starts_with(&prefix) {
                continue;
            }
            if tx.send(Ok(WatchMessage::Events(vec![change]))).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
