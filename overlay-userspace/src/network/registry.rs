//! Networks in the store: `overlay network create | ls` and finding a network by name
//! or ID (`inspect` and `rm`, which look at what is attached, are in `attached.rs`).
//!
//! A creation lists everything under `v1/networks/`, decides (name free, subnet free or
//! chosen, VNI), and writes the record, the name, the VNI and the VNI counter in one
//! transaction that holds only if nothing under `v1/networks/` changed since the
//! listing. Two hosts creating the same name at once: one transaction commits, the
//! other fails, looks again and finds the name taken. Overlapping subnets and VNIs are
//! settled the same way.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use super::{
    Addressing, DRIVER, NetworkError, NetworkRecord, NetworkSpec, SubnetPool, Taken, VNI_FIRST, VNI_LAST, host, keys,
    new_id, subnet::first_overlap,
};
use crate::{
    cluster,
    store::{Condition, Entry, Op, Store, Transact, name_under},
};

/// Attempts before a creation or removal gives up under constant concurrent changes.
pub(super) const ATTEMPTS: u32 = 20;

/// Everything under `v1/networks/`, read at one revision.
struct Snapshot {
    records: Vec<(NetworkRecord, i64)>,
    names: BTreeMap<String, String>,
    vnis: BTreeSet<u32>,
    next_vni: u32,
    revision: i64,
}

/// The network ID a name or VNI key holds.
pub(super) fn stored_id(entry: &Entry) -> String {
    String::from_utf8_lossy(&entry.value).trim().to_owned()
}

async fn snapshot<S: Store>(store: &S) -> Result<Snapshot, NetworkError> {
    let listing = store.list(keys::NETWORKS).await?;
    let mut snapshot = Snapshot {
        records: Vec::new(),
        names: BTreeMap::new(),
        vnis: BTreeSet::new(),
        next_vni: VNI_FIRST,
        revision: listing.revision,
    };
    for entry in listing.entries {
        if name_under(&entry.key, keys::IDS).is_some() {
            match serde_json::from_slice::<NetworkRecord>(&entry.value) {
                Ok(record) => {
                    // A record's VNI is taken even if its VNI key was lost.
                    snapshot.vnis.insert(record.vni);
                    snapshot.records.push((record, entry.mod_revision));
                }
                Err(error) => tracing::warn!("skipping malformed network record at {}: {error}", entry.key),
            }
        } else if let Some(name) = name_under(&entry.key, keys::NAMES) {
            snapshot.names.insert(name.to_owned(), stored_id(&entry));
        } else if let Some(vni) = name_under(&entry.key, keys::VNIS) {
            match vni.parse() {
                Ok(vni) => {
                    snapshot.vnis.insert(vni);
                }
                Err(_) => tracing::warn!("skipping malformed VNI key {}", entry.key),
            }
        } else if entry.key == keys::NEXT_VNI {
            snapshot.next_vni = stored_id(&entry).parse().unwrap_or(VNI_FIRST);
        }
    }
    snapshot.records.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(snapshot)
}

/// The first VNI at or after the counter that no network holds, wrapping around.
fn choose_vni(used: &BTreeSet<u32>, next: u32) -> Result<u32, NetworkError> {
    let count = VNI_LAST - VNI_FIRST + 1;
    let start = if (VNI_FIRST..=VNI_LAST).contains(&next) { next } else { VNI_FIRST };
    (0..count)
        .map(|i| VNI_FIRST + (start - VNI_FIRST + i) % count)
        .find(|vni| !used.contains(vni))
        .ok_or(NetworkError::NoVni { count })
}

/// What a new subnet must not overlap: the overlay networks first, then each member
/// host's routes and addresses.
async fn taken<S: Store>(store: &S, records: &[(NetworkRecord, i64)]) -> Result<Vec<Taken>, NetworkError> {
    let mut taken: Vec<Taken> =
        records.iter().map(|(r, _)| Taken::Network { name: r.name.clone(), subnet: r.subnet }).collect();
    for host in host::read_published(store).await? {
        taken.extend(host.taken());
    }
    Ok(taken)
}

