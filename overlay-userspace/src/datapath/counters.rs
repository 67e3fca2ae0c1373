//! Reading the per-CPU counters and summing them.

use std::{borrow::Borrow, collections::BTreeMap, path::Path};

use aya::maps::{HashMap, Map, MapData, PerCpuArray};
use overlay_common::{Counter, Direction, NetworkInfo, Reason, map_names};
use serde::Serialize;

use super::{Datapath, DatapathError};

/// All counters of one host at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub by_reason: BTreeMap<(Reason, Direction), Counter>,
    /// Per network (VNI) and direction: packets that reached a container of it.
    pub by_network: BTreeMap<u32, NetworkCounters>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkCounters {
    pub from_container_packets: u64,
    pub from_container_bytes: u64,
    pub from_underlay_packets: u64,
    pub from_underlay_bytes: u64,
}

impl CounterSnapshot {
    pub fn get(&self, reason: Reason, direction: Direction) -> Counter {
        self.by_reason.get(&(reason, direction)).copied().unwrap_or_default()
    }

    pub fn packets(&self, reason: Reason, direction: Direction) -> u64 {
        self.get(reason, direction).packets
    }

    /// Packets counted under `reason` in either direction.
    pub fn total_packets(&self, reason: Reason) -> u64 {
        Direction::ALL.iter().map(|d| self.packets(reason, *d)).sum()
    }

    /// The change from `earlier` to `self`.
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        let by_reason = self
            .by_reason
            .iter()
            .map(|(key, now)| {
                let before = earlier.by_reason.get(key).copied().unwrap_or_default();
                let delta = Counter {
                    packets: now.packets.saturating_sub(before.packets),
                    bytes: now.bytes.saturating_sub(before.bytes),
                };
                (*key, delta)
            })
            .collect();
        let by_network = self
            .by_network
            .iter()
            .map(|(vni, now)| {
                let b = earlier.by_network.get(vni).copied().unwrap_or_default();
                let delta = NetworkCounters {
                    from_container_packets: now.from_container_packets.saturating_sub(b.from_container_packets),
                    from_container_bytes: now.from_container_bytes.saturating_sub(b.from_container_bytes),
                    from_underlay_packets: now.from_underlay_packets.saturating_sub(b.from_underlay_packets),
                    from_underlay_bytes: now.from_underlay_bytes.saturating_sub(b.from_underlay_bytes),
                };
                (*vni, delta)
            })
            .collect();
        CounterSnapshot { by_reason, by_network }
    }

    /// Non-zero counters, for printing.
    pub fn nonzero(&self) -> impl Iterator<Item = (Reason, Direction, Counter)> + '_ {
        self.by_reason.iter().filter(|(_, c)| c.packets > 0).map(|((r, d), c)| (*r, *d, *c))
    }
}

fn sum(values: &[Counter]) -> Counter {
    values
        .iter()
        .fold(Counter::default(), |acc, c| Counter { packets: acc.packets + c.packets, bytes: acc.bytes + c.bytes })
}

impl Datapath {
    /// Sums the per-CPU counters (like `bpftool map dump pinned PIN_DIR/maps/OVL_COUNTERS`).
    pub fn counters(&mut self) -> Result<CounterSnapshot, DatapathError> {
        let networks = self.networks()?;
        let counters = per_cpu_array(self.ebpf.map(map_names::COUNTERS), map_names::COUNTERS)?;
        let per_network = per_cpu_array(self.ebpf.map(map_names::NET_COUNTERS), map_names::NET_COUNTERS)?;
        snapshot(&counters, &per_network, &networks)
    }
}

/// Reads the counters of a datapath from its pins, without loading it: what
/// `overlay stats` does while the agent runs.
pub fn read_pinned_counters(pin_dir: &Path) -> Result<CounterSnapshot, DatapathError> {
    let maps = pin_dir.join("maps");
    let open = |name: &'static str| {
        MapData::from_pin(maps.join(name)).map_err(|source| DatapathError::Pinned { path: maps.join(name), source })
    };
    let networks: HashMap<MapData, u32, NetworkInfo> = HashMap::try_from(Map::HashMap(open(map_names::NETWORKS)?))
        .map_err(|source| DatapathError::Map { map: map_names::NETWORKS, source })?;
    let networks = networks
        .iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| DatapathError::Map { map: map_names::NETWORKS, source })?;
    let counters = PerCpuArray::try_from(Map::PerCpuArray(open(map_names::COUNTERS)?))
        .map_err(|source| DatapathError::Map { map: map_names::COUNTERS, source })?;
    let per_network = PerCpuArray::try_from(Map::PerCpuArray(open(map_names::NET_COUNTERS)?))
        .map_err(|source| DatapathError::Map { map: map_names::NET_COUNTERS, source })?;
    snapshot(&counters, &per_network, &networks)
}

fn per_cpu_array<'a>(
    map: Option<&'a Map>,
    name: &'static str,
) -> Result<PerCpuArray<&'a MapData, Counter>, DatapathError> {
    let map = map.ok_or(DatapathError::MissingMap(name))?;
    PerCpuArray::try_from(map).map_err(|source| DatapathError::Map { map: name, source })
}

fn snapshot<T: Borrow<MapData>>(
    counters: &PerCpuArray<T, Counter>,
    per_network: &PerCpuArray<T, Counter>,
    networks: &[(u32, NetworkInfo)],
) -> Result<CounterSnapshot, DatapathError> {
    let read = |array: &PerCpuArray<T, Counter>, map: &'static str, index: u32| {
        array.get(&index, 0).map(|values| sum(&values)).map_err(|source| DatapathError::Map { map, source })
    };
    let mut snapshot = CounterSnapshot::default();
    for reason in Reason::ALL {
        for direction in Direction::ALL {
            let counter = read(counters, map_names::COUNTERS, reason.slot(direction))?;
            snapshot.by_reason.insert((reason, direction), counter);
        }
    }
    for (vni, info) in networks {
        let base = info.counter_slot * Direction::COUNT;
        let from_container = read(per_network, map_names::NET_COUNTERS, base + Direction::FromContainer as u32)?;
        let from_underlay = read(per_network, map_names::NET_COUNTERS, base + Direction::FromUnderlay as u32)?;
        snapshot.by_network.insert(
            *vni,
            NetworkCounters {
                from_container_packets: from_container.packets,
                from_container_bytes: from_container.bytes,
                from_underlay_packets: from_underlay.packets,
                from_underlay_bytes: from_underlay.bytes,
            },
        );
    }
    Ok(snapshot)
}
