//! Scenario 5 of issue 16: the store loses all its data under a running cluster (etcd
//! started again on an empty data directory, then the cluster's prefix deleted; ZooKeeper
//! started again on an empty data directory). The agents put back their nodes, networks,
//! containers, endpoints and addresses within 60 s, with no duplicate address, and
//! traffic between running containers never stops.

use std::time::Duration;

use overlay_tests::{
    faults::wipe::{self, Case, Size},
    stores::Backend,
};

fn check(case: &Case) {
    assert!(case.problems.is_empty(), "{:?}: {:#?}", case.loss, case.problems);
    assert_eq!(case.duplicate_addresses, 0, "{:?}", case.loss);
    assert_eq!(case.flow_lost, 0, "{:?}: packets lost across the loss", case.loss);
    assert!(case.republished_s < 60.0, "{:?}: republished in {} s", case.loss, case.republished_s);
}

#[test]
fn agents_republish_what_a_wiped_etcd_lost_and_traffic_goes_on() -> anyhow::Result<()> {
    let figures = wipe::run(Size { flow: Duration::from_secs(40) })?;
    eprintln!("{}", serde_json::to_string_pretty(&figures)?);
    check(&figures.data_directory);
    check(figures.prefix.as_ref().expect("etcd deletes a prefix"));
    Ok(())
}

#[test]
fn agents_republish_what_a_wiped_zookeeper_lost_and_traffic_goes_on() -> anyhow::Result<()> {
    let figures = wipe::run_on(Backend::ZooKeeper, Size { flow: Duration::from_secs(40) })?;
    eprintln!("{}", serde_json::to_string_pretty(&figures)?);
    check(&figures.data_directory);
    Ok(())
}