/// Creates the network `spec` describes, once in the cluster. Without a subnet in the
/// spec, the first free `/size` of `pool` is taken. Refuses a name in use, a subnet
/// that overlaps another network or a member host's route or address; on a refusal
/// nothing is written.
pub async fn create<S: Transact>(
    store: &S,
    spec: &NetworkSpec,
    pool: &SubnetPool,
) -> Result<NetworkRecord, NetworkError> {
    for attempt in 1..=ATTEMPTS {
        let snapshot = snapshot(store).await?;
        if let Some(id) = snapshot.names.get(&spec.name) {
            return Err(NetworkError::AlreadyExists { name: spec.name.clone(), id: id.clone() });
        }
        let id = spec.id.clone().unwrap_or_else(new_id);
        if snapshot.records.iter().any(|(r, _)| r.id == id) {
            return Err(NetworkError::IdTaken { id });
        }
        let taken = taken(store, &snapshot.records).await?;
        let addressing = match spec.addressing {
            Some(addressing) => {
                if let Some(collision) = first_overlap(addressing.subnet, &taken) {
                    return Err(collision.refusal(addressing.subnet));
                }
                addressing
            }
            None => Addressing::with_default_gateway(pool.choose(&taken)?),
        };
        let vni = choose_vni(&snapshot.vnis, snapshot.next_vni)?;
        let record = NetworkRecord {
            id: id.clone(),
            name: spec.name.clone(),
            driver: DRIVER.to_owned(),
            subnet: addressing.subnet,
            gateway: addressing.gateway,
            ip_range: addressing.ip_range,
            vni,
            internal: spec.internal,
            labels: spec.labels.clone(),
            created_at: cluster::unix_now(),
        };
        let next_vni = if vni == VNI_LAST { VNI_FIRST } else { vni + 1 };
        let when = vec![
            Condition::PrefixUnchangedSince(keys::NETWORKS.to_owned(), snapshot.revision),
            Condition::Absent(keys::name(&spec.name)),
            Condition::Absent(keys::id(&id)),
            Condition::Absent(keys::vni(vni)),
        ];
        let then = vec![
            Op::Put { key: keys::id(&id), value: serde_json::to_vec(&record)?, lease: None },
            Op::Put { key: keys::name(&spec.name), value: id.clone().into_bytes(), lease: None },
            Op::Put { key: keys::vni(vni), value: id.clone().into_bytes(), lease: None },
            Op::Put { key: keys::NEXT_VNI.to_owned(), value: next_vni.to_string().into_bytes(), lease: None },
        ];
        if store.txn(when, then, Vec::new()).await?.succeeded {
            tracing::info!(network = %record.name, id = %record.id, subnet = %record.subnet, vni, "network created");
            return Ok(record);
        }
        // Another network was created or changed meanwhile: look again, after a pause
        // that keeps several creators from colliding in step.
        let pause = rand::random::<u64>() % (5 * u64::from(attempt)) + 1;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Err(NetworkError::Contention { operation: "network create", attempts: ATTEMPTS })
}

/// What [`restore`] did with a network record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// The store had lost it: it is back, with its ID, name, VNI and addressing.
    Written,
    /// The store has it (another host put it back first, or it was never lost).
    Present,
    /// Another network took its name, VNI or subnet while it was missing: it stays out,
    /// and this says which.
    Taken(String),
}

