//! The store layer's contract, written once and run against a real etcd and a real
//! ZooKeeper (`etcd::NAME` and `zookeeper::NAME`): conditional writes and their
//! conflicts, clusters kept apart by their prefixes, multi-key transactions, leases
//! that expire when their owner dies, watches that resume after the store restarts,
//! and the election.

use std::{
    collections::BTreeMap,
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use overlay::{
    shutdown::Shutdown,
    store::{
        self, AnyStore, Condition, Entry, Expect, Op, PutOutcome, Store, Transact, WatchEvent, WatchMessage,
        WatchStart, WatchUpdate,
    },
};
use overlay_tests::{
    Lab, for_each_store,
    ipam::on_host,
    stores::{Backend, StoreServer},
};

for_each_store!(
    conditional_writes_and_prefixes,
    transactions,
    leases_expire_when_their_owner_dies,
    watches_resume_after_the_store_restarts,
    one_leader_at_a_time,
);

/// A store server on store01 and a client host agt01, for `body`; the server's logs
/// when it fails.
fn with_store(
    backend: Backend,
    tag: &str,
    body: impl FnOnce(&Lab, &mut StoreServer) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let lab = Lab::builder(tag).host("store01", "192.168.1.140/24").host("agt01", "192.168.1.141/24").build()?;
    let mut server = StoreServer::start(backend, lab.host("store01"))?;
    let result = body(&lab, &mut server);
    if result.is_err() {
        eprintln!("{}", server.logs());
    }
    result
}

async fn next<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?.context("the watch ended")
}

fn conditional_writes_and_prefixes(backend: Backend) -> anyhow::Result<()> {
    with_store(backend, "sccas", |lab, server| {
        let beta_url = server.url("beta");
        on_host(lab.host("agt01"), &server.url("alpha"), |alpha| async move {
            let beta = store::connect(
                &store::StoreConfig::new(&beta_url, &Default::default(), None, None)?,
                Some(Duration::from_secs(5)),
                &Shutdown::never(),
            )
            .await?;
            // Create only if absent: the second create conflicts and sees the first.
            ensure!(alpha.put_if("k/one", b"1".to_vec(), None, Expect::Absent).await? == PutOutcome::Written);
            let PutOutcome::Conflict(Some(current)) =
                alpha.put_if("k/one", b"2".to_vec(), None, Expect::Absent).await?
            else {
                bail!("a second create of k/one did not conflict");
            };
            ensure!(current.value == b"1" && current.key == "k/one", "{current:?}");
            // Compare and set on the revision: a stale one conflicts, the current one wins.
            let stale = Expect::ModRevision(current.mod_revision - 1);
            ensure!(matches!(alpha.put_if("k/one", b"3".to_vec(), None, stale).await?, PutOutcome::Conflict(_)));
            let fresh = Expect::ModRevision(current.mod_revision);
            ensure!(alpha.put_if("k/one", b"4".to_vec(), None, fresh).await? == PutOutcome::Written);
            let now = alpha.get("k/one").await?.context("k/one vanished")?;
            ensure!(now.value == b"4" && now.mod_revision > current.mod_revision, "{now:?}");
            // The revision that won once is stale now.
            ensure!(matches!(alpha.put_if("k/one", b"5".to_vec(), None, fresh).await?, PutOutcome::Conflict(_)));
            ensure!(!alpha.delete_if("k/one", current.mod_revision).await?, "deleted at a stale revision");
            ensure!(alpha.delete_if("k/one", now.mod_revision).await?, "not deleted at its revision");
            ensure!(alpha.get("k/one").await?.is_none());
            ensure!(!alpha.delete("k/one").await?, "deleting a missing key said it existed");
            // Deleted and created again: the old revision does not match the new key.
            alpha.put("k/two", b"a".to_vec(), None).await?;
            let first = alpha.get("k/two").await?.context("k/two")?;
            ensure!(alpha.delete("k/two").await?);
            alpha.put("k/two", b"a".to_vec(), None).await?;
            ensure!(!alpha.delete_if("k/two", first.mod_revision).await?, "a recreated key matched its old revision");

            // Prefixes: the same key in two clusters are two keys; listings are sorted
            // and a prefix may end inside a name.
            alpha.put("k/shared", b"alpha".to_vec(), None).await?;
            beta.put("k/shared", b"beta".to_vec(), None).await?;
            ensure!(alpha.get("k/shared").await?.map(|e| e.value) == Some(b"alpha".to_vec()));
            let beta_keys: Vec<String> = beta.list("").await?.entries.into_iter().map(|e| e.key).collect();
            ensure!(beta_keys == ["k/shared"], "beta lists {beta_keys:?}");
            for key in ["n/ab1", "n/ab2/deep", "n/ac", "n/b"] {
                alpha.put(key, b"v".to_vec(), None).await?;
            }
            let keys: Vec<String> = alpha.list("n/ab").await?.entries.into_iter().map(|e| e.key).collect();
            ensure!(keys == ["n/ab1", "n/ab2/deep"], "n/ab lists {keys:?}");
            let keys: Vec<String> = alpha.list("n/").await?.entries.into_iter().map(|e| e.key).collect();
            ensure!(keys == ["n/ab1", "n/ab2/deep", "n/ac", "n/b"], "n/ lists {keys:?}");
            Ok(())
        })
    })
}

