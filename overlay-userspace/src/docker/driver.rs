//! The protocol's operations. Each returns the JSON answer or a message for the
//! protocol's error field. Operations that change the state hold its lock throughout,
//! so dockerd's calls (and the background tasks) never interleave halfway.

use std::{
    net::Ipv4Addr,
    os::fd::AsFd,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::{
    ADDRESS_SPACE, MARKERS, Plugin,
    protocol::{self, GATEWAY_REQUEST, INTERNAL_OPTION, REQUEST_ADDRESS_TYPE},
    state::{Binding, DockerEndpoint, DockerNetwork},
    tasks,
};
use crate::{
    container,
    datapath::LocalEndpointSpec,
    endpoint::{self, EndpointRecord},
    netlink::VethSpec,
    network::ipam::{self, Allocation, Release},
    network::{self, NetworkError, NetworkRecord, spec::first_host, subnet::overlaps},
    store::{Store, Transact},
};

/// How long an address or endpoint request waits for a network whose cluster side is
/// still being created.
const PENDING_WAIT: Duration = Duration::from_secs(15);
/// Docker renames the interface it moves in to this prefix and an index (eth0, eth1…).
const DST_PREFIX: &str = "eth";

type Outcome = Result<Value, String>;

fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn parse_ip(value: &str, what: &str) -> Result<Ipv4Addr, String> {
    value.split('/').next().unwrap_or_default().parse().map_err(|_| format!("{what} {value:?} is not an IPv4 address"))
}

fn parse_cidr(value: &str, what: &str) -> Result<(Ipv4Addr, u8), String> {
    let net: Ipv4Net = value.parse().map_err(|_| format!("{what} {value:?} is not an IPv4 address/length"))?;
    Ok((net.addr(), net.prefix_len()))
}

/// The cluster network whose subnet is exactly `subnet`.
async fn cluster_network_with<S: Store + Transact>(
    p: &Plugin<S>,
    subnet: Ipv4Net,
) -> Result<Option<NetworkRecord>, String> {
    Ok(network::list(&p.backend.store).await.map_err(text)?.into_iter().find(|n| n.subnet == subnet))
}

/// The cluster network (ID, VNI) a Docker network of this host is bound to, or the
/// one holding `subnet` when no Docker network is (yet); waits for a pending binding.
async fn bound<S: Store + Transact>(
    p: &Plugin<S>,
    docker_network: Option<&str>,
    subnet: Option<Ipv4Net>,
) -> Result<(String, u32, Ipv4Addr), String> {
    let deadline = Instant::now() + PENDING_WAIT;
    loop {
        let changed = p.bindings_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let state = p.state.lock().await;
            let network = match (docker_network, subnet) {
                (Some(id), _) => state.networks.get(id),
                (None, Some(subnet)) => state.network_with_subnet(subnet),
                (None, None) => None,
            };
            match network.map(|n| (n, &n.binding)) {
                Some((n, Binding::Bound { cluster_id, vni, .. })) => return Ok((cluster_id.clone(), *vni, n.gateway)),
                Some((_, Binding::Failed { message })) => return Err(message.clone()),
                Some((_, Binding::Pending)) => {}
                None => {
                    if let Some(id) = docker_network {
                        return Err(format!("network {id} is not an overlay network of this host's Docker"));
                    }
                    let subnet = subnet.unwrap_or_default();
                    drop(state);
                    return match cluster_network_with(p, subnet).await? {
                        Some(record) => Ok((record.id, record.vni, record.gateway)),
                        None => Err(format!(
                            "no overlay network has subnet {subnet} (auxiliary addresses are not supported)"
                        )),
                    };
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, changed).await.is_err() {
            return Err("the cluster network is still being created; try again".into());
        }
    }
}

pub async fn request_pool<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::RequestPool) -> Outcome {
    if r.v6 || r.pool.contains(':') {
        return Err("the overlay IPAM is IPv4 only: leave out --ipv6 and IPv6 subnets".into());
    }
    if !r.address_space.is_empty() && r.address_space != ADDRESS_SPACE {
        return Err(format!(
            "unknown address space {:?}; the overlay IPAM has only {ADDRESS_SPACE:?}",
            r.address_space
        ));
    }
    if !r.sub_pool.is_empty() {
        return Err("--ip-range is not supported by the overlay IPAM; give only --subnet".into());
    }
    let subnet = if r.pool.is_empty() {
        let mut taken: Vec<network::Taken> = network::list(&p.backend.store)
            .await
            .map_err(text)?
            .into_iter()
            .map(|n| network::Taken::Network { name: n.name, subnet: n.subnet })
            .collect();
        for host in network::host::read_published(&p.backend.store).await.map_err(text)? {
            taken.extend(host.taken());
        }
        let state = p.state.lock().await;
        taken.extend(
            state.networks.values().map(|n| network::Taken::Network { name: n.docker_id.clone(), subnet: n.subnet }),
        );
        p.config.subnet_pool.choose(&taken).map_err(text)?
    } else {
        network::spec::parse_addressing(&r.pool, None, None).map_err(text)?.subnet
    };
    if let Some(n) = p.state.lock().await.network_with_subnet(subnet) {
        return Err(format!("subnet {subnet} is already used by Docker network {} on this host", n.docker_id));
    }
    for other in network::list(&p.backend.store).await.map_err(text)? {
        if other.subnet != subnet && overlaps(other.subnet, subnet) {
            return Err(text(NetworkError::OverlapsNetwork { subnet, other: other.name, other_subnet: other.subnet }));
        }
    }
    Ok(json!({ "PoolID": subnet.to_string(), "Pool": subnet.to_string(), "Data": {} }))
}

fn pool_subnet(pool_id: &str) -> Result<Ipv4Net, String> {
    pool_id.parse().map_err(|_| format!("unknown pool {pool_id:?}: pools of the overlay IPAM are subnets"))
}

pub async fn request_address<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::RequestAddress) -> Outcome {
    let subnet = pool_subnet(&r.pool_id)?;
    let requested = if r.address.is_empty() { None } else { Some(parse_ip(&r.address, "address")?) };
    let options = r.options.unwrap_or_default();
    let answer = |ip: Ipv4Addr| Ok(json!({ "Address": format!("{ip}/{}", subnet.prefix_len()), "Data": {} }));
    if options.get(REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(GATEWAY_REQUEST) {
        // The gateway is the cluster network's; it is never allocated to an endpoint.
        if let Some(record) = cluster_network_with(p, subnet).await? {
            return match requested {
                Some(ip) if ip != record.gateway => {
                    Err(format!("network {} has gateway {}; give that --gateway or none", record.name, record.gateway))
                }
                _ => answer(record.gateway),
            };
        }
        let gateway = requested.unwrap_or_else(|| first_host(subnet));
        if !subnet.contains(&gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
            return Err(format!("gateway {gateway} is not a host address of {subnet}"));
        }
        return answer(gateway);
    }
    let (cluster_id, _, _) = bound(p, None, Some(subnet)).await?;
    let allocation = format!("docker-{:016x}{:08x}", rand::random::<u64>(), rand::random::<u32>());
    let ip = p
        .backend
        .ipam
        .allocate(&cluster_id, &allocation, &p.backend.node_id, p.lease_id(), requested)
        .await
        .map_err(text)?;
    answer(ip)
}

/// This node's allocation of `ip` in `cluster_id`, if there is one.
async fn my_allocation<S: Store + Transact>(
    p: &Plugin<S>,
    cluster_id: &str,
    ip: Ipv4Addr,
) -> Result<Option<Allocation>, String> {
    let entry = p.backend.store.get(&ipam::keys::address(cluster_id, ip)).await.map_err(text)?;
    Ok(entry
        .and_then(|e| serde_json::from_slice::<Allocation>(&e.value).ok())
        .filter(|a| a.node == p.backend.node_id && a.endpoint.starts_with("docker-")))
}

pub async fn release_address<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::ReleaseAddress) -> Outcome {
    let subnet = pool_subnet(&r.pool_id)?;
    let ip = parse_ip(&r.address, "address")?;
    let cluster = { p.state.lock().await.network_with_subnet(subnet).and_then(|n| n.cluster_id().map(str::to_owned)) };
    let cluster = match cluster {
        Some(id) => Some(id),
        None => cluster_network_with(p, subnet).await?.map(|n| n.id),
    };
    // No cluster network: nothing was allocated (a gateway of a network never created).
    let Some(cluster_id) = cluster else { return Ok(json!({})) };
    if let Some(allocation) = my_allocation(p, &cluster_id, ip).await? {
        p.backend.ipam.release(&cluster_id, &Release::Endpoint(allocation.endpoint)).await.map_err(text)?;
        tracing::info!(%ip, network = %cluster_id, "Docker address released");
    }
    Ok(json!({}))
}

