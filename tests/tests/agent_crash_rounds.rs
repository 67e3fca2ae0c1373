//! Scenario 3 of issue 16: the agent SIGKILLed after a random delay during `overlay run`,
//! `overlay rm` and `network rm`, 100 rounds. After each restart the agent starts
//! cleanly, every container in the store runs and answers from another host, nothing on
//! the host (namespace, veth, datapath entry) or in the store (endpoint, address) is
//! left without an owner, and the IPAM's allocations are exactly the live endpoints.

use std::time::Duration;

use overlay_tests::faults::crash::{self, Size};

#[test]
fn agent_killed_at_random_points_leaves_nothing_behind() -> anyhow::Result<()> {
    let figures = crash::run(Size { rounds: 100, max_delay: Duration::from_millis(400) })?;
    eprintln!("{}", serde_json::to_string_pretty(&figures)?);
    assert!(figures.problems.is_empty(), "{:#?}", figures.problems);
    assert_eq!((figures.leaks, figures.duplicates), (0, 0));
    assert!(figures.kills_during_run > 0 && figures.kills_during_rm > 0 && figures.kills_during_network_rm > 0);
    Ok(())
}
