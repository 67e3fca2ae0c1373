//! [`Transact`] for etcd: one `Txn` request (compare, success ops, failure ops).

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::{EtcdStore, Repeat};
use crate::store::{
    StoreError,
    txn::{Condition, Op, Transact, TxnOutcome},
};

impl EtcdStore {
    fn compare(&self, condition: Condition) -> Compare {
        match condition {
            Condition::Absent(key) => Compare::version(self.full_key(&key), CompareOp::Equal, 0),
            Condition::Exists(key) => Compare::version(self.full_key(&key), CompareOp::Greater, 0),
            Condition::ModRevision(key, revision) => {
                Compare::mod_revision(self.full_key(&key), CompareOp::Equal, revision)
            }
            // etcd compares every key of a range; an empty range compares as a key with
            // version 0 and mod revision 0, which is what both conditions need.
            Condition::PrefixEmpty(prefix) => {
                Compare::version(self.full_key(&prefix), CompareOp::Equal, 0).with_prefix()
            }
            Condition::PrefixUnchangedSince(prefix, revision) => {
                Compare::mod_revision(self.full_key(&prefix), CompareOp::Less, revision.saturating_add(1)).with_prefix()
            }
        }
    }

    fn op(&self, op: Op) -> TxnOp {
        match op {
            Op::Put { key, value, lease } => {
                TxnOp::put(self.full_key(&key), value, lease.map(|l| PutOptions::new().with_lease(l)))
            }
            Op::Delete(key) => TxnOp::delete(self.full_key(&key), None),
            Op::Get(key) => TxnOp::get(self.full_key(&key), None),
        }
    }
}

impl Transact for EtcdStore {
    async fn txn(&self, when: Vec<Condition>, then: Vec<Op>, otherwise: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let lease = then.iter().chain(&otherwise).find_map(|op| match op {
            Op::Put { lease, .. } => *lease,
            _ => None,
        });
        let compares: Vec<Compare> = when.into_iter().map(|c| self.compare(c)).collect();
        let then: Vec<TxnOp> = then.into_iter().map(|o| self.op(o)).collect();
        let otherwise: Vec<TxnOp> = otherwise.into_iter().map(|o| self.op(o)).collect();
        let txn = Txn::new().when(compares).and_then(then).or_else(otherwise);
        // Not repeated after an interruption: its conditions would see its own writes.
        let response = self
            .call("transaction", Repeat::Unsafe, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(super::lease_gone(lease))?;
        let revision = response.header().map(|h| h.revision()).unwrap_or_default();
        let succeeded = response.succeeded();
        let reads = response
            .op_responses()
            .into_iter()
            .filter_map(|op| match op {
                TxnOpResponse::Get(get) => Some(get.kvs().first().and_then(|kv| self.entry(kv))),
                _ => None,
            })
            .collect();
        Ok(TxnOutcome { succeeded, reads, revision })
    }
}