pub async fn create_network<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::CreateNetwork) -> Outcome {
    if network::spec::validate_id(&r.network_id).is_err() {
        return Err(format!("NetworkID {:?} is not 12 to 64 lowercase hexadecimal digits", r.network_id));
    }
    if !r.ipv6_data.is_empty() {
        return Err("the overlay driver is IPv4 only: leave out --ipv6".into());
    }
    let [data] = r.ipv4_data.as_slice() else {
        return Err("the overlay driver takes exactly one IPv4 subnet".into());
    };
    if data.address_space != ADDRESS_SPACE {
        return Err(format!(
            "the overlay driver needs addresses from the cluster: add --ipam-driver {} to docker network create",
            p.config.name
        ));
    }
    if !data.aux_addresses.is_empty() {
        return Err("--aux-address is not supported by the overlay driver".into());
    }
    let subnet: Ipv4Net = data.pool.parse().map_err(|_| format!("pool {:?} is not an IPv4 subnet", data.pool))?;
    let gateway = parse_ip(&data.gateway, "gateway")?;
    let internal = r.options.get(INTERNAL_OPTION).and_then(Value::as_bool).unwrap_or(false);
    let mut state = p.state.lock().await;
    if state.networks.contains_key(&r.network_id) {
        return Ok(json!({}));
    }
    let binding = match cluster_network_with(p, subnet).await? {
        Some(record) if record.gateway != gateway => {
            return Err(format!("network {} has gateway {}; give that --gateway or none", record.name, record.gateway));
        }
        Some(record) => {
            state.declined.remove(&record.id);
            Binding::Bound { cluster_id: record.id, name: record.name, vni: record.vni }
        }
        None => Binding::Pending,
    };
    let pending = binding == Binding::Pending;
    if let Binding::Bound { name, .. } = &binding {
        tracing::info!(docker_id = %r.network_id, network = %name, "Docker network bound to the cluster network");
    }
    state.networks.insert(
        r.network_id.clone(),
        DockerNetwork { docker_id: r.network_id.clone(), subnet, gateway, internal, binding },
    );
    state.save(&p.config.state_dir).map_err(text)?;
    drop(state);
    p.bindings_changed.notify_waiters();
    if pending {
        tokio::spawn(tasks::bind_new_network(p.clone(), r.network_id));
    }
    Ok(json!({}))
}

