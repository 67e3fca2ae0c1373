//! The ZooKeeper backend (3.6 or later), through the `zookeeper-client` crate. How each
//! part of [`Store`] maps onto ZooKeeper is in docs/store.md; in short:
//!
//! - A key is a node under `/PREFIX/keys/`: `v1/nodes/ID` is `/PREFIX/keys/v1/nodes/ID`.
//!   The nodes between are *directories*: container nodes with no data, which the server
//!   removes once their last child is gone. A persistent node with data, or any ephemeral
//!   node, is a key; so a value without a lease must not be empty, and a key has no keys
//!   below it.
//! - Every write of a key also bumps the data version of each directory above it, up to
//!   `/PREFIX/keys`, in the same `multi`. A directory's `mzxid` is then the zxid of the
//!   last key created or changed below it, which makes revisions of prefixes
//!   ([`Listing::revision`], [`super::Condition::PrefixUnchangedSince`]) checkable with one
//!   version check. Revisions are zxids; a key's `mod_revision` is its `mzxid`.
//! - A lease is a ZooKeeper session of its own ([`lease`]); the keys attached to it are
//!   its ephemeral nodes.
//! - Transactions are `multi`s of version checks and writes, planned from fresh reads and
//!   retried when a check fails ([`txn`]).
//! - Watches are persistent recursive watches that list again after every break
//!   ([`watch`]); ZooKeeper keeps no history to resume from.
//! - The manager's election uses ephemeral sequential nodes ([`election`]).

mod election;
mod lease;
mod txn;
mod watch;

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::future::join_all;
use tokio::sync::mpsc;
use zookeeper_client::{self as zk, Acls, Client, CreateMode, Stat};

use super::{
    Credentials, Entry, Expect, LeaseId, LeaseStatus, Listing, PutOutcome, Store, StoreConfig, StoreError,
    WatchMessage, WatchStart,
    txn::{Condition, Op, Transact},
};

