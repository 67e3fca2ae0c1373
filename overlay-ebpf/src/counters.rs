//! Per-CPU packet and byte counters; userspace sums the CPUs.

use overlay_common::{Direction, Reason};

use crate::maps::{OVL_COUNTERS, OVL_NET_COUNTS};

#[inline(always)]
pub fn count(reason: Reason, direction: Direction, bytes: u32) {
    bump(OVL_COUNTERS.get_ptr_mut(reason.slot(direction)), bytes);
}

#[inline(always)]
pub fn count_network(slot: u32, direction: Direction, bytes: u32) {
    bump(OVL_NET_COUNTS.get_ptr_mut(slot * Direction::COUNT + direction as u32), bytes);
}

#[inline(always)]
fn bump(cell: Option<*mut overlay_common::Counter>, bytes: u32) {
    if let Some(cell) = cell {
        // SAFETY: a per-CPU cell is only touched by this CPU while this program runs.
        unsafe {
            (*cell).packets += 1;
            (*cell).bytes += u64::from(bytes);
        }
    }
}