/// Docker removes the network whatever the driver answers (it only logs a driver's
/// error), so this never refuses: a network made through Docker is removed from the
/// cluster if nothing is attached on any host; if something is, it stays in the
/// cluster and leaves this host's Docker only (and the mirror leaves it out here). A
/// network made with `overlay network create` is only unbound.
pub async fn delete_network<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::NetworkRef) -> Outcome {
    let mut state = p.state.lock().await;
    let Some(network) = state.networks.get(&r.network_id).cloned() else { return Ok(json!({})) };
    if let Some(cluster_id) = network.cluster_id() {
        let marker = format!("{MARKERS}{cluster_id}");
        if p.backend.store.get(&marker).await.map_err(text)?.is_some() {
            match network::remove(&p.backend.store, cluster_id).await {
                Ok(_) | Err(NetworkError::NotFound { .. }) => {
                    p.backend.store.delete(&marker).await.map_err(text)?;
                }
                Err(error) => {
                    tracing::warn!("{error}; the network stays in the cluster and leaves this host's Docker only");
                    state.declined.insert(cluster_id.to_owned());
                }
            }
        }
    }
    state.networks.remove(&r.network_id);
    state.save(&p.config.state_dir).map_err(text)?;
    drop(state);
    p.bindings_changed.notify_waiters();
    Ok(json!({}))
}

