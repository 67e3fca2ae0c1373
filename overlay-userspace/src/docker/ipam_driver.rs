//! libnetwork's remote IPAM driver: pools are the cluster networks' subnets, addresses
//! come from the cluster IPAM, attached to the node's lease. One address space.

use std::{net::Ipv4Addr, sync::Arc};

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::{
    bindings::{self, Lookup},
    error::DriverError,
    plugin::Plugin,
    protocol::{self, GATEWAY_REQUEST, REQUEST_ADDRESS_TYPE},
};
use crate::{
    network::{
        self, NetworkError,
        ipam::{self, Allocation, Release},
        spec::first_host,
        subnet::overlaps,
    },
    store::{Store, Transact},
};

/// The IPAM's one address space (local and global): the cluster's subnets.
pub const ADDRESS_SPACE: &str = "OverlayCluster";
/// Allocations the plugin makes are named `docker-` and random digits, so that they
/// can be told from the agent's own.
const ALLOCATION_PREFIX: &str = "docker-";

/// An address as Docker writes it (`10.0.9.1` or `10.0.9.1/24`).
pub fn parse_ip(value: &str, what: &'static str) -> Result<Ipv4Addr, DriverError> {
    value
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| DriverError::NotIpv4 { what, value: value.to_owned() })
}

fn pool_subnet(pool_id: &str) -> Result<Ipv4Net, DriverError> {
    pool_id.parse().map_err(|_| DriverError::UnknownPool(pool_id.to_owned()))
}

pub async fn request_pool<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    r: protocol::RequestPool,
) -> Result<Value, DriverError> {
    if r.v6 || r.pool.contains(':') {
        return Err(DriverError::Ipv6Pool);
    }
    if !r.address_space.is_empty() && r.address_space != ADDRESS_SPACE {
        return Err(DriverError::AddressSpace { given: r.address_space, ours: ADDRESS_SPACE });
    }
    if !r.sub_pool.is_empty() {
        return Err(DriverError::IpRange);
    }
    let subnet = if r.pool.is_empty() {
        let mut taken: Vec<network::Taken> = network::list(&p.backend.store)
            .await?
            .into_iter()
            .map(|n| network::Taken::Network { name: n.name, subnet: n.subnet })
            .collect();
        for host in network::host::read_published(&p.backend.store).await? {
            taken.extend(host.taken());
        }
        let state = p.state.lock().await;
        taken.extend(
            state.networks.values().map(|n| network::Taken::Network { name: n.docker_id.clone(), subnet: n.subnet }),
        );
        p.config.subnet_pool.choose(&taken)?
    } else {
        network::spec::parse_addressing(&r.pool, None, None)?.subnet
    };
    {
        let mut state = p.state.lock().await;
        if let Some(n) = state.network_with_subnet(subnet).cloned() {
            // A Docker network dockerd no longer has does not hold its subnet.
            if !bindings::lost_by_dockerd(p, &n).await {
                return Err(DriverError::SubnetInUse { subnet, docker_id: n.docker_id });
            }
            bindings::forget(p, &mut state, &n.docker_id).await;
            state.save(&p.config.state_dir)?;
        }
    }
    for other in network::list(&p.backend.store).await? {
        if other.subnet != subnet && overlaps(other.subnet, subnet) {
            return Err(NetworkError::OverlapsNetwork { subnet, other: other.name, other_subnet: other.subnet }.into());
        }
    }
    Ok(json!({ "PoolID": subnet.to_string(), "Pool": subnet.to_string(), "Data": {} }))
}

pub async fn request_address<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    r: protocol::RequestAddress,
) -> Result<Value, DriverError> {
    let subnet = pool_subnet(&r.pool_id)?;
    let requested = if r.address.is_empty() { None } else { Some(parse_ip(&r.address, "address")?) };
    let options = r.options.unwrap_or_default();
    let answer = |ip: Ipv4Addr| Ok(json!({ "Address": format!("{ip}/{}", subnet.prefix_len()), "Data": {} }));
    if options.get(REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(GATEWAY_REQUEST) {
        // The gateway is the cluster network's; it is never allocated to an endpoint.
        if let Some(record) = bindings::cluster_network_with(p, subnet).await? {
            return match requested {
                Some(ip) if ip != record.gateway => {
                    Err(DriverError::OtherGateway { network: record.name, gateway: record.gateway })
                }
                _ => answer(record.gateway),
            };
        }
        let gateway = requested.unwrap_or_else(|| first_host(subnet));
        if !subnet.contains(&gateway) || gateway == subnet.network() || gateway == subnet.broadcast() {
            return Err(DriverError::GatewayOutside { gateway, subnet });
        }
        return answer(gateway);
    }
    let cluster = bindings::cluster_network(p, Lookup::Subnet(subnet)).await?;
    let allocation = format!("{ALLOCATION_PREFIX}{:016x}{:08x}", rand::random::<u64>(), rand::random::<u32>());
    let ip = p.backend.ipam.allocate(&cluster.id, &allocation, &p.backend.node_id, p.lease_id(), requested).await?;
    answer(ip)
}

/// This node's allocation of `ip` in `cluster_id` made by the plugin, if there is one.
pub async fn docker_allocation<S: Store + Transact>(
    p: &Plugin<S>,
    cluster_id: &str,
    ip: Ipv4Addr,
) -> Result<Option<Allocation>, DriverError> {
    let entry = p.backend.store.get(&ipam::keys::address(cluster_id, ip)).await?;
    Ok(entry
        .and_then(|e| serde_json::from_slice::<Allocation>(&e.value).ok())
        .filter(|a| a.node == p.backend.node_id && a.endpoint.starts_with(ALLOCATION_PREFIX)))
}

pub async fn release_address<S: Store + Transact>(
    p: &Arc<Plugin<S>>,
    r: protocol::ReleaseAddress,
) -> Result<Value, DriverError> {
    let subnet = pool_subnet(&r.pool_id)?;
    let ip = parse_ip(&r.address, "address")?;
    let cluster = { p.state.lock().await.network_with_subnet(subnet).and_then(|n| n.cluster_id().map(str::to_owned)) };
    let cluster = match cluster {
        Some(id) => Some(id),
        None => bindings::cluster_network_with(p, subnet).await?.map(|n| n.id),
    };
    // No cluster network: nothing was allocated (a gateway of a network never created).
    let Some(cluster_id) = cluster else { return Ok(json!({})) };
    if let Some(allocation) = docker_allocation(p, &cluster_id, ip).await? {
        p.backend.ipam.release(&cluster_id, &Release::Endpoint(allocation.endpoint)).await?;
        tracing::info!(%ip, network = %cluster_id, "Docker address released");
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_pools_parse_as_docker_writes_them() {
        assert_eq!(parse_ip("10.0.9.1/24", "gateway").unwrap(), Ipv4Addr::new(10, 0, 9, 1));
        assert!(parse_ip("fe80::1", "gateway").is_err());
        assert_eq!(pool_subnet("10.0.9.0/24").unwrap().to_string(), "10.0.9.0/24");
        assert!(pool_subnet("pool-1").unwrap_err().to_string().contains("unknown pool"));
    }
}