/// Puts back a network the store lost (wiped, or restored from an older state), as it
/// was: same ID, name, VNI, subnet, gateway. Several hosts may restore one network at
/// once: the write holds only if nothing under `v1/networks/` changed since the listing
/// it was decided on (as a creation's), so exactly one commits and the others find it
/// present. The VNI counter is moved past its VNI, so no new network takes it.
pub async fn restore<S: Transact>(store: &S, record: &NetworkRecord) -> Result<Restored, NetworkError> {
    for attempt in 1..=ATTEMPTS {
        let snapshot = snapshot(store).await?;
        if snapshot.records.iter().any(|(r, _)| r.id == record.id) {
            return Ok(Restored::Present);
        }
        if let Some(id) = snapshot.names.get(&record.name) {
            return Ok(Restored::Taken(format!("its name {} is network {id} now", record.name)));
        }
        if snapshot.vnis.contains(&record.vni) {
            return Ok(Restored::Taken(format!("its VNI {} is another network's now", record.vni)));
        }
        let others: Vec<Taken> =
            snapshot.records.iter().map(|(r, _)| Taken::Network { name: r.name.clone(), subnet: r.subnet }).collect();
        if let Some(collision) = first_overlap(record.subnet, &others) {
            return Ok(Restored::Taken(collision.refusal(record.subnet).to_string()));
        }
        let after = if record.vni >= VNI_LAST { VNI_FIRST } else { record.vni + 1 };
        let next_vni = if snapshot.next_vni > record.vni { snapshot.next_vni } else { after };
        let when = vec![
            Condition::PrefixUnchangedSince(keys::NETWORKS.to_owned(), snapshot.revision),
            Condition::Absent(keys::name(&record.name)),
            Condition::Absent(keys::id(&record.id)),
            Condition::Absent(keys::vni(record.vni)),
        ];
        let then = vec![
            Op::Put { key: keys::id(&record.id), value: serde_json::to_vec(record)?, lease: None },
            Op::Put { key: keys::name(&record.name), value: record.id.clone().into_bytes(), lease: None },
            Op::Put { key: keys::vni(record.vni), value: record.id.clone().into_bytes(), lease: None },
            Op::Put { key: keys::NEXT_VNI.to_owned(), value: next_vni.to_string().into_bytes(), lease: None },
        ];
        if store.txn(when, then, Vec::new()).await?.succeeded {
            tracing::info!(network = %record.name, id = %record.id, vni = record.vni, "network restored in the store");
            return Ok(Restored::Written);
        }
        let pause = rand::random::<u64>() % (5 * u64::from(attempt)) + 1;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Err(NetworkError::Contention { operation: "network restore", attempts: ATTEMPTS })
}

/// [`restore`] for each of `records`, saying what happened. Whether each was decided
/// (put back, found present, or found taken by another network); `false`: the store did
/// not answer for some, to be tried again.
pub async fn restore_all<S: Transact>(store: &S, records: &[NetworkRecord]) -> bool {
    let mut decided = true;
    for record in records {
        match restore(store, record).await {
            Ok(Restored::Written | Restored::Present) => {}
            Ok(Restored::Taken(why)) => {
                tracing::error!("network {} was lost by the store and cannot be put back: {why}", record.name)
            }
            Err(error) => {
                tracing::warn!("putting back network {}: {error}", record.name);
                decided = false;
            }
        }
    }
    decided
}

/// Every network, sorted by name (`overlay network ls`).
pub async fn list<S: Store>(store: &S) -> Result<Vec<NetworkRecord>, NetworkError> {
    Ok(snapshot(store).await?.records.into_iter().map(|(r, _)| r).collect())
}

async fn record_at<S: Store>(store: &S, id: &str) -> Result<Option<(NetworkRecord, i64)>, NetworkError> {
    let Some(entry) = store.get(&keys::id(id)).await? else { return Ok(None) };
    match serde_json::from_slice::<NetworkRecord>(&entry.value) {
        Ok(record) => Ok(Some((record, entry.mod_revision))),
        Err(error) => {
            tracing::warn!("skipping malformed network record at {}: {error}", entry.key);
            Ok(None)
        }
    }
}

/// A network by name, full ID or unique ID prefix, with its record's revision.
pub(super) async fn find_entry<S: Store>(store: &S, network: &str) -> Result<(NetworkRecord, i64), NetworkError> {
    let not_found = || NetworkError::NotFound { network: network.to_owned() };
    if network.is_empty() || network.contains('/') {
        return Err(not_found());
    }
    if let Some(entry) = store.get(&keys::name(network)).await?
        && let Some(found) = record_at(store, &stored_id(&entry)).await?
    {
        return Ok(found);
    }
    if let Some(found) = record_at(store, network).await? {
        return Ok(found);
    }
    let listing = store.list(&keys::id(network)).await?;
    let mut matches: Vec<(NetworkRecord, i64)> = listing
        .entries
        .iter()
        .filter_map(|e| Some((serde_json::from_slice::<NetworkRecord>(&e.value).ok()?, e.mod_revision)))
        .collect();
    match matches.len() {
        0 => Err(not_found()),
        1 => Ok(matches.remove(0)),
        _ => Err(NetworkError::Ambiguous {
            network: network.to_owned(),
            candidates: matches
                .iter()
                .map(|(r, _)| format!("{} ({})", r.short_id(), r.name))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A network by name, full ID or unique ID prefix.
pub async fn find<S: Store>(store: &S, network: &str) -> Result<NetworkRecord, NetworkError> {
    Ok(find_entry(store, network).await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnis_follow_the_counter_skip_used_ones_and_wrap() {
        let used = BTreeSet::from([VNI_FIRST, VNI_FIRST + 1, VNI_FIRST + 3]);
        assert_eq!(choose_vni(&used, VNI_FIRST).unwrap(), VNI_FIRST + 2);
        assert_eq!(choose_vni(&used, VNI_FIRST + 3).unwrap(), VNI_FIRST + 4);
        // A removed network's VNI is not handed out again until the counter wraps.
        assert_eq!(choose_vni(&BTreeSet::new(), VNI_FIRST + 10).unwrap(), VNI_FIRST + 10);
        assert_eq!(choose_vni(&BTreeSet::from([VNI_LAST]), VNI_LAST).unwrap(), VNI_FIRST);
        assert_eq!(choose_vni(&BTreeSet::new(), 7).unwrap(), VNI_FIRST);
    }
}
