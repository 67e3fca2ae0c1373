//! [`Transact`] for ZooKeeper: a `multi` planned from fresh reads.
//!
//! ZooKeeper's `multi` checks data versions and fails as a whole when one check or write
//! fails. So a transaction reads what its conditions and writes name, decides, and sends
//! one `multi` that first checks that everything it relied on is as it was read (a
//! version check per node read; for a node read as absent, creating and deleting it,
//! which fails if it exists), then writes. If the `multi` fails on a check, something
//! changed in between: the transaction starts again from the reads. Conditions that do
//! not hold when read end the transaction there; its failure branch may only read.

use std::collections::{BTreeSet, HashMap};

use zookeeper_client::{self as zk, Client, CreateMode, MultiReadResult, MultiWriteError, MultiWriteResult};

use super::{Node, ZkStore, split_prefix};
use crate::store::{
    Entry, LeaseId, StoreError,
    txn::{Condition, Op, Transact, TxnOutcome},
};

/// How often a transaction starts again after a check failed before it gives up.
const ATTEMPTS: u32 = 32;

/// One operation of the `multi`.
#[derive(Debug)]
enum Step {
    Check { path: String, version: i32 },
    Create { path: String, data: Vec<u8>, mode: CreateMode },
    SetData { path: String, data: Vec<u8>, version: Option<i32> },
    Delete { path: String, version: Option<i32> },
}

/// What a `multi` did.
enum Committed {
    /// The zxid of the write (`None` when nothing was written).
    Done(Option<i64>),
    /// A check failed: read again and start over.
    Changed,
}

/// One attempt: the nodes read so far and the steps planned from them.
struct Plan<'a> {
    store: &'a ZkStore,
    client: &'a Client,
    nodes: HashMap<String, Option<Node>>,
    steps: Vec<Step>,
    /// The directories above every key created or changed: their data version is bumped
    /// once, at the end of the `multi` (module docs of `zookeeper`).
    bumps: BTreeSet<String>,
    /// Keys this plan writes, to refuse a second write of one key.
    written: BTreeSet<String>,
}

impl<'a> Plan<'a> {
    fn new(store: &'a ZkStore, client: &'a Client) -> Self {
        Plan {
            store,
            client,
            nodes: HashMap::new(),
            steps: Vec::new(),
            bumps: BTreeSet::new(),
            written: BTreeSet::new(),
        }
    }

    /// Reads `paths` in one multi-read (one round trip) into the plan.
    async fn prefetch(&mut self, paths: impl IntoIterator<Item = String>) -> Result<(), StoreError> {
        let paths: Vec<String> = paths.into_iter().filter(|p| !self.nodes.contains_key(p)).collect();
        if paths.is_empty() {
            return Ok(());
        }
        let mut reader = self.client.new_multi_reader();
        for path in &paths {
            reader.add_get_data(path).map_err(|e| self.store.error("read", &e))?;
        }
        let results = self.store.request("read", reader.commit()).await?;
        for (path, result) in paths.into_iter().zip(results) {
            let node = match result {
                MultiReadResult::Data { data, stat } => Some(Node { data, stat }),
                MultiReadResult::Error { err: zk::Error::NoNode } => None,
                MultiReadResult::Error { err } => return Err(self.store.error("read", &err)),
                other => {
                    return Err(StoreError::Request {
                        operation: "read",
                        message: format!("unexpected answer to a read of {path}: {other:?}"),
                    });
                }
            };
            self.nodes.insert(path, node);
        }
        Ok(())
    }

    async fn node(&mut self, path: &str) -> Result<Option<Node>, StoreError> {
        if let Some(node) = self.nodes.get(path) {
            return Ok(node.clone());
        }
        let node = self.store.read(self.client, path).await?;
        self.nodes.insert(path.to_owned(), node.clone());
        Ok(node)
    }

    fn check(&mut self, path: &str, node: &Node) {
        self.steps.push(Step::Check { path: path.to_owned(), version: node.stat.version });
    }

