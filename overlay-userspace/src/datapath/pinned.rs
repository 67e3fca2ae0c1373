//! Read-only access to the tables of a datapath that another process (the agent)
//! runs, through its pins: for `overlay stats`-like tools and benchmarks.

use std::{net::Ipv4Addr, path::Path};

use aya::maps::{HashMap, Map, MapData};
use overlay_common::{EndpointKey, LocalEndpoint, RemoteEndpoint, ipv4_key, map_names};

use super::DatapathError;

/// The remote endpoint table of a running datapath.
pub struct PinnedRemotes {
    map: HashMap<MapData, EndpointKey, RemoteEndpoint>,
}

impl PinnedRemotes {
    /// Opens `PIN_DIR/maps/OVL_REMOTE_EPS` (like `bpftool map show pinned ...`).
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let path = pin_dir.join("maps").join(map_names::REMOTE_ENDPOINTS);
        let data = MapData::from_pin(&path).map_err(|source| DatapathError::Pinned { path, source })?;
        let map = HashMap::try_from(Map::HashMap(data))
            .map_err(|source| DatapathError::Map { map: map_names::REMOTE_ENDPOINTS, source })?;
        Ok(PinnedRemotes { map })
    }

    pub fn contains(&self, vni: u32, ip: Ipv4Addr) -> bool {
        self.map.get(&EndpointKey { vni, ip: ipv4_key(ip.octets()) }, 0).is_ok()
    }

    /// Entries now (walks the table).
    pub fn len(&self) -> usize {
        self.map.keys().filter(Result::is_ok).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The (VNI, address) of every entry of a pinned endpoint table: `map` is
/// [`map_names::LOCAL_ENDPOINTS`] (this host's containers) or
/// [`map_names::REMOTE_ENDPOINTS`] (those of other hosts). Like `bpftool map dump pinned`.
pub fn pinned_endpoints(pin_dir: &Path, map: &'static str) -> Result<Vec<(u32, Ipv4Addr)>, DatapathError> {
    let path = pin_dir.join("maps").join(map);
    let data = MapData::from_pin(&path).map_err(|source| DatapathError::Pinned { path, source })?;
    let keys: Vec<EndpointKey> = if map == map_names::LOCAL_ENDPOINTS {
        let table: HashMap<MapData, EndpointKey, LocalEndpoint> =
            HashMap::try_from(Map::HashMap(data)).map_err(|source| DatapathError::Map { map, source })?;
        table.keys().collect::<Result<_, _>>().map_err(|source| DatapathError::Map { map, source })?
    } else {
        let table: HashMap<MapData, EndpointKey, RemoteEndpoint> =
            HashMap::try_from(Map::HashMap(data)).map_err(|source| DatapathError::Map { map, source })?;
        table.keys().collect::<Result<_, _>>().map_err(|source| DatapathError::Map { map, source })?
    };
    let mut entries: Vec<(u32, Ipv4Addr)> =
        keys.into_iter().map(|k| (k.vni, Ipv4Addr::from(overlay_common::ipv4_octets(k.ip)))).collect();
    entries.sort();
    Ok(entries)
}

/// Every entry of the pinned remote endpoint table as (VNI, address, VTEP): where this
/// host sends each container of another host. Like `bpftool map dump pinned`.
pub fn pinned_remotes(pin_dir: &Path) -> Result<Vec<(u32, Ipv4Addr, Ipv4Addr)>, DatapathError> {
    let map = map_names::REMOTE_ENDPOINTS;
    let path = pin_dir.join("maps").join(map);
    let data = MapData::from_pin(&path).map_err(|source| DatapathError::Pinned { path, source })?;
    let table: HashMap<MapData, EndpointKey, RemoteEndpoint> =
        HashMap::try_from(Map::HashMap(data)).map_err(|source| DatapathError::Map { map, source })?;
    let mut entries = Vec::new();
    for entry in table.iter() {
        let (key, value) = entry.map_err(|source| DatapathError::Map { map, source })?;
        let octets = overlay_common::ipv4_octets;
        entries.push((key.vni, Ipv4Addr::from(octets(key.ip)), Ipv4Addr::from(octets(value.vtep))));
    }
    entries.sort();
    Ok(entries)
}
