//! What this host's datapath should hold, computed from the cluster's topology, and the
//! smallest set of changes that gets it there from what it holds now. Pure functions:
//! the datapath task applies the changes.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;

use crate::{
    container::mac_for,
    datapath::{NetworkSpec, RemoteEndpointSpec, SubnetSpec},
    egress::NetworkRules,
    topology::Topology,
};

/// The tables of one host's datapath (local endpoints are programmed by the container
/// task, which knows their veths).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub networks: BTreeMap<u32, NetworkSpec>,
    pub remotes: BTreeMap<(u32, Ipv4Addr), RemoteEndpointSpec>,
    pub members: BTreeSet<Ipv4Addr>,
    /// Every overlay subnet of the cluster: the datapath keeps their traffic off egress,
    /// and lets out the containers of those that have egress.
    pub subnets: BTreeMap<Ipv4Net, SubnetSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AddNetwork(NetworkSpec),
    RemoveNetwork(u32),
    AddRemote(RemoteEndpointSpec),
    RemoveRemote { vni: u32, ip: Ipv4Addr },
    AddMember(Ipv4Addr),
    RemoveMember(Ipv4Addr),
    AddSubnet(SubnetSpec),
    RemoveSubnet(Ipv4Net),
}

/// The tables node `me` should have: the networks it has a container on, the containers
/// of those networks on other live nodes, every other live node as a member, and the
/// subnet of every network (with egress where the network is not internal and
/// `egress` says the host's egress rules are in place).
pub fn desired(state: &Topology, me: &str, egress: bool) -> Tables {
    let mut tables = Tables::default();
    let local_networks: BTreeSet<&str> =
        state.endpoints.values().filter(|e| e.node_id == me).map(|e| e.network_id.as_str()).collect();
    for network_id in &local_networks {
        if let Some(n) = state.networks.get(*network_id) {
            tables
                .networks
                .insert(n.vni, NetworkSpec { vni: n.vni, gateway: n.gateway, gateway_mac: mac_for(n.gateway) });
        }
    }
    for endpoint in state.endpoints.values() {
        if endpoint.node_id == me || !local_networks.contains(endpoint.network_id.as_str()) {
            continue;
        }
        let (Some(network), Some(vtep)) =
            (state.networks.get(&endpoint.network_id), state.nodes.get(&endpoint.node_id))
        else {
            continue;
        };
        tables.remotes.insert(
            (network.vni, endpoint.ip),
            RemoteEndpointSpec { vni: network.vni, ip: endpoint.ip, mac: endpoint.mac, vtep: *vtep },
        );
    }
    tables.members = state.nodes.iter().filter(|(id, _)| id.as_str() != me).map(|(_, a)| *a).collect();
    for n in state.networks.values() {
        let spec = SubnetSpec { subnet: n.subnet, vni: n.vni, egress: egress && !n.internal };
        tables.subnets.insert(n.subnet, spec);
    }
    tables
}

/// The networks part of the host's egress rules: every network of the cluster.
pub fn egress_rules(state: &Topology) -> Vec<NetworkRules> {
    state
        .networks
        .values()
        .map(|n| NetworkRules { vni: n.vni, name: n.name.clone(), subnet: n.subnet, egress: !n.internal })
        .collect()
}

