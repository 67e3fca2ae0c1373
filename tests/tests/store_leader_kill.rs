//! Scenario 1 of the faults a real cluster has (issue 16): the leader of a three-member
//! etcd cluster is SIGKILLed while a 10 ms ping crosses hosts and containers are being
//! started. No packet of the flow is lost, a container started across the kill is
//! reachable from another host within 5 s, and once the member is back it holds every
//! record, with no address given twice.

use overlay_tests::faults::leader_kill::{self, Size};

#[test]
fn etcd_leader_killed_under_load() -> anyhow::Result<()> {
    let figures = leader_kill::run(Size { containers: 4 })?;
    eprintln!("{}", serde_json::to_string_pretty(&figures)?);
    assert!(figures.problems.is_empty(), "{:#?}", figures.problems);
    assert_eq!(figures.duplicate_addresses, 0);
    assert_eq!(figures.flow_lost, 0, "packets lost on the established flow");
    assert!(
        figures.in_flight_reachable_after_kill_s < 5.0 && figures.max_reachable_s < 5.0,
        "containers started across the kill took too long: {figures:?}"
    );
    Ok(())
}