    /// The directories above `path`, nearest first, up to the keys root.
    fn ancestors(&self, path: &str) -> Vec<String> {
        let keys = self.store.keys_root();
        let mut ancestors = Vec::new();
        let mut current = path;
        while current != keys
            && let Some((parent, _)) = current.rsplit_once('/')
            && parent.len() >= keys.len()
        {
            ancestors.push(parent.to_owned());
            current = parent;
        }
        ancestors
    }

    /// Steps that fail if `path` comes into being before the commit: create it and the
    /// missing directories above it, then delete them again. Below a key nothing can be
    /// created through this store, so a check of that key is enough.
    async fn guard_absent(&mut self, path: &str) -> Result<(), StoreError> {
        let mut missing = vec![path.to_owned()];
        for ancestor in self.ancestors(path) {
            match self.node(&ancestor).await? {
                None => missing.push(ancestor),
                Some(node) => {
                    if !node.is_dir() {
                        self.check(&ancestor, &node);
                        return Ok(());
                    }
                    break;
                }
            }
        }
        for path in missing.iter().rev() {
            self.steps.push(Step::Create { path: path.clone(), data: Vec::new(), mode: CreateMode::Container });
        }
        for path in missing {
            self.steps.push(Step::Delete { path, version: None });
        }
        Ok(())
    }

