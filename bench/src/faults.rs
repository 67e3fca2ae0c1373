//! `cargo xtask bench --faults`: the fault scenarios of a real cluster (issue 16), the
//! same code as their integration tests (overlay-tests `faults`), run larger, with
//! their figures and targets side by side.

use std::{fmt, time::Duration};

use overlay_tests::faults::{crash, leader_kill, partition, wipe};

/// How large each scenario runs.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub leader_kill: leader_kill::Size,
    pub partition: Duration,
    pub crash: crash::Size,
    pub wipe: wipe::Size,
}

impl Sizes {
    pub fn full() -> Self {
        Sizes {
            leader_kill: leader_kill::Size { containers: 10 },
            partition: Duration::from_secs(30),
            crash: crash::Size { rounds: 200, max_delay: Duration::from_millis(400) },
            wipe: wipe::Size { flow: Duration::from_secs(40) },
        }
    }

    pub fn quick() -> Self {
        Sizes {
            leader_kill: leader_kill::Size { containers: 4 },
            partition: Duration::from_secs(30),
            crash: crash::Size { rounds: 50, max_delay: Duration::from_millis(400) },
            wipe: wipe::Size { flow: Duration::from_secs(40) },
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Figures {
    pub leader_kill: leader_kill::Figures,
    /// The lease outlives the partition (45 s).
    pub partition_lease_kept: partition::Figures,
    /// The lease (10 s) expires during the partition.
    pub partition_lease_lost: partition::Figures,
    pub crash: crash::Figures,
    pub wipe: wipe::Figures,
}

pub fn run(sizes: Sizes) -> anyhow::Result<Figures> {
    let leader_kill = leader_kill::run(sizes.leader_kill)?;
    let partition_lease_kept = partition::run(partition::Size { partition: sizes.partition, ttl_secs: 45 })?;
    let partition_lease_lost = partition::run(partition::Size { partition: sizes.partition, ttl_secs: 10 })?;
    let crash = crash::run(sizes.crash)?;
    let wipe = wipe::run(sizes.wipe)?;
    Ok(Figures { leader_kill, partition_lease_kept, partition_lease_lost, crash, wipe })
}

impl Figures {
    /// Whether every figure with a target meets it.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(what);
            }
        };
        let l = &self.leader_kill;
        check(l.flow_lost == 0, format!("leader kill: {} packets lost", l.flow_lost));
        check(l.max_reachable_s < 5.0, format!("leader kill: a container took {:.2} s", l.max_reachable_s));
        check(l.problems.is_empty() && l.duplicate_addresses == 0, format!("leader kill: {:?}", l.problems));
        let p = &self.partition_lease_kept;
        check(p.flow_lost == 0, format!("partition: {} packets lost", p.flow_lost));
        check(p.converge_s < 5.0, format!("partition: converged in {:.2} s", p.converge_s));
        for p in [&self.partition_lease_kept, &self.partition_lease_lost] {
            check(p.problems.is_empty(), format!("partition: {:?}", p.problems));
        }
        let c = &self.crash;
        check(c.leaks == 0 && c.duplicates == 0 && c.problems.is_empty(), format!("crash rounds: {:?}", c.problems));
        for w in [Some(&self.wipe.data_directory), self.wipe.prefix.as_ref()].into_iter().flatten() {
            check(w.flow_lost == 0, format!("store wiped ({:?}): {} packets lost", w.loss, w.flow_lost));
            check(
                w.republished_s < 60.0,
                format!("store wiped ({:?}): republished in {:.2} s", w.loss, w.republished_s),
            );
            check(
                w.problems.is_empty() && w.duplicate_addresses == 0,
                format!("store wiped ({:?}): {:?}", w.loss, w.problems),
            );
        }
        problems
    }
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, pk, pl, c) = (&self.leader_kill, &self.partition_lease_kept, &self.partition_lease_lost, &self.crash);
        writeln!(f, "| scenario | figure | measured | target |")?;
        writeln!(f, "|---|---|---|---|")?;
        writeln!(
            f,
            "| 1. etcd leader ({}) SIGKILLed, 3 members | packets lost, 10 ms ping across hosts | {} of {} | 0 |",
            l.killed_member, l.flow_lost, l.flow_sent
        )?;
        writeln!(
            f,
            "| | container started across the kill, reachable from another host | {:.2} s after the kill (slowest of {}: {:.2} s) | < 5 s |",
            l.in_flight_reachable_after_kill_s, l.containers_started, l.max_reachable_s
        )?;
        writeln!(
            f,
            "| | new leader; member back and caught up | {:.2} s; {:.2} s, {} duplicate addresses, {} problems | 0 duplicates, nothing lost |",
            l.election_s,
            l.member_caught_up_s,
            l.duplicate_addresses,
            l.problems.len()
        )?;
        for (p, case) in [(pk, "lease kept"), (pl, "lease lost")] {
            writeln!(
                f,
                "| 2. host cut off from the store {:.0} s, TTL {} s ({case}) | packets lost to its container | {} of {} | {} |",
                p.partition_s,
                p.ttl_s,
                p.flow_lost,
                p.flow_sent,
                if p.lease_survived { "0" } else { "(dead to its peers once its lease expires)" }
            )?;
            writeln!(
                f,
                "| | converged after the heal, no restart | {:.2} s ({} problems) | < 5 s |",
                p.converge_s,
                p.problems.len()
            )?;
        }
        writeln!(
            f,
            "| 3. agent SIGKILLed at random points, {} rounds ({} run, {} rm, {} network rm) | leaks, duplicate addresses | {}, {} | 0, 0 |",
            c.rounds, c.kills_during_run, c.kills_during_rm, c.kills_during_network_rm, c.leaks, c.duplicates
        )?;
        writeln!(
            f,
            "| | recovery after the restart, median / slowest | {:.2} s / {:.2} s ({} commands failed) | |",
            c.median_recovery_s, c.max_recovery_s, c.commands_failed
        )?;
        let cases = [
            (Some(&self.wipe.data_directory), "etcd restarted on an empty data directory"),
            (self.wipe.prefix.as_ref(), "the cluster's prefix deleted"),
        ];
        for (w, case) in cases.into_iter().filter_map(|(w, case)| Some((w?, case))) {
            writeln!(
                f,
                "| 5. store wiped: {case} ({} keys) | packets lost, 10 ms ping across hosts | {} of {} | 0 |",
                w.keys_before, w.flow_lost, w.flow_sent
            )?;
            writeln!(
                f,
                "| | nodes, networks, containers, endpoints, addresses back | {:.2} s, {} duplicate addresses, {} problems | < 60 s, 0 |",
                w.republished_s,
                w.duplicate_addresses,
                w.problems.len()
            )?;
        }
        Ok(())
    }
}