/// Changes that turn `current` into `desired`. Additions come before removals so a
/// moving entry is never absent, and networks are added before their endpoints.
pub fn changes(current: &Tables, desired: &Tables) -> Vec<Change> {
    let mut out = Vec::new();
    for (vni, spec) in &desired.networks {
        if current.networks.get(vni) != Some(spec) {
            out.push(Change::AddNetwork(*spec));
        }
    }
    for member in desired.members.difference(&current.members) {
        out.push(Change::AddMember(*member));
    }
    for (subnet, spec) in &desired.subnets {
        if current.subnets.get(subnet) != Some(spec) {
            out.push(Change::AddSubnet(*spec));
        }
    }
    for (key, spec) in &desired.remotes {
        if current.remotes.get(key) != Some(spec) {
            out.push(Change::AddRemote(*spec));
        }
    }
    for (vni, ip) in current.remotes.keys() {
        if !desired.remotes.contains_key(&(*vni, *ip)) {
            out.push(Change::RemoveRemote { vni: *vni, ip: *ip });
        }
    }
    for member in current.members.difference(&desired.members) {
        out.push(Change::RemoveMember(*member));
    }
    for subnet in current.subnets.keys() {
        if !desired.subnets.contains_key(subnet) {
            out.push(Change::RemoveSubnet(*subnet));
        }
    }
    for vni in current.networks.keys() {
        if !desired.networks.contains_key(vni) {
            out.push(Change::RemoveNetwork(*vni));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{endpoint::EndpointRecord, topology::NetworkFacts};

    fn ep(id: &str, network: &str, node: &str, ip: [u8; 4]) -> (String, EndpointRecord) {
        let ip = Ipv4Addr::from(ip);
        let record = EndpointRecord {
            id: id.into(),
            network_id: network.into(),
            node_id: node.into(),
            container: format!("c-{id}"),
            aliases: vec![],
            ip,
            mac: mac_for(ip),
        };
        (format!("v1/endpoints/{network}/{id}"), record)
    }

    fn state() -> Topology {
        Topology {
            nodes: [("a", [192, 168, 1, 141]), ("b", [192, 168, 1, 142]), ("c", [192, 168, 1, 143])]
                .into_iter()
                .map(|(id, ip)| (id.to_owned(), Ipv4Addr::from(ip)))
                .collect(),
            networks: [("red", 4096, [10, 0, 9, 1]), ("blue", 4097, [10, 0, 8, 1])]
                .into_iter()
                .map(|(name, vni, gw)| {
                    let gateway = Ipv4Addr::from(gw);
                    let subnet = Ipv4Net::new(gateway, 24).unwrap().trunc();
                    let facts = NetworkFacts { name: name.to_owned(), vni, gateway, subnet, internal: name == "blue" };
                    (name.to_owned(), facts)
                })
                .collect(),
            network_records: Default::default(),
            endpoints: [
                ep("1", "red", "a", [10, 0, 9, 2]),
                ep("2", "red", "b", [10, 0, 9, 3]),
                ep("3", "blue", "b", [10, 0, 8, 2]),
                ep("4", "red", "gone", [10, 0, 9, 9]),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn only_networks_with_a_local_container() {
        let t = desired(&state(), "a", true);
        assert_eq!(t.networks.keys().copied().collect::<Vec<_>>(), vec![4096]);
        // The blue endpoint on b is not programmed on a, nor the one of a dead node.
        assert_eq!(t.remotes.len(), 1);
        let remote = t.remotes[&(4096, Ipv4Addr::new(10, 0, 9, 3))];
        assert_eq!(remote.vtep, Ipv4Addr::new(192, 168, 1, 142));
        assert_eq!(t.members, [Ipv4Addr::new(192, 168, 1, 142), Ipv4Addr::new(192, 168, 1, 143)].into());
    }

    #[test]
    fn every_subnet_is_known_and_only_internal_ones_have_no_egress() {
        let t = desired(&state(), "c", true);
        let red = t.subnets[&"10.0.9.0/24".parse().unwrap()];
        let blue = t.subnets[&"10.0.8.0/24".parse().unwrap()];
        assert_eq!((red.vni, red.egress), (4096, true));
        assert_eq!((blue.vni, blue.egress), (4097, false));
        // Without the host's egress rules nothing gets out.
        assert!(desired(&state(), "c", false).subnets.values().all(|s| !s.egress));
        let rules = egress_rules(&state());
        assert_eq!(rules.iter().filter(|r| r.egress).count(), 1);
    }

    #[test]
    fn node_without_containers_programs_no_network() {
        let t = desired(&state(), "c", true);
        assert!(t.networks.is_empty());
        assert!(t.remotes.is_empty());
        assert_eq!(t.members.len(), 2);
    }

    #[test]
    fn changes_converge_and_are_minimal() {
        let target = desired(&state(), "a", true);
        let steps = changes(&Tables::default(), &target);
        assert_eq!(steps.len(), 1 + 2 + 2 + 1);
        assert!(matches!(steps[0], Change::AddNetwork(_)));
        assert!(changes(&target, &target).is_empty());

        // Node b dies: its endpoint and its membership go, nothing else.
        let mut s = state();
        s.nodes.remove("b");
        let after = desired(&s, "a", true);
        let steps = changes(&target, &after);
        assert_eq!(
            steps,
            vec![
                Change::RemoveRemote { vni: 4096, ip: Ipv4Addr::new(10, 0, 9, 3) },
                Change::RemoveMember(Ipv4Addr::new(192, 168, 1, 142)),
            ]
        );
    }

    #[test]
    fn moved_endpoint_is_updated_in_place() {
        let target = desired(&state(), "a", true);
        let mut s = state();
        s.endpoints.get_mut("v1/endpoints/red/2").unwrap().node_id = "c".into();
        let steps = changes(&target, &desired(&s, "a", true));
        assert_eq!(steps.len(), 1);
        assert!(matches!(steps[0], Change::AddRemote(r) if r.vtep == Ipv4Addr::new(192, 168, 1, 143)));
    }
}
