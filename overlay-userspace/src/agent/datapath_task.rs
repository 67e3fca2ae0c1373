//! The agent's datapath task: it watches the cluster state and keeps this host's
//! datapath tables equal to what [`reconcile::desired`] says, applying only changes,
//! keeps the networks of the host's egress rules current (before the datapath lets a
//! network's containers out), and keeps the DNS names of the cluster's containers current.
//! When the store loses its data (`cluster::epoch`) it holds what it knew of the other
//! hosts while they publish theirs again, and puts back the cluster's networks.

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

use crate::{
    agent::reconcile::{self, Change, Tables},
    cluster::{Epoch, epoch, keys as cluster_keys},
    datapath::{Datapath, DatapathError, NetworkSpec},
    dns::NameView,
    egress::Egress,
    metrics::ConvergenceStats,
    network,
    shutdown::Shutdown,
    store::{Store, Transact, WatchUpdate, watch_prefix},
    topology::{NamesTouched, Topology},
};

/// The tables as the datapath holds them (read once at start: a restarted agent adopts
/// the pinned maps and only corrects what changed while it was away).
pub fn read_tables(datapath: &mut Datapath) -> Result<Tables, DatapathError> {
    let mut tables = Tables { networks: read_networks(datapath)?, ..Tables::default() };
    for remote in datapath.remote_endpoints()? {
        tables.remotes.insert((remote.vni, remote.ip), remote);
    }
    tables.members = datapath.members()?.into_iter().collect();
    tables.subnets = datapath.subnets()?.into_iter().map(|s| (s.subnet, s)).collect();
    Ok(tables)
}

fn read_networks(datapath: &mut Datapath) -> Result<std::collections::BTreeMap<u32, NetworkSpec>, DatapathError> {
    Ok(datapath
        .networks()?
        .into_iter()
        .map(|(vni, info)| {
            let gateway = Ipv4Addr::from(overlay_common::ipv4_octets(info.gateway));
            (vni, NetworkSpec { vni, gateway, gateway_mac: info.gateway_mac })
        })
        .collect())
}

fn apply(datapath: &mut Datapath, change: &Change) -> Result<(), DatapathError> {
    match *change {
        Change::AddNetwork(spec) => datapath.add_network(spec),
        Change::RemoveNetwork(vni) => datapath.remove_network(vni),
        Change::AddRemote(spec) => datapath.add_remote_endpoint(spec),
        Change::RemoveRemote { vni, ip } => datapath.remove_remote_endpoint(vni, ip),
        Change::AddMember(vtep) => datapath.add_member(vtep),
        Change::RemoveMember(vtep) => datapath.remove_member(vtep),
        Change::AddSubnet(spec) => datapath.add_subnet(spec),
        Change::RemoveSubnet(subnet) => datapath.remove_subnet(subnet),
    }
}

/// What the datapath task keeps current besides the datapath, and what it asks; each
/// part optional.
#[derive(Default)]
pub struct Wiring {
    /// The names the containers resolve.
    pub names: Option<NameView>,
    /// The host's egress rules; without them no container gets out.
    pub egress: Option<Arc<Egress>>,
    /// The cluster's epoch. With it, a store that lost its data (a listing again, or the
    /// epoch deleted, and [`Epoch::check`] says so) does not take the other hosts'
    /// containers out of this datapath: what this host knew is held for
    /// [`epoch::RESTORE_HOLD`] while they publish theirs again, and only then is what
    /// did not come back removed. Without it every removal is taken as meant.
    pub epoch: Option<Arc<Epoch>>,
}