fn put(key: &str, value: &str) -> Op {
    Op::Put { key: key.to_owned(), value: value.as_bytes().to_vec(), lease: None }
}

async fn holds(store: &AnyStore, condition: Condition) -> anyhow::Result<bool> {
    Ok(store.txn(vec![condition], Vec::new(), Vec::new()).await?.succeeded)
}

fn transactions(backend: Backend) -> anyhow::Result<()> {
    with_store(backend, "sctxn", |lab, server| {
        on_host(lab.host("agt01"), &server.url("txn"), |store| async move {
            // All or nothing: a failed condition writes none of the puts.
            let outcome = store
                .txn(
                    vec![Condition::Absent("d/a".into()), Condition::Exists("d/missing".into())],
                    vec![put("d/a", "1"), put("d/b", "2")],
                    vec![Op::Get("d/a".into()), Op::Get("d/missing".into())],
                )
                .await?;
            ensure!(!outcome.succeeded && outcome.reads == vec![None, None], "{outcome:?}");
            ensure!(store.list("d/").await?.entries.is_empty(), "a failed transaction wrote");
            ensure!(holds(&store, Condition::PrefixEmpty("d/".into())).await?);

            let outcome = store
                .txn(vec![Condition::Absent("d/a".into())], vec![put("d/a", "1"), put("d/b", "2")], Vec::new())
                .await?;
            ensure!(outcome.succeeded, "{outcome:?}");
            let listing = store.list("d/").await?;
            ensure!(listing.entries.len() == 2 && listing.revision == outcome.revision, "{listing:?} {outcome:?}");
            let a = store.get("d/a").await?.expect("written");

            ensure!(holds(&store, Condition::Exists("d/a".into())).await?);
            ensure!(!holds(&store, Condition::Absent("d/a".into())).await?);
            ensure!(holds(&store, Condition::ModRevision("d/a".into(), a.mod_revision)).await?);
            ensure!(!holds(&store, Condition::ModRevision("d/a".into(), a.mod_revision - 1)).await?);
            ensure!(!holds(&store, Condition::PrefixEmpty("d/".into())).await?);
            ensure!(holds(&store, Condition::PrefixEmpty("d/a/".into())).await?);
            ensure!(holds(&store, Condition::PrefixEmpty("e/".into())).await?);
            // "Nothing under d/ changed since the listing": true until a key is added or changed.
            let since = Condition::PrefixUnchangedSince("d/".into(), listing.revision);
            ensure!(holds(&store, since.clone()).await?);
            store.put("other", b"x".to_vec(), None).await?;
            ensure!(holds(&store, since.clone()).await?, "a key outside the prefix counted");
            store.put("d/c", b"3".to_vec(), None).await?;
            ensure!(!holds(&store, since.clone()).await?, "an added key went unnoticed");
            let later = store.list("d/").await?.revision;
            store.put("d/deeper/x", b"changed".to_vec(), None).await?;
            ensure!(
                !holds(&store, Condition::PrefixUnchangedSince("d/".into(), later)).await?,
                "a key added deeper went unnoticed"
            );
            let later = store.list("d/").await?.revision;
            store.put("d/a", b"changed".to_vec(), None).await?;
            ensure!(
                !holds(&store, Condition::PrefixUnchangedSince("d/".into(), later)).await?,
                "a change went unnoticed"
            );

            // Deletes, reads in the success branch, and puts on a lease that expires.
            let lease = store.grant_lease(Duration::from_secs(2)).await?;
            let outcome = store
                .txn(
                    vec![Condition::Exists("d/b".into())],
                    vec![
                        Op::Get("d/b".into()),
                        Op::Delete("d/b".into()),
                        Op::Put { key: "d/leased".into(), value: b"l".to_vec(), lease: Some(lease) },
                    ],
                    Vec::new(),
                )
                .await?;
            ensure!(outcome.succeeded && outcome.reads.len() == 1, "{outcome:?}");
            ensure!(outcome.reads[0].as_ref().map(|e| e.value.as_slice()) == Some(b"2".as_slice()), "{outcome:?}");
            ensure!(store.get("d/b").await?.is_none(), "d/b was not deleted");
            ensure!(store.get("d/leased").await?.and_then(|e| e.lease) == Some(lease), "d/leased is not on the lease");
            // A key moves between a lease and none.
            store.put("d/leased", b"m".to_vec(), None).await?;
            ensure!(store.get("d/leased").await?.map(|e| e.lease) == Some(None), "d/leased is still on the lease");
            store.put("d/leased", b"l".to_vec(), Some(lease)).await?;
            store.revoke_lease(lease).await?;
            ensure!(store.get("d/leased").await?.is_none(), "d/leased outlived its lease");
            // A write on a lease that is gone says so.
            let error =
                store.put("d/late", b"x".to_vec(), Some(lease)).await.err().context("a put on a revoked lease")?;
            ensure!(matches!(error, store::StoreError::LeaseGone { .. }), "{error}");
            Ok(())
        })
    })
}

