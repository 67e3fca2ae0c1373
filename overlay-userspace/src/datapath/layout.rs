//! The layout of maps pinned by an earlier agent, checked before the object is loaded.
//! aya adopts a pinned map by its name whatever its key and value sizes, so a map of an
//! older layout would be handed to programs (and writes) of the new one. Each pinned
//! map is compared with this binary's ABI: one of a known older layout is migrated, any
//! other mismatch is an error that says how to start clean.
//!
//! Known older layouts:
//! - `OVL_INTERFACES` with 16-byte values (vni, ip, mac): before the interface carried
//!   its network's gateway and counter slot. Its entries are read, the old pin is
//!   removed (the running programs keep their own reference to the old map until their
//!   links are updated, so forwarding goes on), and after the load they are written to
//!   the new map with their network's copy taken from `OVL_NETWORKS`. Should the agent
//!   die in between, the entries are lost from the pins, and the agent's next start
//!   writes them again from the store, as it does for every local container.
//! - `OVL_LOCAL_EPS` with 12-byte values (ifindex, mac): before the local endpoint
//!   carried its network's counter slot. Migrated the same way, the slot taken from
//!   `OVL_NETWORKS`.

use std::{mem::size_of, path::Path};

use aya::maps::{HashMap, Map, MapData, MapInfo};
use overlay_common::{
    Counter, Direction, EgressDevice, EndpointKey, HostConfig, Interface, LocalEndpoint, Member, NetworkInfo, Reason,
    RemoteEndpoint, ResolverConfig, Subnet, capacity, map_names,
};

use super::{DatapathError, Layout};

const fn layout<K, V>(max_entries: u32) -> Layout {
    Layout { key_size: size_of::<K>() as u32, value_size: size_of::<V>() as u32, max_entries }
}

/// The layout of every pinned map (`map_names::ALL`).
fn expected(name: &str) -> Option<Layout> {
    Some(match name {
        map_names::CONFIG => layout::<u32, HostConfig>(1),
        map_names::NETWORKS => layout::<u32, NetworkInfo>(capacity::NETWORKS),
        map_names::INTERFACES => layout::<u32, Interface>(capacity::INTERFACES),
        map_names::LOCAL_ENDPOINTS => layout::<EndpointKey, LocalEndpoint>(capacity::LOCAL_ENDPOINTS),
        map_names::REMOTE_ENDPOINTS => layout::<EndpointKey, RemoteEndpoint>(capacity::REMOTE_ENDPOINTS),
        map_names::MEMBERS => layout::<u32, Member>(capacity::MEMBERS),
        map_names::COUNTERS => layout::<u32, Counter>(Reason::SLOTS * Direction::COUNT),
        map_names::NET_COUNTERS => layout::<u32, Counter>(capacity::NET_COUNTERS * Direction::COUNT),
        // The LPM trie's key is the prefix length and the address.
        map_names::SUBNETS => layout::<[u32; 2], Subnet>(capacity::SUBNETS),
        map_names::EGRESS => layout::<u32, EgressDevice>(1),
        map_names::RESOLVER => layout::<u32, ResolverConfig>(1),
        _ => return None,
    })
}

/// `OVL_INTERFACES[ifindex]` as agents wrote it before the network's copy was added.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct InterfaceV1 {
    pub vni: u32,
    pub ip: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

// SAFETY: #[repr(C)], Copy, integers and byte arrays with explicit padding.
unsafe impl aya::Pod for InterfaceV1 {}

/// `OVL_LOCAL_EPS[(vni, ip)]` as agents wrote it before the counter slot was added.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct LocalEndpointV1 {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

// SAFETY: #[repr(C)], Copy, integers and byte arrays with explicit padding.
unsafe impl aya::Pod for LocalEndpointV1 {}

/// What [`prepare`] took out of old maps, to be written to the new ones after the load.
#[derive(Debug, Default)]
pub(super) struct Migration {
    pub interfaces: Vec<(u32, InterfaceV1)>,
    pub local_endpoints: Vec<(EndpointKey, LocalEndpointV1)>,
}

/// The entries of the hash map pinned at `path`, which is then unpinned so the load
/// creates the map anew in this binary's layout.
fn take_entries<K: aya::Pod, V: aya::Pod>(name: &'static str, path: &Path) -> Result<Vec<(K, V)>, DatapathError> {
    let pinned_err = |source| DatapathError::Pinned { path: path.to_owned(), source };
    let data = MapData::from_pin(path).map_err(pinned_err)?;
    let old: HashMap<MapData, K, V> =
        HashMap::try_from(Map::HashMap(data)).map_err(|source| DatapathError::Map { map: name, source })?;
    let entries: Vec<(K, V)> =
        old.iter().collect::<Result<_, _>>().map_err(|source| DatapathError::Map { map: name, source })?;
    std::fs::remove_file(path).map_err(|source| DatapathError::PinDir { path: path.to_owned(), source })?;
    tracing::info!(map = name, entries = entries.len(), "migrating a map of an older layout");
    Ok(entries)
}

/// Checks every map pinned under `maps_dir` (like `bpftool map show pinned PATH`). A map
/// of a known older layout is read and unpinned so the load creates it anew; any other
/// mismatch is [`DatapathError::PinnedLayout`].
pub(super) fn prepare(maps_dir: &Path, pin_dir: &Path) -> Result<Migration, DatapathError> {
    let mut migration = Migration::default();
    for name in map_names::ALL {
        let path = maps_dir.join(name);
        if !path.exists() {
            continue;
        }
        let pinned_err = |source| DatapathError::Pinned { path: path.clone(), source };
        let info = MapInfo::from_pin(&path).map_err(pinned_err)?;
        let found =
            Layout { key_size: info.key_size(), value_size: info.value_size(), max_entries: info.max_entries() };
        let Some(wanted) = expected(name) else { continue };
        if found == wanted {
            continue;
        }
        if name == map_names::INTERFACES && found == layout::<u32, InterfaceV1>(capacity::INTERFACES) {
            migration.interfaces = take_entries(name, &path)?;
            continue;
        }
        if name == map_names::LOCAL_ENDPOINTS
            && found == layout::<EndpointKey, LocalEndpointV1>(capacity::LOCAL_ENDPOINTS)
        {
            migration.local_endpoints = take_entries(name, &path)?;
            continue;
        }
        return Err(DatapathError::PinnedLayout { map: name, found, wanted, pin_dir: pin_dir.to_owned() });
    }
    Ok(migration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_map_has_a_layout() {
        for name in map_names::ALL {
            assert!(expected(name).is_some(), "{name}");
        }
        assert_ne!(expected(map_names::INTERFACES).unwrap().value_size, size_of::<InterfaceV1>() as u32);
        assert_ne!(expected(map_names::LOCAL_ENDPOINTS).unwrap().value_size, size_of::<LocalEndpointV1>() as u32);
    }
}
