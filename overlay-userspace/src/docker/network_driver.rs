//! libnetwork's remote network driver: networks (bound to cluster networks, see
//! `bindings.rs`) and endpoints (made by `endpoints.rs`). Calls that change the state
//! hold its lock throughout.

use std::{net::Ipv4Addr, sync::Arc};

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::{
    bindings::{self, Lookup, MARKERS},
    endpoints,
    error::DriverError,
    ipam_driver::{ADDRESS_SPACE, docker_allocation, parse_ip},
    plugin::{Job, Plugin},
    protocol::{self, CLUSTER_NETWORK_OPTION, GENERIC_OPTIONS, INTERNAL_OPTION},
    state::{Binding, DockerEndpoint, DockerNetwork},
};
use crate::{
    container,
    egress::{PortMapping, Protocol},
    network::{self, NetworkError},
    store::{Store, Transact},
};

/// Docker renames the interface it moves in to this prefix and an index (eth0, eth1…).
const DST_PREFIX: &str = "eth";

fn parse_cidr(value: &str, what: &'static str) -> Result<(Ipv4Addr, u8), DriverError> {
    let net: Ipv4Net = value.parse().map_err(|_| DriverError::NotIpv4Cidr { what, value: value.to_owned() })?;
    Ok((net.addr(), net.prefix_len()))
}

pub async fn create_network<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    r: protocol::CreateNetwork,
) -> Result<Value, DriverError> {
    if network::spec::validate_id(&r.network_id).is_err() {
        return Err(DriverError::NetworkId(r.network_id));
    }
    if !r.ipv6_data.is_empty() {
        return Err(DriverError::Ipv6Network);
    }
    let [data] = r.ipv4_data.as_slice() else {
        return Err(DriverError::SubnetCount);
    };
    if data.address_space != ADDRESS_SPACE {
        return Err(DriverError::NotOurIpam { plugin: p.config.name.clone() });
    }
    if !data.aux_addresses.is_empty() {
        return Err(DriverError::AuxAddress);
    }
    let subnet: Ipv4Net = data.pool.parse().map_err(|_| DriverError::NotASubnet(data.pool.clone()))?;
    let gateway = parse_ip(&data.gateway, "gateway")?;
    let internal = r.options.get(INTERNAL_OPTION).and_then(Value::as_bool).unwrap_or(false);
    // Made for a cluster network (by the mirror or the manager) that may have gone since:
    // it binds to that one, or the creation fails, rather than a new one being made.
    let made_for = r.options.get(GENERIC_OPTIONS).and_then(|o| o.get(CLUSTER_NETWORK_OPTION)).and_then(Value::as_str);
    let mut state = p.state.lock().await;
    if state.networks.contains_key(&r.network_id) {
        return Ok(json!({}));
    }
    let found = bindings::cluster_network_with(p, subnet).await?;
    if let Some(id) = made_for
        && found.as_ref().is_none_or(|record| record.id != id)
    {
        return Err(DriverError::ClusterNetworkGone { id: id.to_owned() });
    }
    let binding = match found {
        Some(record) if record.gateway != gateway => {
            return Err(DriverError::OtherGateway { network: record.name, gateway: record.gateway });
        }
        Some(record) => {
            state.declined.remove(&record.id);
            Binding::Bound { cluster_id: record.id, name: record.name, vni: record.vni }
        }
        None => Binding::Pending,
    };
    if let Binding::Bound { name, .. } = &binding {
        tracing::info!(docker_id = %r.network_id, network = %name, "Docker network bound to the cluster network");
    }
    state.networks.insert(
        r.network_id.clone(),
        DockerNetwork { docker_id: r.network_id.clone(), subnet, gateway, internal, binding, known_to_docker: false },
    );
    state.save(&p.config.state_dir)?;
    drop(state);
    p.bindings_changed.notify_waiters();
    p.submit(Job::SettleNetwork { docker_id: r.network_id });
    Ok(json!({}))
}

