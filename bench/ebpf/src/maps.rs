//! Maps of the benchmark's own programs. None is pinned: the benchmark fills them, and
//! they go with its process.

use aya_ebpf::{macros::map, maps::HashMap};
use overlay_bench_common::BoundHop;

/// The bound's hops (`bound.rs`), by container address.
#[map]
pub static OVL_BOUND_HOPS: HashMap<u32, BoundHop> = HashMap::with_max_entries(64, 0);