pub async fn create_endpoint<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::CreateEndpoint) -> Outcome {
    let interface = r.interface.unwrap_or_default();
    if !interface.address_ipv6.is_empty() {
        return Err("the overlay driver is IPv4 only".into());
    }
    if interface.address.is_empty() {
        return Err(format!("no IPv4 address for the endpoint: the network must use --ipam-driver {}", p.config.name));
    }
    if r.endpoint_id.len() < 12 || !r.endpoint_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("endpoint ID {:?} is not hexadecimal", r.endpoint_id));
    }
    let (ip, prefix_len) = parse_cidr(&interface.address, "address")?;
    let (cluster_id, vni, _) = bound(p, Some(&r.network_id), None).await?;
    let mac = if interface.mac_address.is_empty() {
        container::mac_for(ip)
    } else {
        container::parse_mac(&interface.mac_address)?
    };
    let allocation = my_allocation(p, &cluster_id, ip).await?.map(|a| a.endpoint);
    let host_interface = container::host_interface_name(&r.endpoint_id);
    let endpoint = DockerEndpoint {
        id: r.endpoint_id.clone(),
        docker_network: r.network_id,
        cluster_network: cluster_id,
        vni,
        ip,
        prefix_len,
        mac,
        allocation,
        peer_interface: format!("op{}", &host_interface[2..]),
        host_interface,
        joined: false,
        container: None,
        aliases: Vec::new(),
    };
    let mut state = p.state.lock().await;
    state.endpoints.insert(r.endpoint_id, endpoint);
    state.save(&p.config.state_dir).map_err(text)?;
    // The MAC is the driver's to choose unless the user gave one (--mac-address).
    if interface.mac_address.is_empty() {
        Ok(json!({ "Interface": { "MacAddress": container::format_mac(mac) } }))
    } else {
        Ok(json!({ "Interface": {} }))
    }
}

