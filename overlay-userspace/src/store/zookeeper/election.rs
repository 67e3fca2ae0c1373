//! The election of [`crate::store::Store::campaign`], ZooKeeper's way: each candidate
//! has an ephemeral sequential node `ELECTION/candidate-NNNNNNNNNN` of its lease's
//! session, holding its value; the lowest sequence number leads. When the leader's
//! session ends, its node goes and the next candidate leads.

use zookeeper_client::Client;

use super::{ZkStore, present, txn::create_sequential};
use crate::store::{Entry, LeaseId, StoreError};

const CANDIDATE: &str = "candidate-";

/// The candidates, lowest sequence number first.
async fn candidates(store: &ZkStore, client: &Client, election: &str) -> Result<Vec<Entry>, StoreError> {
    let dir = store.key_path(election)?;
    let children = async { present(client.get_children(&dir).await) };
    let Some((mut names, _)) = store.request("list candidates", children).await? else { return Ok(Vec::new()) };
    names.retain(|name| name.strip_prefix(CANDIDATE).is_some_and(|n| n.parse::<u64>().is_ok()));
    names.sort_by_key(|name| name[CANDIDATE.len()..].parse::<u64>().unwrap_or(u64::MAX));
    let mut candidates = Vec::new();
    for name in names {
        let path = format!("{dir}/{name}");
        if let Some(entry) = store.read(client, &path).await?.and_then(|node| store.entry(&path, &node)) {
            candidates.push(entry);
        }
    }
    Ok(candidates)
}

pub(super) async fn campaign(
    store: &ZkStore,
    election: &str,
    value: Vec<u8>,
    lease: LeaseId,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let mut standing = candidates(store, &client, election).await?;
    if !standing.iter().any(|c| c.lease == Some(lease)) {
        let session = super::lease::session(store, lease).await?;
        create_sequential(store, &session, Some(lease), election, CANDIDATE, &value).await?;
        standing = candidates(store, &client, election).await?;
    }
    Ok(standing.first().is_some_and(|leader| leader.lease == Some(lease)))
}

/// The leading candidate, under the election's key.
pub(super) async fn leader(store: &ZkStore, election: &str) -> Result<Option<Entry>, StoreError> {
    let client = store.client().await?;
    let leader = candidates(store, &client, election).await?.into_iter().next();
    Ok(leader.map(|entry| Entry { key: election.to_owned(), ..entry }))
}
