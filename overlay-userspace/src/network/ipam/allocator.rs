//! The allocator: one transaction per address in the common case.
//!
//! An allocation writes two keys in one transaction — the address
//! (`v1/ipam/NET/addresses/IP`, holding the [`Allocation`]) and the endpoint's claim
//! (`v1/ipam/NET/endpoints/EP`, holding the address) — only if the network still exists,
//! the address is free and the endpoint has none. Both keys are on the node's lease.
//! Whatever the concurrency, two endpoints never hold one address: the store commits
//! exactly one of two transactions that create the same key.
//!
//! Candidates are picked next-fit from a random start per allocator, so that clients on
//! different hosts work in different parts of the pool instead of all racing for the
//! lowest free address. After a few conflicts in a row the allocator lists the
//! network's allocations once and picks from what is free.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    sync::{Arc, Mutex},
};

use super::{AddressRange, Allocation, IpamError, allocations, keys};
use crate::{
    cluster,
    network::{self, NetworkRecord},
    store::{Condition, Entry, LeaseId, Op, StoreError, Transact},
};

/// Conflicts in a row after which the allocator lists the network's allocations.
const LIST_AFTER_CONFLICTS: u32 = 8;
/// Transactions one call may try before giving up (each failed one means another
/// endpoint got an address, so this is only reached under a storm).
const MAX_ATTEMPTS: u32 = 512;

/// What to release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    Address(Ipv4Addr),
    Endpoint(String),
}

/// The cluster-wide address allocator, shared by `overlay run` and the Docker IPAM
/// plugin. Cloning is cheap and shares the caches.
#[derive(Clone)]
pub struct Ipam<S> {
    store: S,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Networks by the name or ID callers used; refreshed when a transaction finds the
    /// network gone.
    networks: HashMap<String, Arc<NetworkRecord>>,
    /// Next-fit position per network ID.
    cursors: HashMap<String, u32>,
}

/// What one claim transaction found.
enum Claim {
    Done,
    NetworkGone,
    /// The endpoint already holds an address in this network.
    EndpointHas(Entry),
    /// The address is taken (by this entry, unless it was released in between).
    AddressTaken(Option<Entry>),
}

/// Endpoint and node IDs become parts of keys: no '/', nothing odd.
fn check_name(what: &'static str, value: &str) -> Result<(), IpamError> {
    let ok = (1..=128).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok { Ok(()) } else { Err(IpamError::InvalidName { what, value: value.to_owned() }) }
}

fn lease_error(error: StoreError) -> IpamError {
    match error {
        StoreError::LeaseGone { lease } => IpamError::LeaseGone { lease },
        other => IpamError::Store(other),
    }
}

fn address_of(entry: &Entry) -> Option<Ipv4Addr> {
    String::from_utf8_lossy(&entry.value).trim().parse().ok()
}

