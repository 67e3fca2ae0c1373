//! The agent's copy of the cluster state the datapath depends on, kept from one watch
//! on the store. Values that do not parse are logged and skipped, never trusted.

use std::net::IpAddr;

use crate::{
    agent::reconcile::{ClusterState, NetworkFacts},
    cluster::{NodeRecord, keys as cluster_keys},
    endpoint::{self, EndpointRecord},
    network::{NetworkRecord, keys as network_keys},
    store::{Entry, WatchEvent},
};

impl ClusterState {
    /// The state as of a full listing of the cluster's keys.
    pub fn from_entries(entries: &[Entry]) -> ClusterState {
        let mut state = ClusterState::default();
        for entry in entries {
            state.put(&entry.key, &entry.value);
        }
        state
    }

    pub fn apply(&mut self, event: &WatchEvent) {
        match event {
            WatchEvent::Put(entry) => self.put(&entry.key, &entry.value),
            WatchEvent::Delete { key, .. } => self.delete(key),
        }
    }

    fn put(&mut self, key: &str, value: &[u8]) {
        if let Some(id) = cluster_keys::id_of(key, cluster_keys::NODES) {
            match serde_json::from_slice::<NodeRecord>(value) {
                Ok(NodeRecord { address: IpAddr::V4(address), .. }) => {
                    self.nodes.insert(id.to_owned(), address);
                }
                Ok(_) => tracing::warn!("node {id} advertises an IPv6 address; the overlay's underlay is IPv4"),
                Err(error) => tracing::warn!("skipping malformed node record {key}: {error}"),
            }
        } else if let Some(id) = network_keys::leaf(key, network_keys::IDS) {
            match serde_json::from_slice::<NetworkRecord>(value) {
                Ok(network) => {
                    let facts = NetworkFacts {
                        name: network.name,
                        vni: network.vni,
                        gateway: network.gateway,
                        internal: network.internal,
                    };
                    self.networks.insert(id.to_owned(), facts);
                }
                Err(error) => tracing::warn!("skipping malformed network record {key}: {error}"),
            }
        } else if key.starts_with(endpoint::ENDPOINTS)
            && let Some(record) = EndpointRecord::parse(key, value)
        {
            self.endpoints.insert(key.to_owned(), record);
        }
    }

    fn delete(&mut self, key: &str) {
        if let Some(id) = cluster_keys::id_of(key, cluster_keys::NODES) {
            self.nodes.remove(id);
        } else if let Some(id) = network_keys::leaf(key, network_keys::IDS) {
            self.networks.remove(id);
        } else {
            self.endpoints.remove(key);
        }
    }
}

impl ClusterState {
    /// The names every container may resolve: networks, and containers with their
    /// addresses and aliases per network (the DNS view is rebuilt from this).
    pub fn dns_records(&self) -> (Vec<crate::dns::NetworkRecord>, Vec<crate::dns::ContainerRecord>) {
        use std::collections::BTreeMap;

        use crate::dns::{ContainerRecord, Endpoint, NetworkRecord};
        let networks =
            self.networks.values().map(|n| NetworkRecord { name: n.name.clone(), internal: n.internal }).collect();
        let mut containers: BTreeMap<&str, ContainerRecord> = BTreeMap::new();
        for e in self.endpoints.values() {
            let Some(network) = self.networks.get(&e.network_id) else { continue };
            // Containers of dead nodes are gone from the overlay: do not resolve them.
            if !self.nodes.contains_key(&e.node_id) {
                continue;
            }
            containers
                .entry(e.container.as_str())
                .or_insert_with(|| ContainerRecord {
                    id: e.container.clone(),
                    name: e.container.clone(),
                    endpoints: vec![],
                })
                .endpoints
                .push(Endpoint { network: network.name.clone(), ip: e.ip, aliases: e.aliases.clone() });
        }
        (networks, containers.into_values().collect())
    }
}
