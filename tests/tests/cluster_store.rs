//! The store layer against a real etcd: conditional writes, leases, prefixes, and
//! watches that report compaction and resume.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use overlay::{
    shutdown::Shutdown,
    store::{
        self, AnyStore, Entry, Expect, PutOutcome, Store, StoreConfig, TlsFiles, WatchEvent, WatchMessage, WatchUpdate,
    },
};
use overlay_tests::{Lab, etcd::Etcd};

async fn connect(url: &str) -> anyhow::Result<AnyStore> {
    let config = StoreConfig::new(url, &TlsFiles::default(), None, None)?;
    Ok(store::connect(&config, Some(Duration::from_secs(5)), &Shutdown::never()).await?)
}

async fn next<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.context("the watch ended")
}

#[test]
fn etcd_backend_semantics() -> anyhow::Result<()> {
    let lab = Lab::builder("cstorel").host("store01", "192.168.1.140/24").host("agt01", "192.168.1.141/24").build()?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let (alpha_url, beta_url) = (etcd.url("alpha"), etcd.url("beta"));
    let result = overlay::netns::run_in(&lab.host("agt01").ns, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(semantics(&alpha_url, &beta_url))
    })?;
    if result.is_err() {
        eprintln!("{}", etcd.logs());
    }
    result
}

async fn semantics(alpha_url: &str, beta_url: &str) -> anyhow::Result<()> {
    let alpha = connect(alpha_url).await?;
    let beta = connect(beta_url).await?;

    // Conditional writes.
    ensure!(alpha.put_if("k/one", b"1".to_vec(), None, Expect::Absent).await? == PutOutcome::Written);
    let PutOutcome::Conflict(Some(current)) = alpha.put_if("k/one", b"2".to_vec(), None, Expect::Absent).await? else {
        bail!("a second create of k/one did not conflict");
    };
    ensure!(current.value == b"1" && current.key == "k/one", "{current:?}");
    let stale = Expect::ModRevision(current.mod_revision - 1);
    ensure!(matches!(alpha.put_if("k/one", b"3".to_vec(), None, stale).await?, PutOutcome::Conflict(_)));
    let fresh = Expect::ModRevision(current.mod_revision);
    ensure!(alpha.put_if("k/one", b"4".to_vec(), None, fresh).await? == PutOutcome::Written);
    let now = alpha.get("k/one").await?.context("k/one vanished")?;
    ensure!(now.value == b"4");
    ensure!(!alpha.delete_if("k/one", current.mod_revision).await?, "deleted at a stale revision");
    ensure!(alpha.delete_if("k/one", now.mod_revision).await?, "not deleted at its revision");
    ensure!(alpha.get("k/one").await?.is_none());

    // Prefixes: the same key in two clusters are two keys.
    alpha.put("k/shared", b"alpha".to_vec(), None).await?;
    beta.put("k/shared", b"beta".to_vec(), None).await?;
    ensure!(alpha.get("k/shared").await?.map(|e| e.value) == Some(b"alpha".to_vec()));
    let beta_keys: Vec<String> = beta.list("").await?.entries.into_iter().map(|e| e.key).collect();
    ensure!(beta_keys == ["k/shared"], "beta lists {beta_keys:?}");

    // Leases: refreshed, inspected, revoked with their keys.
    let lease = alpha.grant_lease(Duration::from_secs(5)).await?;
    alpha.put("k/leased", b"x".to_vec(), Some(lease)).await?;
    ensure!(alpha.get("k/leased").await?.and_then(|e| e.lease) == Some(lease));
    ensure!(alpha.keep_alive(lease).await?, "a live lease could not be refreshed");
    let status = alpha.lease_status(lease).await?.context("a live lease has no status")?;
    ensure!(status.granted_ttl == 5 && status.remaining_ttl > 0 && status.remaining_ttl <= 5, "{status:?}");
    alpha.revoke_lease(lease).await?;
    ensure!(alpha.get("k/leased").await?.is_none(), "a revoked lease left its key");
    ensure!(!alpha.keep_alive(lease).await?, "a revoked lease was refreshed");
    ensure!(alpha.lease_status(lease).await?.is_none(), "a revoked lease has a status");
    alpha.revoke_lease(lease).await?;

    // A resilient watch: the listing first, then changes, deletes included.
    let mut updates = store::watch_prefix(alpha.clone(), "w/".into(), Shutdown::never());
    alpha.put("w/a", b"1".to_vec(), None).await?;
    let first = next(&mut updates).await?;
    let listed = match first {
        WatchUpdate::Reset(entries) => entries,
        other => bail!("the watch began with {other:?}"),
    };
    // w/a was written around the listing: it comes either in it or just after it.
    if listed.is_empty() {
        let update = next(&mut updates).await?;
        ensure!(
            matches!(&update, WatchUpdate::Event(WatchEvent::Put(Entry { key, .. })) if key == "w/a"),
            "{update:?}"
        );
    }
    alpha.delete("w/a").await?;
    let update = next(&mut updates).await?;
    ensure!(matches!(&update, WatchUpdate::Event(WatchEvent::Delete { key, .. }) if key == "w/a"), "{update:?}");

    // A raw watch from a compacted revision says so (the resilient watch then lists again).
    let before = alpha.current_revision().await?;
    alpha.put("c/x", b"1".to_vec(), None).await?;
    alpha.put("c/x", b"2".to_vec(), None).await?;
    let AnyStore::Etcd(etcd) = &alpha;
    etcd.compact(alpha.current_revision().await?).await?;
    let mut raw = alpha.watch("c/", before).await?;
    match next(&mut raw).await? {
        Ok(WatchMessage::Compacted { compact_revision }) => ensure!(compact_revision > before),
        other => bail!("a watch from compacted revision {before} got {other:?}"),
    }
    // From a revision that is still there, the history is replayed.
    let mut raw = alpha.watch("c/", alpha.current_revision().await?).await?;
    match next(&mut raw).await? {
        Ok(WatchMessage::Events(events)) => ensure!(events.len() == 1, "{events:?}"),
        other => bail!("a watch from the current revision got {other:?}"),
    }
    Ok(())
}