/// An owner that grants a lease, attaches a key and stops: killed (its runtime and
/// connections gone without a revoke) or alive but no longer refreshing.
fn leases_expire_when_their_owner_dies(backend: Backend) -> anyhow::Result<()> {
    with_store(backend, "sclease", |lab, server| {
        let (agt01, url) = (lab.host("agt01"), server.url("leases"));
        const TTL: Duration = Duration::from_secs(2);
        // The owner's process dies: here, its own runtime and store, dropped.
        let dead = on_host(agt01, &url, |owner| async move {
            let lease = owner.grant_lease(TTL).await?;
            owner.put("l/dead", b"x".to_vec(), Some(lease)).await?;
            Ok(lease)
        })?;
        on_host(agt01, &url, |store| async move {
            let entry = store.get("l/dead").await?.context("the key went with its owner at once")?;
            ensure!(entry.lease == Some(dead), "{entry:?}");
            let status = store.lease_status(dead).await?.context("a live lease has no status")?;
            ensure!(status.granted_ttl == 2 && status.remaining_ttl <= 2, "{status:?}");

            // A live owner keeps a lease past its TTL; one that stops refreshing loses it.
            let kept = store.grant_lease(TTL).await?;
            store.put("l/kept", b"x".to_vec(), Some(kept)).await?;
            let forgotten = store.grant_lease(TTL).await?;
            store.put("l/forgotten", b"x".to_vec(), Some(forgotten)).await?;
            let started = Instant::now();
            let mut gone = BTreeMap::new();
            while started.elapsed() < 3 * TTL + Duration::from_secs(4) {
                ensure!(store.keep_alive(kept).await?, "a live lease could not be refreshed");
                for key in ["l/dead", "l/forgotten"] {
                    if !gone.contains_key(key) && store.get(key).await?.is_none() {
                        gone.insert(key, started.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            ensure!(store.get("l/kept").await?.is_some(), "a refreshed lease expired");
            let status = store.lease_status(kept).await?.context("the kept lease has no status")?;
            ensure!(status.granted_ttl - status.remaining_ttl <= 1, "just refreshed, yet {status:?}");
            for key in ["l/dead", "l/forgotten"] {
                let after = gone.get(key).with_context(|| format!("{key} outlived its lease by far"))?;
                eprintln!("{key} expired {after:.1?} into the check");
            }
            ensure!(store.lease_status(dead).await?.is_none(), "the dead owner's lease has a status");
            ensure!(!store.keep_alive(forgotten).await?, "an expired lease was refreshed");
            store.revoke_lease(kept).await?;
            ensure!(store.get("l/kept").await?.is_none(), "a revoked lease left its key");
            ensure!(!store.keep_alive(kept).await?, "a revoked lease was refreshed");
            // Revoking twice is harmless.
            store.revoke_lease(kept).await?;
            Ok(())
        })
    })
}

/// A client keeps a watch of `w/` through a store restart and reports what it knows
/// after each update; the keys changed after the restart arrive without any action.
fn watches_resume_after_the_store_restarts(backend: Backend) -> anyhow::Result<()> {
    with_store(backend, "scwatch", |lab, server| {
        let (agt01, url) = (lab.host("agt01"), server.url("watch"));
        on_host(agt01, &url, |store| async move {
            store.put("w/a", b"1".to_vec(), None).await?;
            store.put("x/outside", b"1".to_vec(), None).await?;
            // A raw watch from a listing starts with it, then sees what comes after.
            let mut raw = store.watch("w/", WatchStart::Listing).await?;
            match next(&mut raw).await? {
                Ok(WatchMessage::Listing(listing)) => {
                    let keys: Vec<&str> = listing.entries.iter().map(|e| e.key.as_str()).collect();
                    ensure!(keys == ["w/a"], "{keys:?}");
                }
                other => bail!("a watch from a listing began with {other:?}"),
            }
            store.put("w/a", b"2".to_vec(), None).await?;
            match next(&mut raw).await? {
                Ok(WatchMessage::Events(events)) if matches!(&events[..], [WatchEvent::Put(Entry { key, value, .. })] if key == "w/a" && value == b"2") =>
                    {}
                other => bail!("after a put the watch got {other:?}"),
            }
            Ok(())
        })?;
        let (known_tx, known_rx) = std_mpsc::channel::<Vec<String>>();
        let (trigger, shutdown) = overlay::shutdown::channel();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let watch_url = url.clone();
            let client = scope.spawn(move || {
                on_host(agt01, &watch_url, |store| async move {
                    let mut updates = store::watch_prefix(store, "w/".into(), shutdown.clone());
                    let mut known: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                    while let Some(update) = tokio::select! { u = updates.recv() => u, _ = shutdown.wait() => None } {
                        match update {
                            WatchUpdate::Reset(entries) => {
                                known = entries.into_iter().map(|e| (e.key, e.value)).collect()
                            }
                            WatchUpdate::Event(WatchEvent::Put(e)) => {
                                known.insert(e.key, e.value);
                            }
                            WatchUpdate::Event(WatchEvent::Delete { key, .. }) => {
                                known.remove(&key);
                            }
                        }
                        let _ = known_tx
                            .send(known.iter().map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v))).collect());
                    }
                    Ok(())
                })
            });
            let result = (|| {
                let wait_for = |wanted: &[&str]| -> anyhow::Result<()> {
                    let deadline = Instant::now() + Duration::from_secs(40);
                    let mut last = Vec::new();
                    while Instant::now() < deadline {
                        if let Ok(known) = known_rx.recv_timeout(Duration::from_millis(200)) {
                            last = known;
                        }
                        if last == wanted {
                            return Ok(());
                        }
                    }
                    bail!("the watch knows {last:?}, not {wanted:?}")
                };
                wait_for(&["w/a=2"])?;
                server.stop()?;
                std::thread::sleep(Duration::from_secs(1));
                server.start_again()?;
                on_host(agt01, &url, |store| async move {
                    store.put("w/b", b"1".to_vec(), None).await?;
                    store.delete("w/a").await?;
                    Ok(())
                })?;
                wait_for(&["w/b=1"])?;
                // Back empty: the watch lists again by itself.
                server.stop()?;
                server.wipe()?;
                server.start_again()?;
                on_host(agt01, &url, |store| async move { Ok(store.put("w/c", b"1".to_vec(), None).await?) })?;
                wait_for(&["w/c=1"])
            })();
            trigger.fire();
            client.join().map_err(|_| anyhow::anyhow!("the watching client panicked"))??;
            result
        })
    })
}

