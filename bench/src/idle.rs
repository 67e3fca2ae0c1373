//! What idle CPUs cost a request/response transaction, and a setting that takes the
//! largest part away for every path alike.
//!
//! The request/response figures pin client and server to two CPUs, so each transaction
//! wakes an idle CPU twice. How an idle CPU enters and leaves idle then weighs as much
//! as the path: when it stops its scheduler tick on the way in (nohz idle), it programs
//! the timer again on the way out, and in a VM each of those is an exit to the
//! hypervisor (about 12 µs a transaction on the machine this was written on, measured
//! with ftrace). Whether the tick stops is the cpuidle governor's choice, and the
//! kernel's: a CPU with RCU callbacks pending keeps it. `haltpoll` (what KVM guests
//! get) stops it on every idle period unless a path leaves RCU work behind, as the
//! Cilium-style path does (most likely the metadata dst that its collect_md VXLAN
//! device allocates for each received packet and frees through RCU): its figures then
//! avoid a cost that every other path pays. `menu` keeps the tick when the CPU expects to wake
//! within one, as here, whatever the path.
//!
//! - [`TickStops`]: idle periods that stopped the tick (`/proc/timer_list`,
//!   `idle_sleeps`), to report per transaction beside every request/response figure.
//! - [`KeptTick`]: the `menu` governor while it lives, for the figures measured with
//!   the tick kept. Machine-wide, so the governor it replaced is written down first
//!   ([`restore_after_crash`] puts it back after a run that was killed).

use std::{fs, path::Path};

use anyhow::Context;

const GOVERNOR: &str = "/sys/devices/system/cpu/cpuidle/current_governor";
const AVAILABLE: &str = "/sys/devices/system/cpu/cpuidle/available_governors";
/// The governor a [`KeptTick`] replaced, while it holds.
const REPLACED: &str = "/run/overlay-bench/cpuidle-governor";
/// The governor that keeps the tick over idle periods shorter than one.
const KEEPS_TICK: &str = "menu";

/// Idle periods, and those that stopped the tick, summed over the CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickStops {
    pub idle_periods: u64,
    pub stopped: u64,
}

impl TickStops {
    /// `None` where the kernel does not report them (no `/proc/timer_list`).
    pub fn read() -> Option<TickStops> {
        parse_timer_list(&fs::read_to_string("/proc/timer_list").ok()?)
    }

    /// Tick stops per transaction between `self` and `later`.
    pub fn per_transaction(self, later: TickStops, transactions: u64) -> Option<f64> {
        (transactions > 0).then(|| later.stopped.saturating_sub(self.stopped) as f64 / transactions as f64)
    }
}

/// `idle_calls` counts the idle periods that tried to stop the tick, `idle_sleeps`
/// those that did (`kernel/time/timer_list.c`); a governor that keeps the tick counts
/// neither.
fn parse_timer_list(text: &str) -> Option<TickStops> {
    let value = |line: &str, field: &str| -> Option<u64> {
        line.trim().strip_prefix(field)?.trim_start().strip_prefix(':')?.trim().parse().ok()
    };
    let mut sum = TickStops::default();
    let mut seen = false;
    for line in text.lines() {
        if let Some(v) = value(line, ".idle_calls") {
            sum.idle_periods += v;
        } else if let Some(v) = value(line, ".idle_sleeps") {
            sum.stopped += v;
            seen = true;
        }
    }
    seen.then_some(sum)
}

/// The `menu` governor on every CPU until dropped, then the one it replaced.
pub struct KeptTick {
    replaced: String,
}

impl KeptTick {
    /// `Ok(None)`: this machine cannot keep the tick this way (no cpuidle driver, or no
    /// `menu` governor); the figures that need it are left out.
    pub fn hold() -> anyhow::Result<Option<KeptTick>> {
        let (Ok(current), Ok(available)) = (fs::read_to_string(GOVERNOR), fs::read_to_string(AVAILABLE)) else {
            return Ok(None);
        };
        if !available.split_whitespace().any(|g| g == KEEPS_TICK) {
            return Ok(None);
        }
        let replaced = current.trim().to_owned();
        // Written down before the switch: a run killed while it holds leaves the note.
        if let Some(dir) = Path::new(REPLACED).parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(REPLACED, &replaced).with_context(|| format!("writing {REPLACED}"))?;
        set_governor(KEEPS_TICK)?;
        Ok(Some(KeptTick { replaced }))
    }
}

impl Drop for KeptTick {
    fn drop(&mut self) {
        match set_governor(&self.replaced) {
            Ok(()) => {
                let _ = fs::remove_file(REPLACED);
            }
            Err(error) => eprintln!(
                "could not put the cpuidle governor back to {}: {error:#}; write it to {GOVERNOR}",
                self.replaced
            ),
        }
    }
}

/// Puts back the governor a killed run left replaced, if any.
pub fn restore_after_crash() -> anyhow::Result<()> {
    let Ok(replaced) = fs::read_to_string(REPLACED) else { return Ok(()) };
    let replaced = replaced.trim();
    set_governor(replaced)?;
    fs::remove_file(REPLACED).with_context(|| format!("removing {REPLACED}"))?;
    eprintln!("put the cpuidle governor back to {replaced}, which an interrupted bench had replaced");
    Ok(())
}

fn set_governor(name: &str) -> anyhow::Result<()> {
    fs::write(GOVERNOR, name).with_context(|| format!("setting the cpuidle governor to {name} in {GOVERNOR}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_idle_periods_and_tick_stops_over_cpus() {
        let text = "cpu: 0\n  .idle_calls     : 10\n  .idle_sleeps    : 7\n  .idle_entrytime : 5\n\
                    cpu: 1\n  .idle_calls     : 4\n  .idle_sleeps    : 1\n";
        assert_eq!(parse_timer_list(text), Some(TickStops { idle_periods: 14, stopped: 8 }));
        assert_eq!(parse_timer_list("cpu: 0\n  .nohz_mode : 2\n"), None);
        let (a, b) = (TickStops { idle_periods: 0, stopped: 10 }, TickStops { idle_periods: 0, stopped: 30 });
        assert_eq!(a.per_transaction(b, 10), Some(2.0));
        assert_eq!(a.per_transaction(b, 0), None);
    }
}