impl<S: Transact> Ipam<S> {
    pub fn new(store: S) -> Self {
        Ipam { store, state: Arc::new(Mutex::new(State::default())) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the caches inconsistent: they only hold copies.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The network `network` names (name, ID or unique ID prefix), from the cache
    /// unless `refresh`.
    pub async fn network(&self, network: &str, refresh: bool) -> Result<Arc<NetworkRecord>, IpamError> {
        if !refresh && let Some(record) = self.state().networks.get(network) {
            return Ok(record.clone());
        }
        let record = Arc::new(network::find(&self.store, network).await?);
        let mut state = self.state();
        state.networks.insert(network.to_owned(), record.clone());
        Ok(record)
    }

    /// The record of network ID `id` as this allocator last read it, without asking the
    /// store: what a host puts back when the store lost the network
    /// ([`network::restore`]).
    pub fn known_network(&self, id: &str) -> Option<Arc<NetworkRecord>> {
        let state = self.state();
        state.networks.get(id).filter(|r| r.id == id).or_else(|| state.networks.values().find(|r| r.id == id)).cloned()
    }

    /// Gives `endpoint` (on node `node`, whose lease is `lease`) an address in
    /// `network`: `requested` if it is free, else an error; without `requested`, a free
    /// address of the network's IP range (or subnet). The network, broadcast and gateway
    /// addresses are never given. If the endpoint already has an address in the network
    /// it gets that one again (moved to `lease` if needed). The address is released by
    /// [`Ipam::release`], or when the lease expires.
    pub async fn allocate(
        &self,
        network: &str,
        endpoint: &str,
        node: &str,
        lease: LeaseId,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        check_name("endpoint ID", endpoint)?;
        check_name("node ID", node)?;
        // A cached record may be of a network removed since (and perhaps created again
        // under the same name): then look it up once more.
        for refresh in [false, true] {
            let record = self.network(network, refresh).await?;
            if let Some(address) = self.allocate_in(&record, endpoint, node, lease, requested).await? {
                return Ok(address);
            }
        }
        Err(network::NetworkError::NotFound { network: network.to_owned() }.into())
    }

    /// `None`: the network is gone.
    async fn allocate_in(
        &self,
        record: &NetworkRecord,
        endpoint: &str,
        node: &str,
        lease: LeaseId,
        requested: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv4Addr>, IpamError> {
        let range = AddressRange::of(record);
        if let Some(address) = requested {
            range.check_static(address)?;
        }
        let mut taken: HashSet<Ipv4Addr> = HashSet::new();
        let mut listed = false;
        let mut conflicts = 0;
        for _ in 0..MAX_ATTEMPTS {
            let candidate = match requested {
                Some(address) => address,
                None => match self.pick(record, &range, &taken) {
                    Some(address) => address,
                    None if listed => {
                        return Err(IpamError::Exhausted {
                            network: record.name.clone(),
                            range: range.pool(),
                            count: range.usable(),
                        });
                    }
                    None => {
                        taken = self.taken(record).await?;
                        listed = true;
                        continue;
                    }
                },
            };
            match self.claim(record, candidate, endpoint, node, lease).await? {
                Claim::Done => return Ok(Some(candidate)),
                Claim::NetworkGone => return Ok(None),
                Claim::EndpointHas(entry) => {
                    let Some(held) = address_of(&entry) else {
                        tracing::warn!("malformed endpoint claim at {}; replacing it", entry.key);
                        self.store.delete_if(&entry.key, entry.mod_revision).await?;
                        continue;
                    };
                    if requested.is_some_and(|r| r != held) {
                        return Err(IpamError::EndpointHasAddress {
                            endpoint: endpoint.to_owned(),
                            network: record.name.clone(),
                            address: held,
                        });
                    }
                    if entry.lease == Some(lease) || self.move_to_lease(record, &entry, held, node, lease).await? {
                        return Ok(Some(held));
                    }
                }
                Claim::AddressTaken(holder) => {
                    if let Some(address) = requested {
                        let Some(holder) = holder else { continue };
                        let allocation: Option<Allocation> = serde_json::from_slice(&holder.value).ok();
                        return Err(IpamError::AddressInUse {
                            address,
                            network: record.name.clone(),
                            endpoint: allocation.as_ref().map_or_else(|| "?".into(), |a| a.endpoint.clone()),
                            node: allocation.map_or_else(|| "?".into(), |a| a.node),
                        });
                    }
                    taken.insert(candidate);
                    conflicts += 1;
                    if conflicts >= LIST_AFTER_CONFLICTS {
                        taken = self.taken(record).await?;
                        listed = true;
                        conflicts = 0;
                    }
                }
            }
        }
        Err(IpamError::Contention { network: record.name.clone(), attempts: MAX_ATTEMPTS })
    }

    /// The next candidate after this allocator's cursor, which moves past it at once so
    /// that concurrent calls of one allocator try different addresses.
    fn pick(&self, record: &NetworkRecord, range: &AddressRange, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let mut state = self.state();
        let cursor = state.cursors.entry(record.id.clone()).or_insert_with(|| rand::random::<u32>() % range.len());
        let address = range.next_free(*cursor, taken)?;
        *cursor = range.index_of(address).map_or(0, |i| i.wrapping_add(1) % range.len());
        Some(address)
    }

    async fn taken(&self, record: &NetworkRecord) -> Result<HashSet<Ipv4Addr>, IpamError> {
        Ok(allocations(&self.store, &record.id).await?.into_iter().map(|a| a.address).collect())
    }

    async fn claim(
        &self,
        record: &NetworkRecord,
        address: Ipv4Addr,
        endpoint: &str,
        node: &str,
        lease: LeaseId,
    ) -> Result<Claim, IpamError> {
        let allocation = Allocation {
            network_id: record.id.clone(),
            address,
            endpoint: endpoint.to_owned(),
            node: node.to_owned(),
            allocated_at: cluster::unix_now(),
        };
        let network_key = network::keys::id(&record.id);
        let address_key = keys::address(&record.id, address);
        let endpoint_key = keys::endpoint(&record.id, endpoint);
        let when = vec![
            Condition::Exists(network_key.clone()),
            Condition::Absent(address_key.clone()),
            Condition::Absent(endpoint_key.clone()),
        ];
        let then = vec![
            Op::Put { key: address_key.clone(), value: serde_json::to_vec(&allocation)?, lease: Some(lease) },
            Op::Put { key: endpoint_key.clone(), value: address.to_string().into_bytes(), lease: Some(lease) },
        ];
        let otherwise = vec![Op::Get(network_key), Op::Get(endpoint_key), Op::Get(address_key)];
        let outcome = self.store.txn(when, then, otherwise).await.map_err(lease_error)?;
        if outcome.succeeded {
            return Ok(Claim::Done);
        }
        let mut reads = outcome.reads.into_iter();
        let (network, endpoint, holder) = (reads.next().flatten(), reads.next().flatten(), reads.next().flatten());
        Ok(match (network, endpoint) {
            (None, _) => Claim::NetworkGone,
            (Some(_), Some(endpoint)) => Claim::EndpointHas(endpoint),
            (Some(_), None) => Claim::AddressTaken(holder),
        })
    }

    /// Moves an endpoint's allocation to `lease` (the node registered again under a new
    /// lease). `false` if it changed meanwhile.
    async fn move_to_lease(
        &self,
        record: &NetworkRecord,
        endpoint: &Entry,
        address: Ipv4Addr,
        node: &str,
        lease: LeaseId,
    ) -> Result<bool, IpamError> {
        let address_key = keys::address(&record.id, address);
        let Some(current) = self.store.get(&address_key).await? else { return Ok(false) };
        let mut allocation: Allocation = match serde_json::from_slice(&current.value) {
            Ok(allocation) => allocation,
            Err(_) => return Ok(false),
        };
        allocation.node = node.to_owned();
        let when = vec![
            Condition::ModRevision(endpoint.key.clone(), endpoint.mod_revision),
            Condition::ModRevision(address_key.clone(), current.mod_revision),
        ];
        let then = vec![
            Op::Put { key: address_key, value: serde_json::to_vec(&allocation)?, lease: Some(lease) },
            Op::Put { key: endpoint.key.clone(), value: endpoint.value.clone(), lease: Some(lease) },
        ];
        Ok(self.store.txn(when, then, Vec::new()).await.map_err(lease_error)?.succeeded)
    }

    /// Releases an address, or the address of an endpoint, in `network`. Returns what was
    /// released; `None` if nothing was allocated (releasing twice is not an error).
    pub async fn release(&self, network: &str, what: &Release) -> Result<Option<Allocation>, IpamError> {
        let record = self.network(network, false).await?;
        let released = self.release_in(&record, what).await?;
        // Nothing found in a cached network that is gone: the name may now be another
        // network's, so look it up again.
        if released.is_none() && self.store.get(&network::keys::id(&record.id)).await?.is_none() {
            let record = self.network(network, true).await?;
            return self.release_in(&record, what).await;
        }
        Ok(released)
    }

    async fn release_in(&self, record: &NetworkRecord, what: &Release) -> Result<Option<Allocation>, IpamError> {
        for _ in 0..MAX_ATTEMPTS {
            // Both keys of an allocation are always written together, so the revision of
            // one of them pins the other.
            let (pinned, other) = match what {
                Release::Address(address) => {
                    let key = keys::address(&record.id, *address);
                    let Some(entry) = self.store.get(&key).await? else { return Ok(None) };
                    let endpoint = serde_json::from_slice::<Allocation>(&entry.value).ok().map(|a| a.endpoint);
                    (entry, endpoint.map(|e| keys::endpoint(&record.id, &e)))
                }
                Release::Endpoint(endpoint) => {
                    check_name("endpoint ID", endpoint)?;
                    let key = keys::endpoint(&record.id, endpoint);
                    let Some(entry) = self.store.get(&key).await? else { return Ok(None) };
                    let address = address_of(&entry).map(|a| keys::address(&record.id, a));
                    (entry, address)
                }
            };
            let mut then = Vec::new();
            let address_key = match what {
                Release::Address(_) => Some(pinned.key.clone()),
                Release::Endpoint(_) => other.clone(),
            };
            if let Some(key) = &address_key {
                then.push(Op::Get(key.clone()));
            }
            then.push(Op::Delete(pinned.key.clone()));
            if let Some(key) = other {
                then.push(Op::Delete(key));
            }
            let outcome = self
                .store
                .txn(vec![Condition::ModRevision(pinned.key.clone(), pinned.mod_revision)], then, Vec::new())
                .await?;
            if outcome.succeeded {
                let released = outcome.reads.into_iter().flatten().next();
                return Ok(released.and_then(|entry| serde_json::from_slice(&entry.value).ok()));
            }
        }
        Err(IpamError::Contention { network: record.name.clone(), attempts: MAX_ATTEMPTS })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_become_keys_are_checked() {
        for good in ["busybox01", "0123abcd", "docker:ep-1.a_b"] {
            assert!(check_name("endpoint ID", good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "a b", "é", &"x".repeat(129)] {
            let message = check_name("endpoint ID", bad).unwrap_err().to_string();
            assert!(message.contains("endpoint ID"), "{message}");
        }
    }

    #[test]
    fn a_missing_lease_is_named() {
        let error = lease_error(StoreError::LeaseGone { lease: 0x1f });
        assert!(matches!(error, IpamError::LeaseGone { lease: 0x1f }), "{error}");
        assert!(error.to_string().contains("register again"));
    }
}
