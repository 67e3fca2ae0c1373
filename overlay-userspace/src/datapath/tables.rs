//! Typed writes to the forwarding tables. Each call is one or two map updates; the
//! eBPF side sees each entry appear or disappear atomically.

use std::net::Ipv4Addr;

use aya::maps::{
    Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::Ipv4Net;
use overlay_common::{
    Counter, Direction, EgressDevice, EndpointKey, HostConfig, Interface, LocalEndpoint, Member, NO_NETWORK_SLOT,
    NetworkInfo, RemoteEndpoint, Subnet, capacity, ipv4_key, map_names,
};

use super::{Datapath, DatapathError, attach};

/// An overlay network present on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    pub vni: u32,
    /// ARP for this address is answered with `gateway_mac`.
    pub gateway: Ipv4Addr,
    pub gateway_mac: [u8; 6],
}

/// A container on this host, reached through the host side of its veth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEndpointSpec {
    pub vni: u32,
    pub ip: Ipv4Addr,
    /// The MAC of the container's interface.
    pub mac: [u8; 6],
    /// The host side of the container's veth, in this host's namespace.
    pub host_interface: String,
}

/// A container on another host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEndpointSpec {
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// The VTEP of the host it lives on.
    pub vtep: Ipv4Addr,
}

/// The subnet of an overlay network of the cluster, and whether it has a way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubnetSpec {
    pub subnet: Ipv4Net,
    pub vni: u32,
    /// Its containers reach addresses off the overlay through their host.
    pub egress: bool,
}

pub(super) fn map_err(map: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| match source {
        // E2BIG from the kernel means the hash map has no room left.
        MapError::SyscallError(ref e) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
            DatapathError::MapFull { map, capacity: capacity_of(map) }
        }
        source => DatapathError::Map { map, source },
    }
}

fn capacity_of(map: &str) -> u32 {
    match map {
        map_names::NETWORKS => capacity::NETWORKS,
        map_names::INTERFACES => capacity::INTERFACES,
        map_names::LOCAL_ENDPOINTS => capacity::LOCAL_ENDPOINTS,
        map_names::REMOTE_ENDPOINTS => capacity::REMOTE_ENDPOINTS,
        map_names::MEMBERS => capacity::MEMBERS,
        map_names::SUBNETS => capacity::SUBNETS,
        _ => 0,
    }
}

/// `iface` with its network's gateway and counter slot, or marked as having none.
fn with_network(iface: Interface, network: Option<&NetworkInfo>) -> Interface {
    match network {
        Some(n) => Interface { gateway: n.gateway, gateway_mac: n.gateway_mac, counter_slot: n.counter_slot, ..iface },
        None => Interface { gateway: 0, gateway_mac: [0; 6], counter_slot: NO_NETWORK_SLOT, ..iface },
    }
}

/// `endpoint` with its network's counter slot, or marked as having none.
fn endpoint_with_network(endpoint: LocalEndpoint, network: Option<&NetworkInfo>) -> LocalEndpoint {
    LocalEndpoint { counter_slot: network.map_or(NO_NETWORK_SLOT, |n| n.counter_slot), ..endpoint }
}

