//! The result of a packet path, the one place it is counted, and the wrapper that turns
//! it into a TC action.

use aya_ebpf::bindings::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT};
use overlay_common::{Direction, Reason};

use crate::counters;

/// Where a packet went when it was not dropped.
pub struct Forward {
    pub reason: Reason,
    /// The hook's action (TC, or XDP for the experimental XDP program).
    pub action: i32,
    /// The network's counter slot, or [`NO_NETWORK`].
    pub net_slot: u32,
}

pub const NO_NETWORK: u32 = overlay_common::NO_NETWORK_SLOT;

/// `Err` is the drop reason.
pub type Verdict = Result<Forward, Reason>;

/// Traffic that is not ours: the host stack gets it unchanged.
#[inline(always)]
pub fn pass() -> Verdict {
    Ok(Forward { reason: Reason::PassedToHost, action: TC_ACT_OK, net_slot: NO_NETWORK })
}

/// Checks a redirect helper's return value: TC_ACT_REDIRECT on success.
#[inline(always)]
pub fn redirected(helper_result: i64, reason: Reason, net_slot: u32) -> Verdict {
    if helper_result == TC_ACT_REDIRECT as i64 {
        Ok(Forward { reason, action: TC_ACT_REDIRECT, net_slot })
    } else {
        Err(Reason::RedirectFailed)
    }
}

/// Counts a result under its reason, and its network when it has one.
#[inline(always)]
pub fn count(direction: Direction, bytes: u32, verdict: &Verdict) {
    match verdict {
        Ok(forward) => {
            counters::count(forward.reason, direction, bytes);
            if forward.net_slot != NO_NETWORK {
                counters::count_network(forward.net_slot, direction, bytes);
            }
        }
        Err(reason) => counters::count(*reason, direction, bytes),
    }
}

#[inline(always)]
pub fn finish(direction: Direction, bytes: u32, verdict: Verdict) -> i32 {
    count(direction, bytes, &verdict);
    match verdict {
        Ok(forward) => forward.action,
        Err(_) => TC_ACT_SHOT,
    }
}
