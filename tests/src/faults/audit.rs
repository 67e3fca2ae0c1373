//! What the fault scenarios check in the store: every container that should run runs,
//! with one endpoint and one address per network, and nothing else is allocated.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use overlay::{
    container::record::{ContainerRecord, ContainerStatus, State},
    endpoint::EndpointRecord,
    network::ipam::Allocation,
    store::Entry,
};

/// What [`audit`] found in one listing of `v1/`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Audit {
    /// Containers placed on a node.
    pub containers: usize,
    pub endpoints: usize,
    pub allocations: usize,
    /// Addresses held by more than one endpoint of a network.
    pub duplicate_addresses: usize,
    /// Everything that is not as it should be, in words.
    pub problems: Vec<String>,
}

impl Audit {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.duplicate_addresses == 0
    }
}

/// Checks a listing of `v1/`:
/// - every placed container has a `running` status and one endpoint per network;
/// - every endpoint belongs to a container of the store (`foreign_endpoints` names the
///   containers of endpoints made by someone else, e.g. Docker's);
/// - the IPAM's allocations are exactly the endpoints' addresses: same network, address
///   and endpoint, each address once.
pub fn audit(entries: &[Entry], foreign_endpoints: &BTreeSet<String>) -> Audit {
    let mut audit = Audit::default();
    let mut containers = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    let mut endpoints: Vec<EndpointRecord> = Vec::new();
    let mut allocations: Vec<Allocation> = Vec::new();
    let mut ipam_endpoints: BTreeMap<(String, String), Ipv4Addr> = BTreeMap::new();
    for entry in entries {
        let key = entry.key.as_str();
        if let Some(name) = key.strip_prefix("v1/containers/") {
            match serde_json::from_slice::<ContainerRecord>(&entry.value) {
                Ok(record) => {
                    containers.insert(name.to_owned(), record);
                }
                Err(e) => audit.problems.push(format!("{key}: {e}")),
            }
        } else if let Some(name) = key.strip_prefix("v1/container-status/") {
            match serde_json::from_slice::<ContainerStatus>(&entry.value) {
                Ok(status) => {
                    statuses.insert(name.to_owned(), status);
                }
                Err(e) => audit.problems.push(format!("{key}: {e}")),
            }
        } else if key.starts_with("v1/endpoints/") {
            match EndpointRecord::parse(key, &entry.value) {
                Some(record) => endpoints.push(record),
                None => audit.problems.push(format!("{key}: not an endpoint record")),
            }
        } else if let Some(rest) = key.strip_prefix("v1/ipam/") {
            let parts: Vec<&str> = rest.split('/').collect();
            match parts.as_slice() {
                [_, "addresses", _] => match serde_json::from_slice::<Allocation>(&entry.value) {
                    Ok(allocation) => allocations.push(allocation),
                    Err(e) => audit.problems.push(format!("{key}: {e}")),
                },
                // The address as text, as the allocator writes it.
                [network, "endpoints", endpoint] => match String::from_utf8_lossy(&entry.value).trim().parse() {
                    Ok(ip) => {
                        ipam_endpoints.insert(((*network).to_owned(), (*endpoint).to_owned()), ip);
                    }
                    Err(e) => audit.problems.push(format!("{key}: {e}")),
                },
                _ => audit.problems.push(format!("{key}: unexpected IPAM key")),
            }
        }
    }
    let placed: BTreeMap<&String, &ContainerRecord> = containers.iter().filter(|(_, r)| r.node_id.is_some()).collect();
    audit.containers = placed.len();
    audit.endpoints = endpoints.len();
    audit.allocations = allocations.len();
    for (name, record) in &placed {
        match statuses.get(*name) {
            Some(status) if status.state == State::Running => {}
            Some(status) => {
                audit.problems.push(format!("container {name} is {:?}: {:?}", status.state, status.message))
            }
            None => audit.problems.push(format!("container {name} has no status")),
        }
        let mine = endpoints.iter().filter(|e| &e.container == *name).count();
        if mine != record.networks.len() {
            audit
                .problems
                .push(format!("container {name} has {mine} endpoint(s) for {} network(s)", record.networks.len()));
        }
    }
    for name in statuses.keys().filter(|n| !placed.contains_key(n)) {
        audit.problems.push(format!("status of {name}, which is not a placed container"));
    }
    let mut by_address: BTreeMap<(String, Ipv4Addr), Vec<String>> = BTreeMap::new();
    for endpoint in &endpoints {
        by_address.entry((endpoint.network_id.clone(), endpoint.ip)).or_default().push(endpoint.container.clone());
        if !placed.contains_key(&endpoint.container) && !foreign_endpoints.contains(&endpoint.container) {
            audit.problems.push(format!("endpoint {} of {} has no container", endpoint.ip, endpoint.container));
        }
    }
    for ((_, ip), holders) in by_address.iter().filter(|(_, h)| h.len() > 1) {
        audit.duplicate_addresses += holders.len() - 1;
        audit.problems.push(format!("{ip} is held by {holders:?}"));
    }
    let from_endpoints: BTreeSet<(String, Ipv4Addr, String)> =
        endpoints.iter().map(|e| (e.network_id.clone(), e.ip, e.id.clone())).collect();
    let from_ipam: BTreeSet<(String, Ipv4Addr, String)> =
        allocations.iter().map(|a| (a.network_id.clone(), a.address, a.endpoint.clone())).collect();
    for (network, ip, endpoint) in from_ipam.difference(&from_endpoints) {
        audit
            .problems
            .push(format!("{ip} is allocated to endpoint {endpoint:.12} of {network:.12}, which is not live"));
    }
    for (_, ip, endpoint) in from_endpoints.difference(&from_ipam) {
        audit.problems.push(format!("endpoint {endpoint:.12} uses {ip}, which the IPAM has not allocated to it"));
    }
    let by_pair: BTreeSet<(String, Ipv4Addr, String)> =
        ipam_endpoints.iter().map(|((network, endpoint), ip)| (network.clone(), *ip, endpoint.clone())).collect();
    if by_pair != from_ipam {
        audit.problems.push(format!(
            "the IPAM's address keys and endpoint keys disagree: {:?}",
            by_pair.symmetric_difference(&from_ipam).collect::<Vec<_>>()
        ));
    }
    audit
}
