//! Multi-key transactions: several conditions checked and several writes made in one
//! atomic step of the store (etcd's `Txn`, ZooKeeper's `multi`). [`Store::put_if`] covers one key; creating
//! a network (its record, its name, its VNI) and allocating an address (the address and
//! the endpoint's claim on it) need several keys to change together or not at all.

use std::future::Future;

use super::{AnyStore, Entry, LeaseId, Store, StoreError};

/// A condition of a transaction. Keys and prefixes are relative to the cluster root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Exists(String),
    /// The key is still at this modification revision.
    ModRevision(String, i64),
    /// No key starts with this prefix.
    PrefixEmpty(String),
    /// No key under this prefix was created or modified after this revision (deletions
    /// are not seen). A listing's revision makes "nothing was added since I looked".
    PrefixUnchangedSince(String, i64),
}

/// A step of a transaction's branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete(String),
    /// Reads the key; its entry is in [`TxnOutcome::reads`].
    Get(String),
}

/// What a transaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every condition held (then the `then` branch ran, else `otherwise`).
    pub succeeded: bool,
    /// One entry per [`Op::Get`] of the branch that ran, in order (`None`: absent).
    pub reads: Vec<Option<Entry>>,
    /// The store revision after the transaction.
    pub revision: i64,
}

/// A store that can run [`Condition`]s and [`Op`]s atomically.
pub trait Transact: Store {
    /// If every condition in `when` holds, runs `then`; otherwise runs `otherwise`. All
    /// in one atomic step, bounded by the store's request timeout.
    fn txn(
        &self,
        when: Vec<Condition>,
        then: Vec<Op>,
        otherwise: Vec<Op>,
    ) -> impl Future<Output = Result<TxnOutcome, StoreError>> + Send;
}

impl Transact for AnyStore {
    async fn txn(&self, when: Vec<Condition>, then: Vec<Op>, otherwise: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        match self {
            AnyStore::Etcd(store) => store.txn(when, then, otherwise).await,
            AnyStore::ZooKeeper(store) => store.txn(when, then, otherwise).await,
        }
    }
}