/// `remove` that treats an absent key as already removed.
fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(ref e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

impl Datapath {
    pub(super) fn hash_map<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, DatapathError> {
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
        HashMap::try_from(map).map_err(map_err(name))
    }

    pub(super) fn set_host_config(&mut self, config: HostConfig) -> Result<(), DatapathError> {
        let name = map_names::CONFIG;
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
        let mut array: Array<&mut MapData, HostConfig> = Array::try_from(map).map_err(map_err(name))?;
        array.set(0, config, 0).map_err(map_err(name))
    }

    /// Adds (or updates) a network. Its counters start from zero when it is new. The
    /// interfaces and endpoints of its local containers get a copy of it (see
    /// [`Interface`] and [`LocalEndpoint`]).
    pub fn add_network(&mut self, spec: NetworkSpec) -> Result<(), DatapathError> {
        let existing = self.networks()?;
        let slot = match existing.iter().find(|(vni, _)| *vni == spec.vni) {
            Some((_, info)) => info.counter_slot,
            None => {
                let slot = (0..capacity::NET_COUNTERS)
                    .find(|slot| existing.iter().all(|(_, info)| info.counter_slot != *slot))
                    .ok_or(DatapathError::NoCounterSlot(capacity::NET_COUNTERS))?;
                self.reset_network_counters(slot)?;
                slot
            }
        };
        let info = NetworkInfo {
            gateway: ipv4_key(spec.gateway.octets()),
            gateway_mac: spec.gateway_mac,
            _pad: [0; 2],
            counter_slot: slot,
        };
        self.hash_map::<u32, NetworkInfo>(map_names::NETWORKS)?
            .insert(spec.vni, info, 0)
            .map_err(map_err(map_names::NETWORKS))?;
        self.update_network_copies(spec.vni, Some(&info))
    }

    /// Removes a network. Packets for its VNI are then dropped as unknown, also those
    /// its containers still send.
    pub fn remove_network(&mut self, vni: u32) -> Result<(), DatapathError> {
        let mut map = self.hash_map::<u32, NetworkInfo>(map_names::NETWORKS)?;
        ignore_missing(map.remove(&vni)).map_err(map_err(map_names::NETWORKS))?;
        self.update_network_copies(vni, None)
    }

    /// Writes the interfaces and local endpoints an older agent left (see `layout.rs`) in
    /// this layout.
    pub(super) fn migrate(&mut self, migration: super::layout::Migration) -> Result<(), DatapathError> {
        let networks = self.networks()?;
        let network_of = |vni: u32| networks.iter().find(|(v, _)| *v == vni).map(|(_, info)| info);
        let name = map_names::INTERFACES;
        let mut interfaces = self.hash_map::<u32, Interface>(name)?;
        for (ifindex, old) in migration.interfaces {
            let iface = Interface { vni: old.vni, ip: old.ip, mac: old.mac, ..Interface::default() };
            interfaces.insert(ifindex, with_network(iface, network_of(old.vni)), 0).map_err(map_err(name))?;
        }
        let name = map_names::LOCAL_ENDPOINTS;
        let mut endpoints = self.hash_map::<EndpointKey, LocalEndpoint>(name)?;
        for (key, old) in migration.local_endpoints {
            let endpoint = LocalEndpoint { ifindex: old.ifindex, mac: old.mac, ..LocalEndpoint::default() };
            endpoints.insert(key, endpoint_with_network(endpoint, network_of(key.vni)), 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// Rewrites the network's copy in every interface and local endpoint of `vni`
    /// (`network` None: gone).
    fn update_network_copies(&mut self, vni: u32, network: Option<&NetworkInfo>) -> Result<(), DatapathError> {
        self.rewrite_entries::<u32, Interface>(
            map_names::INTERFACES,
            |_, iface| iface.vni == vni,
            |iface| with_network(iface, network),
        )?;
        self.rewrite_entries::<EndpointKey, LocalEndpoint>(
            map_names::LOCAL_ENDPOINTS,
            |key, _| key.vni == vni,
            |endpoint| endpoint_with_network(endpoint, network),
        )
    }

    /// Writes `rewrite` of every entry of the hash map `name` that `picks`.
    fn rewrite_entries<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        picks: impl Fn(&K, &V) -> bool,
        rewrite: impl Fn(V) -> V,
    ) -> Result<(), DatapathError> {
        let mut map = self.hash_map::<K, V>(name)?;
        let picked: Vec<(K, V)> = map
            .iter()
            .filter(|entry| entry.as_ref().map_or(true, |(key, value)| picks(key, value)))
            .collect::<Result<_, _>>()
            .map_err(map_err(name))?;
        for (key, value) in picked {
            map.insert(key, rewrite(value), 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// The networks present, with their counter slots.
    pub fn networks(&mut self) -> Result<Vec<(u32, NetworkInfo)>, DatapathError> {
        let map = self.hash_map::<u32, NetworkInfo>(map_names::NETWORKS)?;
        map.iter().collect::<Result<_, _>>().map_err(map_err(map_names::NETWORKS))
    }

    fn reset_network_counters(&mut self, slot: u32) -> Result<(), DatapathError> {
        let name = map_names::NET_COUNTERS;
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
        let mut array: PerCpuArray<&mut MapData, Counter> = PerCpuArray::try_from(map).map_err(map_err(name))?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Map {
            map: name,
            source: MapError::SyscallError(aya::sys::SyscallError { call: "nr_cpus", io_error: e }),
        })?;
        for direction in Direction::ALL {
            let zeros = PerCpuValues::try_from(vec![Counter::default(); cpus]).map_err(|e| DatapathError::Map {
                map: name,
                source: MapError::SyscallError(aya::sys::SyscallError { call: "nr_cpus", io_error: e }),
            })?;
            array.set(slot * Direction::COUNT + direction as u32, zeros, 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// Attaches the datapath to a container's host-side veth and makes the container
    /// reachable: from its own veth (as its interface) and as a local endpoint. The veth
    /// becomes a port of the host's headroom bridge (see `headroom.rs`).
    pub fn add_local_endpoint(&mut self, spec: &LocalEndpointSpec) -> Result<(), DatapathError> {
        let ifindex = attach::ifindex(&spec.host_interface)?;
        let ip = ipv4_key(spec.ip.octets());
        let network = self.hash_map::<u32, NetworkInfo>(map_names::NETWORKS)?.get(&spec.vni, 0).ok();
        let iface = Interface { vni: spec.vni, ip, mac: spec.mac, ..Interface::default() };
        self.hash_map::<u32, Interface>(map_names::INTERFACES)?
            .insert(ifindex, with_network(iface, network.as_ref()), 0)
            .map_err(map_err(map_names::INTERFACES))?;
        let endpoint = LocalEndpoint { ifindex, mac: spec.mac, ..LocalEndpoint::default() };
        self.hash_map::<EndpointKey, LocalEndpoint>(map_names::LOCAL_ENDPOINTS)?
            .insert(EndpointKey { vni: spec.vni, ip }, endpoint_with_network(endpoint, network.as_ref()), 0)
            .map_err(map_err(map_names::LOCAL_ENDPOINTS))?;
        self.attach_container_interface(&spec.host_interface)?;
        // After the program: a frame the veth passed on before it would be dropped.
        super::headroom::lend_to(&spec.host_interface)
    }

    /// Removes a local container: its address stops resolving at once and its veth's
    /// program is detached (if the veth still exists).
    pub fn remove_local_endpoint(&mut self, spec: &LocalEndpointSpec) -> Result<(), DatapathError> {
        let ip = ipv4_key(spec.ip.octets());
        let mut locals = self.hash_map::<EndpointKey, LocalEndpoint>(map_names::LOCAL_ENDPOINTS)?;
        let key = EndpointKey { vni: spec.vni, ip };
        let ifindex = locals.get(&key, 0).ok().map(|e| e.ifindex);
        ignore_missing(locals.remove(&key)).map_err(map_err(map_names::LOCAL_ENDPOINTS))?;
        if let Some(ifindex) = ifindex {
            let mut interfaces = self.hash_map::<u32, Interface>(map_names::INTERFACES)?;
            ignore_missing(interfaces.remove(&ifindex)).map_err(map_err(map_names::INTERFACES))?;
        }
        self.detach_container_interface(&spec.host_interface)
    }

    /// The VNIs that have a container on this host.
    pub fn local_vnis(&mut self) -> Result<std::collections::BTreeSet<u32>, DatapathError> {
        let map = self.hash_map::<EndpointKey, LocalEndpoint>(map_names::LOCAL_ENDPOINTS)?;
        map.keys().map(|key| key.map(|k| k.vni)).collect::<Result<_, _>>().map_err(map_err(map_names::LOCAL_ENDPOINTS))
    }

    /// Adds (or moves) a container on another host.
    pub fn add_remote_endpoint(&mut self, spec: RemoteEndpointSpec) -> Result<(), DatapathError> {
        let key = EndpointKey { vni: spec.vni, ip: ipv4_key(spec.ip.octets()) };
        let value = RemoteEndpoint { vtep: ipv4_key(spec.vtep.octets()), mac: spec.mac, _pad: [0; 2] };
        self.hash_map::<EndpointKey, RemoteEndpoint>(map_names::REMOTE_ENDPOINTS)?
            .insert(key, value, 0)
            .map_err(map_err(map_names::REMOTE_ENDPOINTS))
    }

    pub fn remove_remote_endpoint(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DatapathError> {
        let key = EndpointKey { vni, ip: ipv4_key(ip.octets()) };
        let mut map = self.hash_map::<EndpointKey, RemoteEndpoint>(map_names::REMOTE_ENDPOINTS)?;
        ignore_missing(map.remove(&key)).map_err(map_err(map_names::REMOTE_ENDPOINTS))
    }

    /// Remote endpoints currently programmed, as (vni, ip, vtep, mac).
    pub fn remote_endpoints(&mut self) -> Result<Vec<RemoteEndpointSpec>, DatapathError> {
        let map = self.hash_map::<EndpointKey, RemoteEndpoint>(map_names::REMOTE_ENDPOINTS)?;
        map.iter()
            .map(|entry| {
                entry.map(|(key, value)| RemoteEndpointSpec {
                    vni: key.vni,
                    ip: Ipv4Addr::from(overlay_common::ipv4_octets(key.ip)),
                    mac: value.mac,
                    vtep: Ipv4Addr::from(overlay_common::ipv4_octets(value.vtep)),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(map_err(map_names::REMOTE_ENDPOINTS))
    }

    /// Allows VXLAN from this host address.
    pub fn add_member(&mut self, vtep: Ipv4Addr) -> Result<(), DatapathError> {
        self.hash_map::<u32, Member>(map_names::MEMBERS)?
            .insert(ipv4_key(vtep.octets()), Member::default(), 0)
            .map_err(map_err(map_names::MEMBERS))
    }

    /// The hosts VXLAN is accepted from.
    pub fn members(&mut self) -> Result<Vec<Ipv4Addr>, DatapathError> {
        let map = self.hash_map::<u32, Member>(map_names::MEMBERS)?;
        map.keys()
            .map(|key| key.map(|k| Ipv4Addr::from(overlay_common::ipv4_octets(k))))
            .collect::<Result<_, _>>()
            .map_err(map_err(map_names::MEMBERS))
    }

    /// Stops accepting VXLAN from this host address.
    pub fn remove_member(&mut self, vtep: Ipv4Addr) -> Result<(), DatapathError> {
        let mut map = self.hash_map::<u32, Member>(map_names::MEMBERS)?;
        ignore_missing(map.remove(&ipv4_key(vtep.octets()))).map_err(map_err(map_names::MEMBERS))
    }

    fn subnets_map(&mut self) -> Result<LpmTrie<&mut MapData, u32, Subnet>, DatapathError> {
        let name = map_names::SUBNETS;
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
        LpmTrie::try_from(map).map_err(map_err(name))
    }

    /// Adds (or updates) an overlay subnet: destinations in it never leave through egress,
    /// and its containers do when `egress` is set.
    pub fn add_subnet(&mut self, spec: SubnetSpec) -> Result<(), DatapathError> {
        let key = Key::new(u32::from(spec.subnet.prefix_len()), ipv4_key(spec.subnet.network().octets()));
        let value = Subnet { vni: spec.vni, flags: if spec.egress { Subnet::EGRESS } else { 0 } };
        self.subnets_map()?.insert(&key, value, 0).map_err(map_err(map_names::SUBNETS))
    }

    pub fn remove_subnet(&mut self, subnet: Ipv4Net) -> Result<(), DatapathError> {
        let key = Key::new(u32::from(subnet.prefix_len()), ipv4_key(subnet.network().octets()));
        ignore_missing(self.subnets_map()?.remove(&key)).map_err(map_err(map_names::SUBNETS))
    }

    /// The overlay subnets programmed.
    pub fn subnets(&mut self) -> Result<Vec<SubnetSpec>, DatapathError> {
        let map = self.subnets_map()?;
        map.iter()
            .map(|entry| {
                entry.map(|(key, value)| SubnetSpec {
                    subnet: Ipv4Net::new(
                        Ipv4Addr::from(overlay_common::ipv4_octets(key.data())),
                        key.prefix_len() as u8,
                    )
                    .unwrap_or_default(),
                    vni: value.vni,
                    egress: value.flags & Subnet::EGRESS != 0,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(map_err(map_names::SUBNETS))
    }

    /// Where containers' packets for addresses off the overlay enter the host's stack:
    /// the ingress of the device `ifindex`, addressed to its `mac`.
    pub fn set_egress_device(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<(), DatapathError> {
        let name = map_names::EGRESS;
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
        let mut array: Array<&mut MapData, EgressDevice> = Array::try_from(map).map_err(map_err(name))?;
        array.set(0, EgressDevice { ifindex, mac, _pad: [0; 2] }, 0).map_err(map_err(name))
    }
}