/// Runs until `shutdown`. The datapath is shared with the container task, which adds
/// and removes local endpoints.
pub async fn run<S: Store + Transact>(
    store: S,
    datapath: Arc<Mutex<Datapath>>,
    me: String,
    stats: Arc<std::sync::Mutex<ConvergenceStats>>,
    wiring: Wiring,
    shutdown: Shutdown,
) -> Result<(), DatapathError> {
    let Wiring { names, egress, epoch } = wiring;
    let mut current = read_tables(&mut *datapath.lock().await)?;
    let mut state = Topology::default();
    let mut updates = watch_prefix(store.clone(), cluster_keys::ROOT.to_owned(), shutdown.clone());
    // What this host knew before the store lost its data, kept until the instant given,
    // and the networks it lost that are still to be put back.
    let mut held: Option<(Topology, tokio::time::Instant)> = None;
    let mut networks_lost: Vec<network::NetworkRecord> = Vec::new();
    let mut restores_acted = match &epoch {
        Some(epoch) => epoch.standing().await.restores,
        None => 0,
    };
    // A reconcile costs time in proportion to the cluster's size: after one, events
    // gather for as long as it took (2 to 50 ms) so a burst costs a few reconciles, not
    // one per event, while a lone change still lands within milliseconds.
    let mut pause = Duration::from_millis(2);
    loop {
        let hold_ends = held.as_ref().map(|(_, until)| *until);
        let first = tokio::select! {
            update = updates.recv() => match update {
                Some(update) => Some(update),
                None => break,
            },
            _ = sleep_until(hold_ends), if hold_ends.is_some() => None,
            _ = tokio::time::sleep(RESTORE_RETRY), if !networks_lost.is_empty() => None,
        };
        // `None`: the hold is over, or networks are to be put back again, with nothing
        // new from the store.
        let mut batch: Vec<WatchUpdate> = first.into_iter().collect();
        if !batch.is_empty() {
            let gather_until = tokio::time::Instant::now() + pause;
            while let Ok(Some(more)) = tokio::time::timeout_at(gather_until, updates.recv()).await {
                batch.push(more);
            }
        }
        let count = batch.len() as u64;
        let mut touched = NamesTouched::default();
        let signal = epoch.is_some() && batch.iter().any(epoch::may_signal_loss);
        let before = signal.then(|| state.clone());
        for update in batch {
            absorb(&mut state, update, &mut touched);
        }
        if let Some(epoch) = &epoch {
            // Asked on a signal; otherwise another task of this agent may have noticed
            // (a watch that resumed on the new store's history hears no deletion).
            let standing = if signal { epoch.check(&store).await } else { Ok(epoch.standing().await) };
            let lost = match standing {
                Ok(standing) => standing.unacted(&mut restores_acted),
                // Unknown: hold, as after a loss; removals only wait.
                Err(error) => {
                    tracing::warn!("cannot tell whether the store lost its data ({error}); holding removals");
                    true
                }
            };
            if lost {
                let before = before.unwrap_or_else(|| state.clone());
                let earlier = match held.take() {
                    Some((older, _)) => before.with_held(&older),
                    None => before,
                };
                networks_lost = earlier.network_records.values().cloned().collect();
                held = Some((earlier, tokio::time::Instant::now() + epoch::RESTORE_HOLD));
                touched.all = true;
            }
        }
        if held.as_ref().is_some_and(|(_, until)| *until <= tokio::time::Instant::now()) {
            held = None;
            touched.all = true;
            tracing::info!("the hold after the store's loss is over: what was not published again goes");
        }
        let merged;
        let view = match &held {
            Some((earlier, _)) => {
                merged = state.with_held(earlier);
                &merged
            }
            None => &state,
        };
        let started = Instant::now();
        if let Some(names) = &names {
            update_names(names, view, touched);
        }
        // The masquerade of a network is in place before the datapath lets its
        // containers out; if the rules cannot be written, nothing gets out.
        let egress_ready = match &egress {
            Some(egress) => match egress.set_networks(reconcile::egress_rules(view)).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!("egress rules not written, containers get no way out: {error}");
                    false
                }
            },
            None => false,
        };
        let mut desired = reconcile::desired(view, &me, egress_ready);
        // The container task adds a container's network itself (so its first packet
        // finds it), before its endpoint comes back through the store: the networks
        // table is read back each time (it is small), and a network with a container
        // here stays even if the store has not said so yet.
        {
            let mut datapath = datapath.lock().await;
            match (read_networks(&mut datapath), datapath.local_vnis()) {
                (Ok(networks), Ok(local)) => {
                    for vni in local {
                        if let Some(spec) = networks.get(&vni) {
                            desired.networks.entry(vni).or_insert(*spec);
                        }
                    }
                    current.networks = networks;
                }
                (Err(error), _) | (_, Err(error)) => tracing::warn!("reading the datapath tables: {error}"),
            }
        }
        let changes = reconcile::changes(&current, &desired);
        let mut errors = 0;
        if !changes.is_empty() {
            let mut datapath = datapath.lock().await;
            for change in &changes {
                if let Err(error) = apply(&mut datapath, change) {
                    errors += 1;
                    tracing::error!("datapath change {change:?} failed: {error}");
                }
            }
            // Errors leave the tables unknown: read them back so the next update retries.
            current = if errors == 0 { desired } else { read_tables(&mut datapath)? };
            tracing::debug!("applied {} datapath changes ({errors} failed)", changes.len());
        }
        pause = started.elapsed().clamp(Duration::from_millis(2), Duration::from_millis(50));
        {
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            s.updates += count;
            s.changes_applied += changes.len() as u64;
            s.change_errors += errors;
            s.last_reconcile_micros = started.elapsed().as_micros() as u64;
            s.remote_endpoints = current.remotes.len();
            s.members = current.members.len();
            s.networks = current.networks.len();
        }
        // Every host puts back every network the store lost (one of them commits each;
        // the others find it there): an empty network has no other owner.
        if !networks_lost.is_empty() {
            networks_lost.retain(|n| !state.network_records.contains_key(&n.id));
            if network::restore_all(&store, &networks_lost).await {
                networks_lost.clear();
            }
        }
    }
    Ok(())
}

/// How soon networks the store did not take back are tried again.
const RESTORE_RETRY: Duration = Duration::from_secs(2);

/// Until `at`; never without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn absorb(state: &mut Topology, update: WatchUpdate, touched: &mut NamesTouched) {
    match update {
        WatchUpdate::Reset(entries) => {
            *state = Topology::from_entries(&entries);
            touched.all = true;
        }
        WatchUpdate::Event(event) => state.apply(&event, touched),
    }
}

/// Brings the DNS view up to date: only the containers a batch touched, unless nodes
/// or networks changed. Rebuilding the whole view on every batch would cost time and,
/// while the old and the new view both exist, twice its memory.
fn update_names(view: &NameView, state: &Topology, touched: NamesTouched) {
    if touched.is_empty() {
        return;
    }
    let skipped = if touched.all {
        let (networks, containers) = state.dns_records();
        view.replace_all(networks, containers)
    } else {
        let records = state.dns_records_of(&touched.containers);
        let gone: Vec<&str> = touched
            .containers
            .iter()
            .filter(|name| !records.iter().any(|r| &r.name == *name))
            .map(String::as_str)
            .collect();
        view.update_containers(records, gone)
    };
    for error in skipped {
        tracing::warn!("a name left out of containers' DNS: {error}");
    }
}
