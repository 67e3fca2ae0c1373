//! What each eBPF program costs per packet: the kernel's own run-time statistics
//! (`run_time_ns / run_cnt`, as `bpftool prog show` prints them once
//! `kernel.bpf_stats_enabled` is 1), read before and after a load. Statistics are turned
//! on with `BPF_ENABLE_STATS`, which lasts only while its file descriptor is open, so they
//! are on only while this measures and are off again even if it fails. The time of the
//! helpers a program calls (`adjust_room`, `fib_lookup`, redirects) counts as its own.

use std::time::Duration;

use anyhow::Context;
use aya::{
    programs::{SchedClassifier, TcAttachType},
    sys::{Stats, enable_stats},
};
use overlay::netns;
use serde::Serialize;

/// A TC program attached at ingress of `interface` in namespace `ns`, found by its name
/// (the kernel keeps the first 15 bytes).
#[derive(Clone, Debug)]
pub struct ProgramAt {
    pub program: &'static str,
    /// Where it runs, for the report (e.g. "sender's container veth").
    pub place: &'static str,
    pub ns: String,
    pub interface: String,
}

/// One program's cost over one load.
#[derive(Clone, Debug, Serialize)]
pub struct Cost {
    pub program: &'static str,
    pub place: &'static str,
    pub runs: u64,
    pub ns_per_run: f64,
}

/// Runs `load` with the kernel's BPF statistics on and returns what it returned, and
/// each program's runs and mean run time during it.
pub fn measure<T>(programs: &[ProgramAt], load: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Vec<Cost>)> {
    let _stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS (run time)")?;
    let before = programs.iter().map(totals).collect::<anyhow::Result<Vec<_>>>()?;
    let value = load()?;
    let after = programs.iter().map(totals).collect::<anyhow::Result<Vec<_>>>()?;
    let costs = programs
        .iter()
        .zip(before.iter().zip(after.iter()))
        .map(|(p, ((t0, n0), (t1, n1)))| {
            let runs = n1.saturating_sub(*n0);
            let time = t1.saturating_sub(*t0);
            Cost {
                program: p.program,
                place: p.place,
                runs,
                ns_per_run: if runs == 0 { f64::NAN } else { time.as_nanos() as f64 / runs as f64 },
            }
        })
        .collect();
    Ok((value, costs))
}

/// Total run time and run count of the programs named `program` at `interface`'s TCX
/// ingress (`bpftool net show dev IF`, then `bpftool prog show id ID`).
fn totals(at: &ProgramAt) -> anyhow::Result<(Duration, u64)> {
    let infos = netns::run_in(&at.ns, || SchedClassifier::query_tcx(&at.interface, TcAttachType::Ingress))?
        .with_context(|| format!("TCX programs of {} in {}", at.interface, at.ns))?
        .1;
    let short = &at.program[..at.program.len().min(15)];
    let matching: Vec<_> = infos.iter().filter(|info| info.name_as_str() == Some(short)).collect();
    anyhow::ensure!(!matching.is_empty(), "{} is not attached to {} in {}", at.program, at.interface, at.ns);
    Ok(matching
        .iter()
        .fold((Duration::ZERO, 0), |(time, count), info| (time + info.run_time(), count + info.run_count())))
}
