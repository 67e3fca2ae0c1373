//! Scenario 2 of issue 16: a host is cut off from every etcd member for 30 s (nftables in
//! its own namespace), then healed. With a lease that outlives the partition, its
//! container keeps forwarding throughout; with a shorter one, it registers again after
//! the heal. Either way everything converges without a restart, and nothing is lost.

use std::time::Duration;

use overlay_tests::faults::partition::{self, Size};

const PARTITION: Duration = Duration::from_secs(30);

#[test]
fn a_host_cut_off_from_the_store_keeps_forwarding_and_converges_after_the_heal() -> anyhow::Result<()> {
    let figures = partition::run(Size { partition: PARTITION, ttl_secs: 45 })?;
    eprintln!("{}", serde_json::to_string_pretty(&figures)?);
    assert!(figures.lease_survived, "the lease outlives the partition: {figures:?}");
    assert!(figures.problems.is_empty(), "{:#?}", figures.problems);
    assert_eq!(figures.flow_lost, 0, "packets lost while the host was cut off");
    assert!(figures.converge_s < 5.0, "converged in {} s", figures.converge_s);
    Ok(())
}

#[test]
fn a_host_whose_lease_expired_in_a_partition_registers_again_and_republishes() -> anyhow::Result<()> {
    let figures = partition::run(Size { partition: PARTITION, ttl_secs: 10 })?;
    eprintln!("{}", serde_json::to_string_pretty(&figures)?);
    assert!(!figures.lease_survived, "the lease should have expired: {figures:?}");
    assert!(figures.problems.is_empty(), "{:#?}", figures.problems);
    assert!(figures.converge_s < 15.0, "converged in {} s", figures.converge_s);
    Ok(())
}
