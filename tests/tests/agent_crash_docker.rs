//! Scenario 3 of issue 16, through Docker: the agent serving the Docker plugin to a real
//! dockerd SIGKILLed after a random delay during `docker network create`, `docker run`
//! and `docker rm -f`, 20 rounds. After each restart the store and the host hold nothing
//! without an owner, the IPAM's allocations are exactly the live endpoints, dockerd and
//! the plugin agree on networks and endpoints, and every running Docker container
//! answers a container of another host.

use std::time::Duration;

use overlay_tests::faults::docker_crash::{self, Size};

#[test]
fn agent_killed_during_docker_calls_leaves_dockerd_and_the_cluster_agreeing() -> anyhow::Result<()> {
    let figures = docker_crash::run(Size { rounds: 20, max_delay: Duration::from_millis(300) })?;
    eprintln!("{}", serde_json::to_string_pretty(&figures)?);
    assert!(figures.problems.is_empty(), "{:#?}", figures.problems);
    assert_eq!((figures.leaks, figures.duplicates), (0, 0));
    assert!(figures.kills_during_network_create > 0 && figures.kills_during_run > 0 && figures.kills_during_rm > 0);
    assert!(figures.kills_mid_command >= figures.rounds / 3, "too few kills during a command: {figures:?}");
    Ok(())
}