/// Two candidates on two leases: one leads; when its lease goes, the other does.
fn one_leader_at_a_time(backend: Backend) -> anyhow::Result<()> {
    with_store(backend, "sclead", |lab, server| {
        on_host(lab.host("agt01"), &server.url("lead"), |store| async move {
            ensure!(store.leader("e/leader").await?.is_none(), "a leader before any campaign");
            let (first, second) =
                (store.grant_lease(Duration::from_secs(10)).await?, store.grant_lease(Duration::from_secs(10)).await?);
            ensure!(store.campaign("e/leader", b"first".to_vec(), first).await?, "the only candidate does not lead");
            ensure!(!store.campaign("e/leader", b"second".to_vec(), second).await?, "two leaders");
            // Campaigning again changes nothing.
            ensure!(store.campaign("e/leader", b"first".to_vec(), first).await?);
            ensure!(!store.campaign("e/leader", b"second".to_vec(), second).await?);
            let leader = store.leader("e/leader").await?.context("no leader")?;
            ensure!(leader.value == b"first" && leader.lease == Some(first) && leader.key == "e/leader", "{leader:?}");
            store.revoke_lease(first).await?;
            ensure!(store.campaign("e/leader", b"second".to_vec(), second).await?, "the second does not take over");
            let leader = store.leader("e/leader").await?.context("no leader")?;
            ensure!(leader.value == b"second" && leader.lease == Some(second), "{leader:?}");
            Ok(())
        })
    })
}

