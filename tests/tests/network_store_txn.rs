//! The multi-key transactions networks and IPAM are built on, against a real etcd:
//! each condition holds and fails when it should, writes happen all or not at all, and
//! the failure branch reads what is there.

use std::time::Duration;

use anyhow::ensure;
use overlay::store::{AnyStore, Condition, Op, Store, Transact};
use overlay_tests::{Lab, etcd::Etcd, ipam::on_host};

fn put(key: &str, value: &str) -> Op {
    Op::Put { key: key.to_owned(), value: value.as_bytes().to_vec(), lease: None }
}

async fn holds(store: &AnyStore, condition: Condition) -> anyhow::Result<bool> {
    Ok(store.txn(vec![condition], Vec::new(), Vec::new()).await?.succeeded)
}

#[test]
fn conditions_writes_and_reads_of_a_transaction() -> anyhow::Result<()> {
    let lab = Lab::builder("txn").host("store01", "192.168.1.140/24").host("agt01", "192.168.1.141/24").build()?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let result = on_host(lab.host("agt01"), &etcd.url("txn"), |store| async move {
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
        ensure!(listing.entries.len() == 2 && listing.revision == outcome.revision, "{listing:?}");
        let a = store.get("d/a").await?.expect("written");

        ensure!(holds(&store, Condition::Exists("d/a".into())).await?);
        ensure!(!holds(&store, Condition::Absent("d/a".into())).await?);
        ensure!(holds(&store, Condition::ModRevision("d/a".into(), a.mod_revision)).await?);
        ensure!(!holds(&store, Condition::ModRevision("d/a".into(), a.mod_revision - 1)).await?);
        ensure!(!holds(&store, Condition::PrefixEmpty("d/".into())).await?);
        ensure!(holds(&store, Condition::PrefixEmpty("d/a/".into())).await?);
        // "Nothing under d/ changed since the listing": true until a key is added or changed.
        let since = Condition::PrefixUnchangedSince("d/".into(), listing.revision);
        ensure!(holds(&store, since.clone()).await?);
        store.put("other", b"x".to_vec(), None).await?;
        ensure!(holds(&store, since.clone()).await?, "a key outside the prefix counted");
        store.put("d/c", b"3".to_vec(), None).await?;
        ensure!(!holds(&store, since.clone()).await?, "an added key went unnoticed");
        let later = store.list("d/").await?.revision;
        store.put("d/a", b"changed".to_vec(), None).await?;
        ensure!(!holds(&store, Condition::PrefixUnchangedSince("d/".into(), later)).await?, "a change went unnoticed");

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
        store.revoke_lease(lease).await?;
        ensure!(store.get("d/leased").await?.is_none(), "d/leased outlived its lease");
        Ok(())
    });
    if result.is_err() {
        eprintln!("{}", etcd.logs());
    }
    result
}