/// Docker removes the network whatever the driver answers (it only logs a driver's
/// error), so this never refuses: a network made through Docker is removed from the
/// cluster if nothing is attached on any host; if something is, it stays in the
/// cluster and leaves this host's Docker only (and the mirror leaves it out here). A
/// network made with `overlay network create` is only unbound.
pub async fn delete_network<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    r: protocol::NetworkRef,
) -> Result<Value, DriverError> {
    let mut state = p.state.lock().await;
    let Some(network) = state.networks.get(&r.network_id).cloned() else { return Ok(json!({})) };
    if let Some(cluster_id) = network.cluster_id() {
        let marker = format!("{MARKERS}{cluster_id}");
        if p.backend.store.get(&marker).await?.is_some() {
            match network::remove(&p.backend.store, cluster_id).await {
                Ok(_) | Err(NetworkError::NotFound { .. }) => {
                    p.backend.store.delete(&marker).await?;
                }
                Err(error) => {
                    tracing::warn!("{error}; the network stays in the cluster and leaves this host's Docker only");
                    state.declined.insert(cluster_id.to_owned());
                }
            }
        }
    }
    state.networks.remove(&r.network_id);
    state.save(&p.config.state_dir)?;
    drop(state);
    p.bindings_changed.notify_waiters();
    Ok(json!({}))
}

pub async fn create_endpoint<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    r: protocol::CreateEndpoint,
) -> Result<Value, DriverError> {
    let interface = r.interface.unwrap_or_default();
    if !interface.address_ipv6.is_empty() {
        return Err(DriverError::Ipv6Endpoint);
    }
    if interface.address.is_empty() {
        return Err(DriverError::NoAddress { plugin: p.config.name.clone() });
    }
    if r.endpoint_id.len() < 12 || !r.endpoint_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DriverError::EndpointId(r.endpoint_id));
    }
    let (ip, prefix_len) = parse_cidr(&interface.address, "address")?;
    let ports = match r.options.get(protocol::PORTMAP_OPTION) {
        Some(value) => port_mappings(value)?,
        None => Vec::new(),
    };
    let cluster = bindings::cluster_network(p, Lookup::DockerNetwork(&r.network_id)).await?;
    let mac = if interface.mac_address.is_empty() {
        container::mac_for(ip)
    } else {
        container::parse_mac(&interface.mac_address)?
    };
    let allocation = docker_allocation(p, &cluster.id, ip).await?.map(|a| a.endpoint);
    let host_interface = container::host_interface_name(&r.endpoint_id);
    let endpoint = DockerEndpoint {
        id: r.endpoint_id.clone(),
        docker_network: r.network_id,
        cluster_network: cluster.id,
        vni: cluster.vni,
        ip,
        prefix_len,
        mac,
        allocation,
        peer_interface: format!("op{}", &host_interface[2..]),
        host_interface,
        joined: false,
        container: None,
        aliases: Vec::new(),
        internal: false,
        ports,
    };
    let mut state = p.state.lock().await;
    let mut endpoint = endpoint;
    // An internal network has no way out, and nothing of it is published.
    endpoint.internal = state.networks.get(&endpoint.docker_network).is_some_and(|n| n.internal);
    if endpoint.internal && !endpoint.ports.is_empty() {
        return Err(DriverError::PortMap(
            "the network is internal: nothing of it is reachable from outside, so no port of it can be published"
                .into(),
        ));
    }
    state.endpoints.insert(r.endpoint_id, endpoint);
    state.save(&p.config.state_dir)?;
    // The MAC is the driver's to choose unless the user gave one (--mac-address).
    if interface.mac_address.is_empty() {
        Ok(json!({ "Interface": { "MacAddress": container::format_mac(mac) } }))
    } else {
        Ok(json!({ "Interface": {} }))
    }
}

/// `docker run -p` as libnetwork passes it: each mapping of a fixed host port, on all
/// of the host's addresses, TCP or UDP. What the overlay cannot do as asked is refused
/// rather than done differently.
fn port_mappings(value: &Value) -> Result<Vec<PortMapping>, DriverError> {
    let bindings: Vec<protocol::PortBinding> = serde_json::from_value(value.clone())
        .map_err(|e| DriverError::PortMap(format!("the port map Docker sent does not parse: {e}")))?;
    let mut ports = Vec::new();
    for b in bindings {
        let protocol = match b.proto {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            other => return Err(DriverError::PortMap(format!("protocol {other} is not published: only tcp and udp"))),
        };
        if b.host_port == 0 {
            return Err(DriverError::PortMap(format!(
                "port {} without a host port: give one, -p HOSTPORT:{}",
                b.port, b.port
            )));
        }
        if b.host_port_end != 0 && b.host_port_end != b.host_port {
            return Err(DriverError::PortMap(format!(
                "host port range {}-{}: give one host port per mapping",
                b.host_port, b.host_port_end
            )));
        }
        if let Some(ip) = b.host_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "0.0.0.0" && *ip != "::") {
            return Err(DriverError::PortMap(format!(
                "{ip}:{}: ports are published on all of the host's addresses; leave out the address",
                b.host_port
            )));
        }
        ports.push(PortMapping { host_port: b.host_port, port: b.port, protocol });
    }
    crate::egress::ports::check_unique(&ports).map_err(DriverError::PortMap)?;
    Ok(ports)
}

