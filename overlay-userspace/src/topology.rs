//! The cluster's topology as one host follows it from the store: the live nodes and
//! their VTEPs, the networks, and every endpoint. The agent's datapath task computes
//! this host's tables from it (`agent::reconcile`) and the containers' names; the Docker
//! plugin computes the names it serves dockerd and what it mirrors. Kept from one watch
//! of `v1/`; values that do not parse are logged and skipped, never trusted.
//!
//! It reads `cluster` (nodes), `network` (networks) and `endpoint` records, so it sits
//! above those modules rather than inside one of them.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use crate::{
    cluster::{NodeRecord, keys as cluster_keys},
    dns::{DnsContainer, DnsEndpoint, DnsNetwork},
    endpoint::{self, EndpointRecord},
    network::{NetworkRecord, keys as network_keys},
    store::{Entry, WatchEvent, name_under},
};

/// What the datapath and the names depend on.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Live nodes: ID → advertised (VTEP) address.
    pub nodes: BTreeMap<String, Ipv4Addr>,
    /// Networks by ID.
    pub networks: BTreeMap<String, NetworkFacts>,
    /// The same networks as stored: what a host puts back if the store loses them.
    pub network_records: BTreeMap<String, NetworkRecord>,
    /// Endpoints by store key.
    pub endpoints: BTreeMap<String, EndpointRecord>,
}

/// What the datapath and the names need of a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFacts {
    pub name: String,
    pub vni: u32,
    pub gateway: Ipv4Addr,
    pub subnet: ipnet::Ipv4Net,
    pub internal: bool,
}

/// What an update changed in the names containers resolve.
#[derive(Debug, Default)]
pub struct NamesTouched {
    /// Nodes or networks came or went: every container's names may change.
    pub all: bool,
    /// The containers (by name) whose endpoints changed.
    pub containers: BTreeSet<String>,
}

impl NamesTouched {
    pub fn is_empty(&self) -> bool {
        !self.all && self.containers.is_empty()
    }
}

impl Topology {
    /// The topology as of a full listing of the cluster's keys.
    pub fn from_entries(entries: &[Entry]) -> Topology {
        let mut state = Topology::default();
        for entry in entries {
            state.put(&entry.key, &entry.value, &mut NamesTouched::default());
        }
        state
    }

