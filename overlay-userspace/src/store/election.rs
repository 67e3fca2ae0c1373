//! Leader election on one key, for a store whose conditional create is enough (etcd): the
//! key is created only if absent, on the candidate's lease, and vanishes with it.

use super::{Entry, Expect, LeaseId, PutOutcome, Store, StoreError};

/// [`Store::campaign`] by creating `key` if it is absent.
pub(super) async fn campaign_by_key<S: Store>(
    store: &S,
    key: &str,
    value: Vec<u8>,
    lease: LeaseId,
) -> Result<bool, StoreError> {
    match store.put_if(key, value, Some(lease), Expect::Absent).await? {
        PutOutcome::Written => Ok(true),
        PutOutcome::Conflict(Some(current)) if current.lease == Some(lease) => Ok(true),
        // A leader key without a lease (written by hand) would never expire and would
        // block every election: remove it; the next campaign can win.
        PutOutcome::Conflict(Some(current)) if current.lease.is_none() => {
            tracing::warn!("removing {}: it has no lease, so no candidate holds it", current.key);
            store.delete_if(&current.key, current.mod_revision).await?;
            Ok(false)
        }
        PutOutcome::Conflict(_) => Ok(false),
    }
}

/// [`Store::leader`] of an election held by [`campaign_by_key`].
pub(super) async fn leader_by_key<S: Store>(store: &S, key: &str) -> Result<Option<Entry>, StoreError> {
    store.get(key).await
}
