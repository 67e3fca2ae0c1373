//! One watch of the cluster (`v1/`) and a regular look at dockerd, which feed four
//! jobs: Docker's DNS view (`resolver.rs`), the bindings, which forget the networks
//! dockerd no longer has (`bindings.rs`), the endpoints, which forget those dockerd no
//! longer has (`endpoints.rs`), and the mirror (`mirror.rs`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use super::{
    bindings::{self, MARKERS, Marker},
    endpoints, mirror,
    plugin::Plugin,
    resolver,
};
use crate::{
    cluster::{epoch, keys as cluster_keys},
    dns::NameView,
    store::{Store, Transact, WatchEvent, WatchUpdate, watch_prefix},
    topology::{NamesTouched, Topology},
};

/// How often dockerd is looked at, besides on changes of the cluster.
const RESYNC: Duration = Duration::from_secs(3);
/// dockerd is asked at most this often (other keys of the cluster change more often).
const DOCKERD_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// Runs until shutdown. The first look at dockerd comes as soon as the cluster is
/// listed, so networks dockerd lost while the plugin was stopped are forgotten at
/// start.
pub async fn run<S: Store + Transact>(p: Arc<Plugin<S>>, view: NameView) {
    let mut updates = watch_prefix(p.backend.store.clone(), cluster_keys::ROOT.to_owned(), p.shutdown.clone());
    let mut topology = Topology::default();
    let mut markers: BTreeMap<String, Marker> = BTreeMap::new();
    let mut synced = false;
    let mut resync = tokio::time::interval(RESYNC);
    let mut looked = tokio::time::Instant::now() - RESYNC;
    // Endpoints missing from dockerd's view, and since when (`endpoints::forget_unlisted`).
    let mut unlisted = BTreeMap::new();
    loop {
        let mut tick = false;
        tokio::select! {
            update = updates.recv() => {
                let Some(update) = update else { return };
                let mut signal = epoch::may_signal_loss(&update);
                absorb(&mut topology, &mut markers, update);
                while let Ok(more) = updates.try_recv() {
                    signal |= epoch::may_signal_loss(&more);
                    absorb(&mut topology, &mut markers, more);
                }
                // Heard here first, a loss of the store's data must hold the mirror's
                // removals at once (the agent's other tasks ask the same epoch).
                if signal
                    && let Some(epoch) = &p.backend.epoch
                    && let Err(error) = epoch.check(&p.backend.store).await
                {
                    tracing::warn!("cannot tell whether the store lost its data: {error}");
                }
                synced = true;
            }
            _ = p.bindings_changed.notified() => {}
            _ = resync.tick() => tick = true,
            _ = p.shutdown.wait() => return,
        }
        if !synced {
            continue;
        }
        resolver::update_view(&view, &topology);
        if tick || looked.elapsed() >= DOCKERD_AT_MOST_EVERY {
            look_at_dockerd(&p, &topology, &markers).await;
            endpoints::forget_unlisted(&p, &mut unlisted).await;
            looked = tokio::time::Instant::now();
        }
    }
}

async fn look_at_dockerd<S: Store + Transact>(p: &Plugin<S>, topology: &Topology, markers: &BTreeMap<String, Marker>) {
    let Some(listed) = bindings::follow_dockerd(p).await else { return };
    if p.config.mirror {
        mirror::pass(p, topology, markers, &listed).await;
    }
}

fn absorb(topology: &mut Topology, markers: &mut BTreeMap<String, Marker>, update: WatchUpdate) {
    match update {
        WatchUpdate::Reset(entries) => {
            *topology = Topology::from_entries(&entries);
            markers.clear();
            for entry in &entries {
                put_marker(markers, &entry.key, &entry.value);
            }
        }
        WatchUpdate::Event(event) => {
            match &event {
                WatchEvent::Put(entry) => put_marker(markers, &entry.key, &entry.value),
                WatchEvent::Delete { key, .. } => {
                    if let Some(id) = key.strip_prefix(MARKERS) {
                        markers.remove(id);
                    }
                }
            }
            // Docker's view is rebuilt whole after each batch (see
            // `resolver::update_view`), so what changed is not tracked.
            topology.apply(&event, &mut NamesTouched::default());
        }
    }
}

fn put_marker(markers: &mut BTreeMap<String, Marker>, key: &str, value: &[u8]) {
    if let Some(id) = key.strip_prefix(MARKERS) {
        match serde_json::from_slice::<Marker>(value) {
            Ok(marker) => {
                markers.insert(id.to_owned(), marker);
            }
            Err(error) => tracing::warn!("skipping malformed Docker network marker {key}: {error}"),
        }
    }
}