/// etcd only: a raw watch from a compacted revision says so (the resilient watch then
/// lists again); from a revision still there, the history is replayed. ZooKeeper keeps
/// no history and answers every resume as compacted (checked above by the restart).
#[test]
fn etcd_watch_from_a_compacted_revision() -> anyhow::Result<()> {
    with_store(Backend::Etcd, "sccomp", |lab, server| {
        on_host(lab.host("agt01"), &server.url("compact"), |store| async move {
            let AnyStore::Etcd(etcd) = &store else { bail!("not etcd") };
            let before = store.current_revision().await?;
            store.put("c/x", b"1".to_vec(), None).await?;
            store.put("c/x", b"2".to_vec(), None).await?;
            etcd.compact(store.current_revision().await?).await?;
            let mut raw = store.watch("c/", WatchStart::Revision(before)).await?;
            match next(&mut raw).await? {
                Ok(WatchMessage::Compacted { compact_revision }) => ensure!(compact_revision > before),
                other => bail!("a watch from compacted revision {before} got {other:?}"),
            }
            let mut raw = store.watch("c/", WatchStart::Revision(store.current_revision().await?)).await?;
            match next(&mut raw).await? {
                Ok(WatchMessage::Events(events)) => ensure!(events.len() == 1, "{events:?}"),
                other => bail!("a watch from the current revision got {other:?}"),
            }
            Ok(())
        })
    })
}