    /// This topology with what `earlier` had and this one lacks: what a host keeps of
    /// the other hosts while they publish theirs again, after the store lost its data
    /// (`cluster::epoch`). Where both have a record, this one's is taken.
    pub fn with_held(&self, earlier: &Topology) -> Topology {
        let mut merged = earlier.clone();
        merged.nodes.extend(self.nodes.iter().map(|(k, v)| (k.clone(), *v)));
        merged.networks.extend(self.networks.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged.network_records.extend(self.network_records.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged.endpoints.extend(self.endpoints.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    }

    /// Applies one change, noting in `touched` whose names it may change.
    pub fn apply(&mut self, event: &WatchEvent, touched: &mut NamesTouched) {
        match event {
            WatchEvent::Put(entry) => self.put(&entry.key, &entry.value, touched),
            WatchEvent::Delete { key, .. } => self.delete(key, touched),
        }
    }

    fn put(&mut self, key: &str, value: &[u8], touched: &mut NamesTouched) {
        if let Some(id) = name_under(key, cluster_keys::NODES) {
            match serde_json::from_slice::<NodeRecord>(value) {
                Ok(NodeRecord { address: IpAddr::V4(address), .. }) => {
                    // Names depend on which nodes are alive, not on what their records
                    // say (a record is rewritten whenever its container count changes).
                    if self.nodes.insert(id.to_owned(), address).is_none() {
                        touched.all = true;
                    }
                }
                Ok(_) => tracing::warn!("node {id} advertises an IPv6 address; the overlay's underlay is IPv4"),
                Err(error) => tracing::warn!("skipping malformed node record {key}: {error}"),
            }
        } else if let Some(id) = name_under(key, network_keys::IDS) {
            match serde_json::from_slice::<NetworkRecord>(value) {
                Ok(network) => {
                    let facts = NetworkFacts {
                        name: network.name.clone(),
                        vni: network.vni,
                        gateway: network.gateway,
                        subnet: network.subnet,
                        internal: network.internal,
                    };
                    self.network_records.insert(id.to_owned(), network);
                    if self.networks.get(id) != Some(&facts) {
                        touched.all = true;
                    }
                    self.networks.insert(id.to_owned(), facts);
                }
                Err(error) => tracing::warn!("skipping malformed network record {key}: {error}"),
            }
        } else if key.starts_with(endpoint::ENDPOINTS)
            && let Some(record) = EndpointRecord::parse(key, value)
        {
            touched.containers.insert(record.container.clone());
            if let Some(old) = self.endpoints.insert(key.to_owned(), record) {
                touched.containers.insert(old.container);
            }
        }
    }

    fn delete(&mut self, key: &str, touched: &mut NamesTouched) {
        if let Some(id) = name_under(key, cluster_keys::NODES) {
            touched.all |= self.nodes.remove(id).is_some();
        } else if let Some(id) = name_under(key, network_keys::IDS) {
            self.network_records.remove(id);
            touched.all |= self.networks.remove(id).is_some();
        } else if let Some(old) = self.endpoints.remove(key) {
            touched.containers.insert(old.container);
        }
    }

    /// The names every container may resolve: networks, and containers with their
    /// addresses and aliases per network (the DNS view is rebuilt from this).
    pub fn dns_records(&self) -> (Vec<DnsNetwork>, Vec<DnsContainer>) {
        let networks =
            self.networks.values().map(|n| DnsNetwork { name: n.name.clone(), internal: n.internal }).collect();
        (networks, self.containers_where(|_| true))
    }

    /// The DNS records of the containers named in `names` that still have an endpoint
    /// on a live node (one pass over the endpoints, whatever the number of names).
    pub fn dns_records_of(&self, names: &BTreeSet<String>) -> Vec<DnsContainer> {
        self.containers_where(|name| names.contains(name))
    }

    fn containers_where(&self, wanted: impl Fn(&str) -> bool) -> Vec<DnsContainer> {
        let mut containers: BTreeMap<&str, DnsContainer> = BTreeMap::new();
        for e in self.endpoints.values() {
            if !wanted(&e.container) {
                continue;
            }
            let Some(network) = self.networks.get(&e.network_id) else { continue };
            // Containers of dead nodes are gone from the overlay: do not resolve them.
            if !self.nodes.contains_key(&e.node_id) {
                continue;
            }
            containers
                .entry(e.container.as_str())
                .or_insert_with(|| DnsContainer {
                    id: e.container.clone(),
                    name: e.container.clone(),
                    endpoints: vec![],
                })
                .endpoints
                .push(DnsEndpoint { network: network.name.clone(), ip: e.ip, aliases: e.aliases.clone() });
        }
        containers.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: serde_json::Value) -> WatchEvent {
        WatchEvent::Put(Entry { key: key.into(), value: value.to_string().into_bytes(), mod_revision: 1, lease: None })
    }

    fn node(id: &str, address: &str, containers: u32) -> WatchEvent {
        put(
            &format!("{}{id}", cluster_keys::NODES),
            serde_json::json!({
                "id": id, "name": id, "address": address, "hostname": id, "kernel_version": "6.18",
                "os": "linux", "cpus": 2, "memory_bytes": 1, "agent_version": "0", "containers": containers,
                "heartbeat_ms": 1000, "ttl_secs": 15, "started_at": 0
            }),
        )
    }

    fn endpoint(id: &str, container: &str, ip: Ipv4Addr) -> WatchEvent {
        let record = EndpointRecord {
            id: id.into(),
            network_id: "net1".into(),
            node_id: "a".into(),
            container: container.into(),
            aliases: vec![],
            ip,
            mac: crate::container::mac_for(ip),
        };
        put(&endpoint::key("net1", id), serde_json::to_value(&record).unwrap())
    }

    #[test]
    fn names_touched_by_each_kind_of_change() {
        let mut state = Topology::default();
        let mut touched = NamesTouched::default();
        state.apply(&node("a", "192.168.1.141", 0), &mut touched);
        assert!(touched.all, "a node that joins may make names resolvable");

        // Its record rewritten (a new container count) changes nobody's names.
        let mut touched = NamesTouched::default();
        state.apply(&node("a", "192.168.1.141", 3), &mut touched);
        assert!(touched.is_empty(), "{touched:?}");

        let mut touched = NamesTouched::default();
        state.apply(&endpoint("e1", "web", Ipv4Addr::new(10, 0, 9, 2)), &mut touched);
        assert!(!touched.all);
        assert_eq!(touched.containers.iter().collect::<Vec<_>>(), ["web"]);

        // The same endpoint now belongs to another container: both names change.
        let mut touched = NamesTouched::default();
        state.apply(&endpoint("e1", "api", Ipv4Addr::new(10, 0, 9, 2)), &mut touched);
        assert_eq!(touched.containers.iter().collect::<Vec<_>>(), ["api", "web"]);

        let mut touched = NamesTouched::default();
        state.apply(&WatchEvent::Delete { key: endpoint::key("net1", "e1"), revision: 2 }, &mut touched);
        assert_eq!(touched.containers.iter().collect::<Vec<_>>(), ["api"]);

        // Keys the names do not depend on touch nothing.
        let mut touched = NamesTouched::default();
        state.apply(&put("v1/health/a", serde_json::json!({"status": "healthy"})), &mut touched);
        assert!(touched.is_empty(), "{touched:?}");

        let mut touched = NamesTouched::default();
        state.apply(&WatchEvent::Delete { key: format!("{}a", cluster_keys::NODES), revision: 3 }, &mut touched);
        assert!(touched.all, "a node that leaves hides its containers");
    }

    #[test]
    fn held_topology_keeps_what_was_lost_and_takes_what_came_back() {
        let mut earlier = Topology::default();
        let mut touched = NamesTouched::default();
        for event in [node("a", "192.168.1.141", 1), endpoint("e1", "api", Ipv4Addr::new(10, 0, 9, 2))] {
            earlier.apply(&event, &mut touched);
        }
        // After the loss only the node came back, at another address.
        let mut now = Topology::default();
        now.apply(&node("a", "192.168.1.142", 1), &mut touched);
        let held = now.with_held(&earlier);
        assert_eq!(held.nodes["a"], Ipv4Addr::new(192, 168, 1, 142));
        assert_eq!(held.endpoints.len(), 1, "the endpoint not yet published again is kept");
        assert!(now.endpoints.is_empty());
    }
}