pub async fn endpoint_info<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::EndpointRef) -> Outcome {
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

/// The record other hosts learn the endpoint from (datapath and names).
pub fn record_of<S>(p: &Plugin<S>, e: &DockerEndpoint) -> EndpointRecord {
    EndpointRecord {
        id: e.id.clone(),
        network_id: e.cluster_network.clone(),
        node_id: p.backend.node_id.clone(),
        container: e.container.clone().unwrap_or_else(|| format!("docker-{}", e.id.get(..12).unwrap_or(&e.id))),
        aliases: e.aliases.clone(),
        ip: e.ip,
        mac: e.mac,
    }
}

/// Publishes the endpoint under the node's lease.
pub async fn publish<S: Store>(p: &Plugin<S>, e: &DockerEndpoint) -> Result<(), String> {
    let record = record_of(p, e);
    let value = serde_json::to_vec(&record).map_err(text)?;
    p.backend.store.put(&endpoint::key(&record.network_id, &record.id), value, Some(p.lease_id())).await.map_err(text)
}

fn local_spec(e: &DockerEndpoint) -> LocalEndpointSpec {
    LocalEndpointSpec { vni: e.vni, ip: e.ip, mac: e.mac, host_interface: e.host_interface.clone() }
}

/// The veth (`ip link add ovX mtu M type veth peer name opX address MAC mtu M`, both in
/// the host's namespace: dockerd moves the peer into the container), the datapath on
/// the host side, and the endpoint record.
async fn attach<S: Store + Transact>(p: &Plugin<S>, e: &DockerEndpoint) -> Result<(), String> {
    p.backend.host.delete_link(&e.host_interface).await.map_err(text)?;
    let here =
        std::fs::File::open("/proc/thread-self/ns/net").map_err(|err| format!("opening this namespace: {err}"))?;
    p.backend
        .host
        .create_veth(&VethSpec {
            name: &e.host_interface,
            peer_name: &e.peer_interface,
            peer_netns: here.as_fd(),
            peer_mac: Some(e.mac),
            mtu: p.config.mtu,
        })
        .await
        .map_err(text)?;
    let rest = async {
        p.backend.host.set_up(&e.host_interface).await.map_err(text)?;
        p.backend.datapath.lock().await.add_local_endpoint(&local_spec(e)).map_err(text)?;
        publish(p, e).await
    };
    if let Err(error) = rest.await {
        detach(p, e).await;
        return Err(error);
    }
    Ok(())
}

/// Undoes [`attach`], ignoring what is already gone.
pub async fn detach<S: Store>(p: &Plugin<S>, e: &DockerEndpoint) {
    if let Err(error) = p.backend.datapath.lock().await.remove_local_endpoint(&local_spec(e)) {
        tracing::debug!("endpoint {}: datapath removal: {error}", e.id);
    }
    if let Err(error) = p.backend.store.delete(&endpoint::key(&e.cluster_network, &e.id)).await {
        tracing::warn!("endpoint {}: removing its record: {error}", e.id);
    }
    if let Err(error) = p.backend.host.delete_link(&e.host_interface).await {
        tracing::warn!("endpoint {}: {error}", e.id);
    }
}

pub async fn join<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::Join) -> Outcome {
    let mut state = p.state.lock().await;
    let Some(mut endpoint) = state.endpoints.get(&r.endpoint_id).cloned() else {
        return Err(format!("unknown endpoint {}", r.endpoint_id));
    };
    // An internal network has no way out: no default route.
    let gateway = state.networks.get(&endpoint.docker_network).filter(|n| !n.internal).map(|n| n.gateway);
    attach(p, &endpoint).await?;
    endpoint.joined = true;
    let answer = protocol::JoinResponse {
        interface_name: protocol::InterfaceName {
            src_name: endpoint.peer_interface.clone(),
            dst_prefix: DST_PREFIX.into(),
        },
        gateway: gateway.map(|g| g.to_string()).unwrap_or_default(),
    };
    state.endpoints.insert(endpoint.id.clone(), endpoint);
    state.save(&p.config.state_dir).map_err(text)?;
    drop(state);
    tokio::spawn(tasks::learn_name(p.clone(), r.endpoint_id));
    serde_json::to_value(answer).map_err(text)
}

pub async fn leave<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::EndpointRef) -> Outcome {
    let mut state = p.state.lock().await;
    if let Some(endpoint) = state.endpoints.get_mut(&r.endpoint_id) {
        detach(p, endpoint).await;
        endpoint.joined = false;
        state.save(&p.config.state_dir).map_err(text)?;
    }
    Ok(json!({}))
}

pub async fn delete_endpoint<S: Store + Transact>(p: &Arc<Plugin<S>>, r: protocol::EndpointRef) -> Outcome {
    let mut state = p.state.lock().await;
    if let Some(endpoint) = state.endpoints.remove(&r.endpoint_id) {
        if endpoint.joined {
            detach(p, &endpoint).await;
        }
        state.save(&p.config.state_dir).map_err(text)?;
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
        assert_eq!(parse_ip("10.0.9.1/24", "gateway").unwrap(), Ipv4Addr::new(10, 0, 9, 1));
        assert!(parse_ip("fe80::1", "gateway").is_err());
        let mac = container::parse_mac("02:42:0a:00:09:03").unwrap();
        assert_eq!(mac, [0x02, 0x42, 10, 0, 9, 3]);
        assert_eq!(container::format_mac(mac), "02:42:0a:00:09:03");
        assert!(container::parse_mac("02:42:0a").is_err());
        assert_eq!(pool_subnet("10.0.9.0/24").unwrap().to_string(), "10.0.9.0/24");
        assert!(pool_subnet("pool-1").unwrap_err().contains("unknown pool"));
    }
}