pub async fn endpoint_info<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    r: protocol::EndpointRef,
) -> Result<Value, DriverError> {
    let state = p.state.lock().await;
    let value = match state.endpoints.get(&r.endpoint_id) {
        Some(e) => json!({
            "overlay.network": e.cluster_network,
            "overlay.vni": e.vni,
            "overlay.host_interface": e.host_interface,
            "overlay.node": p.backend.node_name,
        }),
        None => json!({}),
    };
    Ok(json!({ "Value": value }))
}

pub async fn join<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::Join) -> Result<Value, DriverError> {
    let mut state = p.state.lock().await;
    let Some(mut endpoint) = state.endpoints.get(&r.endpoint_id).cloned() else {
        return Err(DriverError::UnknownEndpoint(r.endpoint_id));
    };
    let network = state.networks.get(&endpoint.docker_network);
    // An internal network has no way out: no default route.
    let gateway = network.filter(|n| !n.internal).map(|n| n.gateway);
    // dockerd's embedded DNS asks the host's resolver from the container's namespace,
    // so the container needs a route to it even with no default route: through the
    // gateway, where the datapath takes the query (overlay-ebpf `resolver.rs`).
    let static_routes = match (p.resolver, network) {
        (Some(resolver), Some(network)) => vec![protocol::StaticRoute {
            destination: format!("{resolver}/32"),
            route_type: protocol::StaticRoute::NEXT_HOP,
            next_hop: network.gateway.to_string(),
        }],
        _ => Vec::new(),
    };
    endpoints::attach(p, &endpoint).await?;
    endpoint.joined = true;
    let answer = protocol::JoinResponse {
        interface_name: protocol::InterfaceName {
            src_name: endpoint.peer_interface.clone(),
            dst_prefix: DST_PREFIX.into(),
        },
        gateway: gateway.map(|g| g.to_string()).unwrap_or_default(),
        static_routes,
    };
    state.endpoints.insert(endpoint.id.clone(), endpoint);
    state.save(&p.config.state_dir)?;
    drop(state);
    p.submit(Job::LearnName { endpoint_id: r.endpoint_id });
    serde_json::to_value(answer).map_err(|source| DriverError::Encode { what: "the Join answer", source })
}

pub async fn leave<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::EndpointRef) -> Result<Value, DriverError> {
    let mut state = p.state.lock().await;
    if let Some(endpoint) = state.endpoints.get_mut(&r.endpoint_id) {
        endpoints::detach(p, endpoint).await;
        endpoint.joined = false;
        state.save(&p.config.state_dir)?;
    }
    Ok(json!({}))
}

pub async fn delete_endpoint<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    r: protocol::EndpointRef,
) -> Result<Value, DriverError> {
    let mut state = p.state.lock().await;
    if let Some(endpoint) = state.endpoints.remove(&r.endpoint_id) {
        // Joined or not: a Join cut short by a kill of the agent made the veth, the
        // datapath entry and the record without saying so in the state.
        endpoints::detach(p, &endpoint).await;
        state.save(&p.config.state_dir)?;
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_macs_parse_as_docker_writes_them() {
        assert_eq!(parse_cidr("10.0.9.3/24", "address").unwrap(), (Ipv4Addr::new(10, 0, 9, 3), 24));
        assert!(parse_cidr("10.0.9.3", "address").is_err());
        let mac = container::parse_mac("02:42:0a:00:09:03").unwrap();
        assert_eq!(mac, [0x02, 0x42, 10, 0, 9, 3]);
        assert_eq!(container::format_mac(mac), "02:42:0a:00:09:03");
        assert!(container::parse_mac("02:42:0a").is_err());
    }
}