/// The session that reads, watches and writes keys without a lease. It holds no
/// ephemeral node, so its timeout only bounds how long the client tries to resume it
/// before it opens a new one: after a partition that long, or when the ensemble came
/// back empty and refuses the old session (the server clamps it to its own limits).
const MAIN_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to a ZooKeeper ensemble, scoped to one cluster prefix. Clones share the
/// sessions.
#[derive(Clone)]
pub struct ZkStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port,host:port`, ZooKeeper's connect string (and the endpoints in messages).
    cluster: String,
    /// `/PREFIX`
    root: String,
    credentials: Option<Credentials>,
    timeout: Duration,
    main: Mutex<Client>,
    /// Held while a main session that ended is replaced, so only one replaces it.
    reopening: tokio::sync::Mutex<()>,
    /// The leases this process granted: each is a session of its own.
    leases: Mutex<HashMap<LeaseId, lease::Held>>,
    /// The server's clock, as last seen in the `mtime` of a write (for lease status).
    clock: Mutex<Option<lease::ClockSample>>,
}

/// A node as read: its data and its stat.
#[derive(Clone, Debug)]
struct Node {
    data: Vec<u8>,
    stat: Stat,
}

impl Node {
    /// A directory: persistent, without data (see the module docs).
    fn is_dir(&self) -> bool {
        self.stat.ephemeral_owner == 0 && self.data.is_empty()
    }
}

/// `NoNode` as `None`: most reads here ask whether a node is there.
fn present<T>(result: Result<T, zk::Error>) -> Result<Option<T>, zk::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(zk::Error::NoNode) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The directory a prefix lists and the start its first-level names must have:
/// `"v1/nodes/"` is everything in `v1/nodes`; `"v1/networks/ids/ab"` is the names of
/// `v1/networks/ids` that start with `ab`, and everything below them.
fn split_prefix(prefix: &str) -> (&str, &str) {
    match prefix.rsplit_once('/') {
        Some((dir, leaf)) => (dir, leaf),
        None => ("", prefix),
    }
}

impl ZkStore {
    /// Opens the main session, creates the cluster's nodes if they are missing and checks
    /// that this user may read them.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let cluster = config.url.endpoints.join(",");
        let root = format!("/{}", config.url.prefix);
        let main =
            open_session(&cluster, config.credentials.as_ref(), config.request_timeout, MAIN_SESSION_TIMEOUT, false)
                .await?;
        let store = ZkStore {
            inner: Arc::new(Inner {
                cluster,
                root,
                credentials: config.credentials.clone(),
                timeout: config.request_timeout,
                main: Mutex::new(main),
                reopening: tokio::sync::Mutex::new(()),
                leases: Mutex::new(HashMap::new()),
                clock: Mutex::new(None),
            }),
        };
        let client = store.client().await?;
        store.prepare(&client).await?;
        Ok(store)
    }

    /// `/PREFIX`, `/PREFIX/keys` and `/PREFIX/leases`, persistent, with this user's ACL.
    async fn prepare(&self, client: &Client) -> Result<(), StoreError> {
        let mut paths = Vec::new();
        let mut path = String::new();
        for segment in self.inner.root.trim_start_matches('/').split('/') {
            path = format!("{path}/{segment}");
            paths.push(path.clone());
        }
        paths.extend([self.keys_root(), self.leases_dir()]);
        for path in paths {
            let options = CreateMode::Persistent.with_acls(self.acls());
            match self.bounded("create the cluster's nodes", client.create(&path, &[], &options)).await {
                Ok(_) => {}
                Err(error) if matches!(error.1, Some(zk::Error::NodeExists)) => {}
                Err(error) => return Err(self.access_error(error, &path)),
            }
        }
        // Creating needs the parent's permission only: reading tells whether this user
        // may use the nodes.
        let keys = self.keys_root();
        self.bounded("read the cluster's nodes", client.get_data(&keys))
            .await
            .map(|_| ())
            .map_err(|error| self.access_error(error, &keys))
    }

    /// At connect time, a refusal says what to fix: the credentials, or that there are none.
    fn access_error(&self, (error, raw): (StoreError, Option<zk::Error>), path: &str) -> StoreError {
        match (raw, &self.inner.credentials) {
            (Some(zk::Error::NoAuth), Some(credentials)) => StoreError::Auth {
                user: credentials.user.clone(),
                message: format!(
                    "ZooKeeper denied digest user {:?} access to {path} (a wrong password, or the node's ACL \
                     names another user)",
                    credentials.user
                ),
            },
            (Some(zk::Error::NoAuth), None) => StoreError::AuthRequired {
                message: format!("ZooKeeper denied access to {path}: its ACL requires digest authentication"),
            },
            _ => error,
        }
    }

    fn keys_root(&self) -> String {
        format!("{}/keys", self.inner.root)
    }

    fn leases_dir(&self) -> String {
        format!("{}/leases", self.inner.root)
    }

    /// The ACL of every node this store creates: only this user (digest), or anyone when
    /// the store runs without authentication.
    fn acls(&self) -> Acls<'static> {
        if self.inner.credentials.is_some() { Acls::creator_all() } else { Acls::anyone_all() }
    }

    /// The node of `key`. Keys are relative paths: no leading, trailing or doubled `/`,
    /// no `.` or `..` segment, no control character.
    fn key_path(&self, key: &str) -> Result<String, StoreError> {
        if key.is_empty() {
            return Ok(self.keys_root());
        }
        let bad = key.split('/').any(|s| s.is_empty() || s == "." || s == "..") || key.chars().any(char::is_control);
        if bad {
            return Err(StoreError::InvalidKey {
                key: key.to_owned(),
                reason: "ZooKeeper paths have no empty, \".\" or \"..\" segment and no control characters".into(),
            });
        }
        Ok(format!("{}/{key}", self.keys_root()))
    }

    /// The key of a node under the keys root.
    fn key_of(&self, path: &str) -> Option<String> {
        let keys = self.keys_root();
        if path == keys {
            return Some(String::new());
        }
        path.strip_prefix(&keys)?.strip_prefix('/').map(str::to_owned)
    }

    fn entry(&self, path: &str, node: &Node) -> Option<Entry> {
        if node.is_dir() {
            return None;
        }
        let owner = node.stat.ephemeral_owner;
        Some(Entry {
            key: self.key_of(path)?,
            value: node.data.clone(),
            mod_revision: node.stat.mzxid,
            lease: (owner != 0).then_some(owner),
        })
    }

    /// The main session, opened anew if it ended (expired while the store was out of
    /// reach, or closed). Watches of the old session end with it and list again.
    async fn client(&self) -> Result<Client, StoreError> {
        let current = self.inner.main.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !current.state().is_terminated() {
            return Ok(current);
        }
        let _reopening = self.inner.reopening.lock().await;
        let current = self.inner.main.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !current.state().is_terminated() {
            return Ok(current);
        }
        tracing::warn!("the ZooKeeper session {} ended ({}); opening a new one", current.session_id(), current.state());
        let fresh = open_session(
            &self.inner.cluster,
            self.inner.credentials.as_ref(),
            self.inner.timeout,
            MAIN_SESSION_TIMEOUT,
            false,
        )
        .await?;
        // The ensemble may have come back empty: its nodes are made again.
        self.prepare(&fresh).await?;
        *self.inner.main.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Bounds a request by the request timeout; the error keeps ZooKeeper's own, for the
    /// callers that tell some apart.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, zk::Error>>,
    ) -> Result<T, (StoreError, Option<zk::Error>)> {
        match tokio::time::timeout(self.inner.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err((self.error(operation, &error), Some(error))),
            Err(_) => Err((
                StoreError::Timeout { endpoints: self.inner.cluster.clone(), operation, timeout: self.inner.timeout },
                None,
            )),
        }
    }

    /// [`Self::bounded`] for callers that only pass the error on.
    async fn request<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, zk::Error>>,
    ) -> Result<T, StoreError> {
        self.bounded(operation, request).await.map_err(|(error, _)| error)
    }

    fn error(&self, operation: &'static str, error: &zk::Error) -> StoreError {
        match (error, &self.inner.credentials) {
            (zk::Error::NoAuth, Some(_)) => StoreError::PermissionDenied { operation, message: error.to_string() },
            (zk::Error::NoAuth, None) => StoreError::AuthRequired { message: format!("{operation}: {error}") },
            (zk::Error::AuthFailed, Some(credentials)) => {
                StoreError::Auth { user: credentials.user.clone(), message: error.to_string() }
            }
            _ => StoreError::Request { operation, message: error.to_string() },
        }
    }

    /// Reads a node (`None`: it is not there).
    async fn read(&self, client: &Client, path: &str) -> Result<Option<Node>, StoreError> {
        let read = async { present(client.get_data(path).await) };
        Ok(self.request("get", read).await?.map(|(data, stat)| Node { data, stat }))
    }

    /// The `mzxid` of the directory `path`, or of the nearest one above it that exists:
    /// no key below it was created or changed after this zxid, and every later write has
    /// a higher one.
    async fn revision_of(&self, client: &Client, path: &str) -> Result<i64, StoreError> {
        let keys = self.keys_root();
        let mut path = path.to_owned();
        loop {
            if let Some(node) = self.read(client, &path).await? {
                return Ok(node.stat.mzxid);
            }
            if path == keys || !path.starts_with(&keys) {
                return Err(StoreError::Request {
                    operation: "get revision",
                    message: format!("{keys} is gone: restart this process to create the cluster's nodes again"),
                });
            }
            path.truncate(path.rfind('/').unwrap_or(0));
        }
    }

    /// Every key under `prefix` with its node, and the directories met on the way. The
    /// reads of one level go out together.
    async fn walk(&self, client: &Client, prefix: &str) -> Result<(Vec<Entry>, Vec<String>), StoreError> {
        let (dir, leaf) = split_prefix(prefix);
        let mut pending = vec![(self.key_path(dir)?, leaf.to_owned())];
        let (mut entries, mut dirs) = (Vec::new(), Vec::new());
        while let Some((dir, leaf)) = pending.pop() {
            let children = async { present(client.get_children(&dir).await) };
            let Some((children, _)) = self.request("list", children).await? else { continue };
            let paths: Vec<String> = children
                .into_iter()
                .filter(|name| name.starts_with(&leaf))
                .map(|name| format!("{dir}/{name}"))
                .collect();
            let reads = join_all(paths.iter().map(|path| async { present(client.get_data(path).await) }));
            let nodes = self.request("list", async { reads.await.into_iter().collect::<Result<Vec<_>, _>>() }).await?;
            for (path, node) in paths.into_iter().zip(nodes) {
                let Some((data, stat)) = node else { continue };
                let node = Node { data, stat };
                if let Some(entry) = self.entry(&path, &node) {
                    entries.push(entry);
                }
                if node.is_dir() || node.stat.num_children > 0 {
                    if node.is_dir() {
                        dirs.push(path.clone());
                    }
                    pending.push((path, String::new()));
                }
            }
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((entries, dirs))
    }

    /// A listing, and the directories it met. The revision is read first (see
    /// [`Self::revision_of`]): a key changed while the walk ran is above it, so a
    /// `PrefixUnchangedSince` on this listing fails, as it must for a listing that may
    /// have missed the change.
    async fn listing(&self, client: &Client, prefix: &str) -> Result<(Listing, Vec<String>), StoreError> {
        let (dir, _) = split_prefix(prefix);
        let revision = self.revision_of(client, &self.key_path(dir)?).await?;
        let (entries, dirs) = self.walk(client, prefix).await?;
        Ok((Listing { entries, revision }, dirs))
    }
}

/// Opens a session. `detached`: dropping the client leaves the session to expire on the
/// server at its timeout instead of closing it (lease sessions, see [`lease`]).
async fn open_session(
    cluster: &str,
    credentials: Option<&Credentials>,
    request_timeout: Duration,
    session_timeout: Duration,
    detached: bool,
) -> Result<Client, StoreError> {
    let mut connector = Client::connector().with_session_timeout(session_timeout).with_fail_eagerly();
    if detached {
        connector = connector.with_detached();
    }
    if let Some(credentials) = credentials {
        connector = connector.with_auth("digest", format!("{}:{}", credentials.user, credentials.password).as_bytes());
    }
    let budget = request_timeout.max(Duration::from_secs(1));
    match tokio::time::timeout(budget, connector.connect(cluster)).await {
        Err(_) => Err(StoreError::Timeout { endpoints: cluster.to_owned(), operation: "connect", timeout: budget }),
        Ok(Err(zk::Error::AuthFailed)) => Err(StoreError::Auth {
            user: credentials.map(|c| c.user.clone()).unwrap_or_default(),
            message: "ZooKeeper refused the authentication".into(),
        }),
        Ok(Err(zk::Error::NoHosts)) => Err(StoreError::Request {
            operation: "connect",
            message: format!("no ZooKeeper server of {cluster} answered"),
        }),
        Ok(Err(error)) => Err(StoreError::Request { operation: "connect", message: error.to_string() }),
        Ok(Ok(client)) => Ok(client),
    }
}

impl Store for ZkStore {
    fn endpoints(&self) -> String {
        self.inner.cluster.clone()
    }

    /// The zxid of the last key created or changed in the cluster (deletions do not
    /// count: ZooKeeper records them only in the parent's `pzxid`).
    async fn current_revision(&self) -> Result<i64, StoreError> {
        let client = self.client().await?;
        self.revision_of(&client, &self.keys_root()).await
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let client = self.client().await?;
        let path = self.key_path(key)?;
        Ok(self.read(&client, &path).await?.and_then(|node| self.entry(&path, &node)))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let client = self.client().await?;
        Ok(self.listing(&client, prefix).await?.0)
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<(), StoreError> {
        let put = Op::Put { key: key.to_owned(), value, lease };
        self.txn(Vec::new(), vec![put], Vec::new()).await.map(|_| ())
    }

    async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
        expect: Expect,
    ) -> Result<PutOutcome, StoreError> {
        let condition = match expect {
            Expect::Absent => Condition::Absent(key.to_owned()),
            Expect::ModRevision(revision) => Condition::ModRevision(key.to_owned(), revision),
        };
        let put = Op::Put { key: key.to_owned(), value, lease };
        let outcome = self.txn(vec![condition], vec![put], vec![Op::Get(key.to_owned())]).await?;
        if outcome.succeeded {
            return Ok(PutOutcome::Written);
        }
        Ok(PutOutcome::Conflict(outcome.reads.into_iter().next().flatten()))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let when = vec![Condition::Exists(key.to_owned())];
        Ok(self.txn(when, vec![Op::Delete(key.to_owned())], Vec::new()).await?.succeeded)
    }

    async fn delete_if(&self, key: &str, mod_revision: i64) -> Result<bool, StoreError> {
        let when = vec![Condition::ModRevision(key.to_owned(), mod_revision)];
        Ok(self.txn(when, vec![Op::Delete(key.to_owned())], Vec::new()).await?.succeeded)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        lease::grant(self, ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<bool, StoreError> {
        lease::keep_alive(self, lease).await
    }

    async fn lease_status(&self, lease: LeaseId) -> Result<Option<LeaseStatus>, StoreError> {
        lease::status(self, lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        lease::revoke(self, lease).await
    }

    fn keeps_history(&self) -> bool {
        false
    }

    async fn watch(
        &self,
        prefix: &str,
        start: WatchStart,
    ) -> Result<mpsc::Receiver<Result<WatchMessage, StoreError>>, StoreError> {
        match start {
            WatchStart::Listing => watch::watch(self, prefix).await,
            // Nothing to replay from: say so the way a compacted store does.
            WatchStart::Revision(revision) => {
                let (tx, rx) = mpsc::channel(1);
                let _ = tx.try_send(Ok(WatchMessage::Compacted { compact_revision: revision }));
                Ok(rx)
            }
        }
    }

    async fn campaign(&self, election: &str, value: Vec<u8>, lease: LeaseId) -> Result<bool, StoreError> {
        election::campaign(self, election, value, lease).await
    }

    async fn leader(&self, election: &str) -> Result<Option<Entry>, StoreError> {
        election::leader(self, election).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_name_a_directory_and_the_start_of_its_names() {
        assert_eq!(split_prefix(""), ("", ""));
        assert_eq!(split_prefix("v1/nodes/"), ("v1/nodes", ""));
        assert_eq!(split_prefix("v1/networks/ids/ab"), ("v1/networks/ids", "ab"));
        assert_eq!(split_prefix("k"), ("", "k"));
    }

    #[test]
    fn directories_are_persistent_nodes_without_data() {
        let stat = |owner| Stat {
            czxid: 1,
            mzxid: 1,
            pzxid: 1,
            ctime: 0,
            mtime: 0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            data_length: 0,
            num_children: 0,
        };
        assert!(Node { data: Vec::new(), stat: stat(0) }.is_dir());
        assert!(!Node { data: b"x".to_vec(), stat: stat(0) }.is_dir());
        // An ephemeral node is always a key: it cannot have children.
        assert!(!Node { data: Vec::new(), stat: stat(0x1234) }.is_dir());
    }
}