    /// Reads a condition; if it holds, adds the checks that keep it true until the commit.
    async fn holds(&mut self, condition: &Condition) -> Result<bool, StoreError> {
        match condition {
            Condition::Absent(key) => {
                let path = self.store.key_path(key)?;
                match self.node(&path).await? {
                    Some(node) if !node.is_dir() => Ok(false),
                    // A directory holds no value; it stays one while its version holds.
                    Some(node) => {
                        self.check(&path, &node);
                        Ok(true)
                    }
                    None => {
                        self.guard_absent(&path).await?;
                        Ok(true)
                    }
                }
            }
            Condition::Exists(key) => {
                let path = self.store.key_path(key)?;
                match self.node(&path).await? {
                    Some(node) if !node.is_dir() => {
                        self.steps.push(Step::Check { path, version: -1 });
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
            Condition::ModRevision(key, revision) => {
                let path = self.store.key_path(key)?;
                match self.node(&path).await? {
                    Some(node) if !node.is_dir() && node.stat.mzxid == *revision => {
                        self.check(&path, &node);
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
            Condition::PrefixEmpty(prefix) => {
                let path = self.directory(prefix)?;
                match self.node(&path).await? {
                    None => {
                        self.guard_absent(&path).await?;
                        Ok(true)
                    }
                    Some(node) => {
                        if node.stat.num_children > 0 {
                            let (entries, _) = self.store.walk(self.client, prefix).await?;
                            if !entries.is_empty() {
                                return Ok(false);
                            }
                        }
                        // Creating a key anywhere below bumps this directory's version.
                        self.check(&path, &node);
                        Ok(true)
                    }
                }
            }
            Condition::PrefixUnchangedSince(prefix, revision) => {
                let (dir, _) = split_prefix(prefix);
                let path = self.store.key_path(dir)?;
                match self.node(&path).await? {
                    None => {
                        self.guard_absent(&path).await?;
                        Ok(true)
                    }
                    Some(node) if node.stat.mzxid > *revision => Ok(false),
                    Some(node) => {
                        self.check(&path, &node);
                        Ok(true)
                    }
                }
            }
        }
    }

    /// The directory of a prefix that ends at a `/` (or is empty): ZooKeeper can tell
    /// what is below a node, not what starts with a string.
    fn directory(&self, prefix: &str) -> Result<String, StoreError> {
        if !prefix.is_empty() && !prefix.ends_with('/') {
            return Err(StoreError::InvalidKey {
                key: prefix.to_owned(),
                reason: "on ZooKeeper a prefix condition needs a prefix that ends with '/'".into(),
            });
        }
        self.store.key_path(prefix.trim_end_matches('/'))
    }

    /// Plans creating `path` (a key, or a sequential candidate) with the directories
    /// missing above it, and the bumps above it. Refuses a path below a key.
    async fn create(&mut self, path: &str, key: &str, data: Vec<u8>, mode: CreateMode) -> Result<(), StoreError> {
        let mut missing = Vec::new();
        for ancestor in self.ancestors(path) {
            match self.node(&ancestor).await? {
                None => missing.push(ancestor.clone()),
                Some(node) if !node.is_dir() => {
                    return Err(StoreError::InvalidKey {
                        key: key.to_owned(),
                        reason: format!(
                            "{} is a key: on ZooKeeper a key has no keys below it",
                            self.store.key_of(&ancestor).unwrap_or(ancestor)
                        ),
                    });
                }
                Some(_) => {}
            }
            self.bumps.insert(ancestor);
        }
        for dir in missing.into_iter().rev() {
            self.steps.push(Step::Create { path: dir.clone(), data: Vec::new(), mode: CreateMode::Container });
            // Later steps of this plan find it there.
            self.nodes.insert(dir, Some(Node { data: Vec::new(), stat: created_stat() }));
        }
        self.steps.push(Step::Create { path: path.to_owned(), data, mode });
        Ok(())
    }

    /// Plans one step of the branch that runs; a read returns the entry it will see.
    async fn op(&mut self, op: &Op) -> Result<Option<Option<Entry>>, StoreError> {
        let key = match op {
            Op::Put { key, .. } | Op::Delete(key) | Op::Get(key) => key,
        };
        let path = self.store.key_path(key)?;
        if self.written.contains(&path) {
            return Err(StoreError::InvalidKey {
                key: key.clone(),
                reason: "a ZooKeeper transaction writes a key once, after any read of it".into(),
            });
        }
        let node = self.node(&path).await?;
        match op {
            Op::Get(_) => {
                match &node {
                    Some(node) => self.check(&path, node),
                    None => self.guard_absent(&path).await?,
                }
                Ok(Some(node.and_then(|node| self.store.entry(&path, &node))))
            }
            Op::Delete(_) => {
                if let Some(node) = node.filter(|n| !n.is_dir()) {
                    self.steps.push(Step::Delete { path: path.clone(), version: Some(node.stat.version) });
                    self.written.insert(path);
                }
                Ok(None)
            }
            Op::Put { value, lease, .. } => {
                if lease.is_none() && value.is_empty() {
                    return Err(StoreError::InvalidKey {
                        key: key.clone(),
                        reason: "on ZooKeeper an empty node without a lease is a directory: store a non-empty value"
                            .into(),
                    });
                }
                let mode = if lease.is_some() { CreateMode::Ephemeral } else { CreateMode::Persistent };
                let owner = lease.unwrap_or(0);
                match node {
                    Some(node) if !node.is_dir() && node.stat.ephemeral_owner == owner => {
                        // The key stays where it is: its directories are known to exist.
                        for ancestor in self.ancestors(&path) {
                            self.bumps.insert(ancestor);
                        }
                        let version = Some(node.stat.version);
                        self.steps.push(Step::SetData { path: path.clone(), data: value.clone(), version });
                    }
                    Some(node) => {
                        // Another lease (or none): ZooKeeper cannot move a node to another
                        // session, so the key is deleted and created again, in one step.
                        if node.is_dir() && node.stat.num_children > 0 {
                            return Err(StoreError::InvalidKey {
                                key: key.clone(),
                                reason: "it is a directory of other keys".into(),
                            });
                        }
                        self.steps.push(Step::Delete { path: path.clone(), version: Some(node.stat.version) });
                        self.create(&path, key, value.clone(), mode).await?;
                    }
                    None => self.create(&path, key, value.clone(), mode).await?,
                }
                self.written.insert(path);
                Ok(None)
            }
        }
    }

    /// Sends the planned steps and the bumps as one `multi`, through the session of
    /// `lease` if it puts keys on one.
    async fn commit(mut self, lease: Option<LeaseId>) -> Result<Committed, StoreError> {
        for dir in std::mem::take(&mut self.bumps) {
            self.steps.push(Step::SetData { path: dir, data: Vec::new(), version: None });
        }
        if self.steps.is_empty() {
            return Ok(Committed::Done(None));
        }
        let acls = self.store.acls();
        let mut writer = self.client.new_multi_writer();
        for step in &self.steps {
            let added = match step {
                Step::Check { path, version } => writer.add_check_version(path, *version),
                Step::Create { path, data, mode } => writer.add_create(path, data, &mode.with_acls(acls)),
                Step::SetData { path, data, version } => writer.add_set_data(path, data, *version),
                Step::Delete { path, version } => writer.add_delete(path, *version),
            };
            added.map_err(|e| self.store.error("transaction", &e))?;
        }
        let committed = tokio::time::timeout(self.store.inner.timeout, writer.commit()).await;
        match committed {
            Err(_) => Err(StoreError::Timeout {
                endpoints: self.store.inner.cluster.clone(),
                operation: "transaction",
                timeout: self.store.inner.timeout,
            }),
            Ok(Ok(results)) => {
                // Every write bumps the keys root with a SetData, whose stat is sound (a
                // create's stat in a multi may not be, ZOOKEEPER-4026).
                let zxid = results
                    .iter()
                    .filter_map(|r| match r {
                        MultiWriteResult::SetData { stat } => Some(stat.mzxid),
                        _ => None,
                    })
                    .max();
                Ok(Committed::Done(zxid))
            }
            Ok(Err(MultiWriteError::OperationFailed { index, source })) => match source {
                zk::Error::BadVersion | zk::Error::NoNode | zk::Error::NodeExists | zk::Error::NotEmpty => {
                    Ok(Committed::Changed)
                }
                zk::Error::NoChildrenForEphemerals => {
                    let path = match &self.steps[index] {
                        Step::Create { path, .. } => path.clone(),
                        other => format!("{other:?}"),
                    };
                    Err(StoreError::InvalidKey {
                        key: self.store.key_of(&path).unwrap_or(path),
                        reason: "the key above it is on a lease: ZooKeeper nodes of a session have no children".into(),
                    })
                }
                other => Err(self.store.error("transaction", &other)),
            },
            Ok(Err(MultiWriteError::RequestFailed { source: zk::Error::SessionExpired }))
                if let Some(lease) = lease =>
            {
                Err(StoreError::LeaseGone { lease })
            }
            Ok(Err(MultiWriteError::RequestFailed { source })) => Err(self.store.error("transaction", &source)),
        }
    }
}

/// The stat of a directory this plan creates, until the commit tells the real one.
fn created_stat() -> zookeeper_client::Stat {
    zookeeper_client::Stat {
        czxid: -1,
        mzxid: -1,
        pzxid: -1,
        ctime: 0,
        mtime: 0,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: 0,
        data_length: 0,
        num_children: 0,
    }
}

impl ZkStore {
    /// The session a transaction writes through: the lease's, when it puts keys on one
    /// (their nodes are that session's ephemeral nodes), else the main one.
    async fn session_for(&self, ops: &[Op]) -> Result<(Client, Option<LeaseId>), StoreError> {
        let mut leases = ops.iter().filter_map(|op| match op {
            Op::Put { lease, .. } => *lease,
            _ => None,
        });
        let Some(lease) = leases.next() else { return Ok((self.client().await?, None)) };
        if leases.any(|other| other != lease) {
            return Err(StoreError::InvalidKey {
                key: String::new(),
                reason: "on ZooKeeper one transaction puts keys on one lease at most".into(),
            });
        }
        Ok((super::lease::session(self, lease).await?, Some(lease)))
    }
}

/// Counts the attempts of one transaction.
#[derive(Default)]
struct Retries {
    attempt: u32,
}

impl Retries {
    /// Commits `plan`: the zxid of its write (`Some(None)`: nothing to write), or `None`
    /// when a check failed and the caller must read again and plan anew.
    async fn commit(&mut self, plan: Plan<'_>, lease: Option<LeaseId>) -> Result<Option<Option<i64>>, StoreError> {
        match plan.commit(lease).await? {
            Committed::Done(zxid) => Ok(Some(zxid)),
            Committed::Changed => {
                self.attempt += 1;
                if self.attempt >= ATTEMPTS {
                    return Err(StoreError::Request {
                        operation: "transaction",
                        message: format!("the nodes it checks kept changing ({ATTEMPTS} attempts)"),
                    });
                }
                // Many writers racing for one node: spread them out a little.
                if self.attempt >= 2 {
                    let pause = rand::random::<u64>() % (u64::from(self.attempt) * 2) + 1;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                Ok(None)
            }
        }
    }
}

impl Transact for ZkStore {
    async fn txn(&self, when: Vec<Condition>, then: Vec<Op>, otherwise: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        if otherwise.iter().any(|op| !matches!(op, Op::Get(_))) {
            return Err(StoreError::InvalidKey {
                key: String::new(),
                reason: "on ZooKeeper the failure branch of a transaction may only read".into(),
            });
        }
        let (client, lease) = self.session_for(&then).await?;
        let paths: Vec<String> = when
            .iter()
            .map(|c| match c {
                Condition::Absent(key) | Condition::Exists(key) | Condition::ModRevision(key, _) => key.as_str(),
                Condition::PrefixEmpty(prefix) | Condition::PrefixUnchangedSince(prefix, _) => split_prefix(prefix).0,
            })
            .chain(then.iter().map(|op| match op {
                Op::Put { key, .. } | Op::Delete(key) | Op::Get(key) => key.as_str(),
            }))
            .map(|key| self.key_path(key))
            .collect::<Result<_, _>>()?;
        let mut retries = Retries::default();
        let committed = 'attempts: loop {
            let mut plan = Plan::new(self, &client);
            let mut wanted = Vec::new();
            for path in &paths {
                wanted.push(path.clone());
                wanted.extend(plan.ancestors(path));
            }
            plan.prefetch(wanted).await?;
            for condition in &when {
                if !plan.holds(condition).await? {
                    break 'attempts None;
                }
            }
            let mut reads = Vec::new();
            for op in &then {
                if let Some(read) = plan.op(op).await? {
                    reads.push(read);
                }
            }
            if let Some(zxid) = retries.commit(plan, lease).await? {
                break Some((reads, zxid));
            }
        };
        match committed {
            Some((reads, zxid)) => {
                let revision = match zxid {
                    Some(zxid) => zxid,
                    None => self.revision_of(&client, &self.keys_root()).await?,
                };
                Ok(TxnOutcome { succeeded: true, reads, revision })
            }
            None => {
                let mut reads = Vec::new();
                for op in &otherwise {
                    if let Op::Get(key) = op {
                        let path = self.key_path(key)?;
                        reads.push(self.read(&client, &path).await?.and_then(|node| self.entry(&path, &node)));
                    }
                }
                let revision = self.revision_of(&client, &self.keys_root()).await?;
                Ok(TxnOutcome { succeeded: false, reads, revision })
            }
        }
    }
}

/// Creates a sequential node under the directory `dir_key`, named `name` and a sequence
/// number: ephemeral on `lease`'s session when there is one.
pub(super) async fn create_sequential(
    store: &ZkStore,
    client: &Client,
    lease: Option<LeaseId>,
    dir_key: &str,
    name: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    let dir = store.key_path(dir_key)?;
    let path = format!("{dir}/{name}");
    let key = format!("{dir_key}/{name}");
    let mode = if lease.is_some() { CreateMode::EphemeralSequential } else { CreateMode::PersistentSequential };
    let mut retries = Retries::default();
    loop {
        let mut plan = Plan::new(store, client);
        let wanted: Vec<String> = std::iter::once(dir.clone()).chain(plan.ancestors(&dir)).collect();
        plan.prefetch(wanted).await?;
        plan.create(&path, &key, value.to_vec(), mode).await?;
        if retries.commit(plan, lease).await?.is_some() {
            return Ok(());
        }
    }
}
