//! A member host's IPv4 routes and addresses, published by its agent under
//! `v1/host-networks/NODE_ID` and attached to the node's lease, so that a new overlay
//! subnet never shadows a network some host reaches (a host route to 10.0.9.0/24 and an
//! overlay 10.0.9.0/24 on that host would capture each other's traffic). When the node's
//! lease expires, its record goes with it.

use std::{collections::BTreeMap, net::IpAddr, net::Ipv4Addr, time::Duration};

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        address::AddressAttribute,
        link::LinkAttribute,
        route::{RouteAddress, RouteAttribute, RouteType},
    },
};
use serde::{Deserialize, Serialize};

use super::{NetworkError, Taken, keys};
use crate::{
    shutdown::Shutdown,
    store::{LeaseId, Store},
};

/// The kernel's table of local and broadcast routes: what it holds is covered by the
/// addresses, which are published on their own.
const RT_TABLE_LOCAL: u32 = 255;

/// A route of the host (`ip -4 route`), without the default route.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostRoute {
    pub prefix: Ipv4Net,
    #[serde(default)]
    pub interface: Option<String>,
}

/// An address of the host with its prefix length (`ip -4 addr`), without loopback.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostAddress {
    pub address: Ipv4Net,
    #[serde(default)]
    pub interface: Option<String>,
}

/// What a member host publishes under `v1/host-networks/NODE_ID`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNetworks {
    pub node_id: String,
    /// The node's name, for messages ("overlaps the route ... of host agt01").
    pub node_name: String,
    pub routes: Vec<HostRoute>,
    pub addresses: Vec<HostAddress>,
    /// Unix time (seconds) of the reading.
    pub updated_at: u64,
}

impl HostNetworks {
    /// What this host keeps a new overlay subnet from using: routes, then addresses.
    pub fn taken(&self) -> impl Iterator<Item = Taken> + '_ {
        let routes = self.routes.iter().map(|r| Taken::Route {
            host: self.node_name.clone(),
            prefix: r.prefix,
            interface: r.interface.clone(),
        });
        let addresses = self.addresses.iter().map(|a| Taken::Address {
            host: self.node_name.clone(),
            address: a.address,
            interface: a.interface.clone(),
        });
        routes.chain(addresses)
    }
}

/// Whether a route or address says something about where a subnet may go: not the
/// default route (it covers everything), not loopback, multicast or broadcast.
fn relevant(prefix: Ipv4Net) -> bool {
    let address = prefix.network();
    prefix.prefix_len() > 0 && !address.is_loopback() && !address.is_multicast() && !address.is_broadcast()
}

fn netlink_error(what: &'static str) -> impl Fn(rtnetlink::Error) -> NetworkError {
    move |error| NetworkError::Netlink { what, message: error.to_string() }
}

/// Reads the IPv4 routes (every table but `local`) and addresses of the network
/// namespace of the calling thread, like `ip -4 route show table all` and `ip -4 addr`.
/// Needs a tokio runtime; sorted, without duplicates.
pub async fn read_local() -> Result<(Vec<HostRoute>, Vec<HostAddress>), NetworkError> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|e| NetworkError::Netlink { what: "route", message: format!("opening a netlink socket: {e}") })?;
    let task = tokio::spawn(connection);
    let result = async {
        let mut names = BTreeMap::new();
        let mut links = handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(netlink_error("link"))? {
            if let Some(name) = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name.clone()),
                _ => None,
            }) {
                names.insert(link.header.index, name);
            }
        }

        let mut addresses = Vec::new();
        let mut stream = handle.address().get().execute();
        while let Some(message) = stream.try_next().await.map_err(netlink_error("addr"))? {
            if message.header.family != AddressFamily::Inet {
                continue;
            }
            // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links.
            let local = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let address = local.or_else(|| {
                message.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                })
            });
            let Some(address) = address else { continue };
            let Ok(address) = Ipv4Net::new(address, message.header.prefix_len) else { continue };
            if relevant(address) {
                addresses.push(HostAddress { address, interface: names.get(&message.header.index).cloned() });
            }
        }

        let mut routes = Vec::new();
        let mut stream = handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(message) = stream.try_next().await.map_err(netlink_error("route"))? {
            if message.header.address_family != AddressFamily::Inet || message.header.kind != RouteType::Unicast {
                continue;
            }
            // The agent's routes to its own containers lie inside overlay subnets, which
            // are the cluster's already.
            if u8::from(message.header.protocol) == crate::netlink::CONTAINER_ROUTE_PROTOCOL {
                continue;
            }
            let mut table = u32::from(message.header.table);
            let mut destination = Ipv4Addr::UNSPECIFIED;
            let mut interface = None;
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
                    RouteAttribute::Oif(index) => interface = names.get(index).cloned(),
                    _ => {}
                }
            }
            let Ok(prefix) = Ipv4Net::new(destination, message.header.destination_prefix_length) else { continue };
            if table != RT_TABLE_LOCAL && relevant(prefix) {
                routes.push(HostRoute { prefix: prefix.trunc(), interface });
            }
        }
        routes.sort();
        routes.dedup();
        addresses.sort();
        addresses.dedup();
        Ok((routes, addresses))
    }
    .await;
    task.abort();
    result
}

/// Reads this host's routes and addresses ([`read_local`]) and writes them under
/// `v1/host-networks/NODE_ID`, attached to `lease` (the node's lease).
pub async fn publish<S: Store>(
    store: &S,
    node_id: &str,
    node_name: &str,
    lease: LeaseId,
) -> Result<HostNetworks, NetworkError> {
    let (routes, addresses) = read_local().await?;
    let record = HostNetworks {
        node_id: node_id.to_owned(),
        node_name: node_name.to_owned(),
        routes,
        addresses,
        updated_at: crate::cluster::unix_now(),
    };
    store.put(&keys::host_networks(node_id), serde_json::to_vec(&record)?, Some(lease)).await?;
    Ok(record)
}

/// The records of every member host; malformed ones are logged and skipped.
pub async fn read_published<S: Store>(store: &S) -> Result<Vec<HostNetworks>, NetworkError> {
    let listing = store.list(keys::HOST_NETWORKS).await?;
    Ok(listing
        .entries
        .into_iter()
        .filter_map(|entry| match serde_json::from_slice::<HostNetworks>(&entry.value) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!("skipping malformed host networks record at {}: {error}", entry.key);
                None
            }
        })
        .collect())
}

/// How often [`run_publisher`] reads the host's routes when no event came: a safety net
/// for events the kernel dropped (a netlink socket that overflows loses them).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(30);

/// After a route or address event, wait this long for the rest of a burst (an interface
/// coming up adds an address and several routes) before reading once.
const EVENT_SETTLE: Duration = Duration::from_millis(50);

/// Route, address and link changes of this namespace's kernel, as a stream of wake-ups
/// (like `ip monitor route address link`). `None`, after a warning, if the socket
/// cannot be opened: the publisher then polls.
fn subscribe() -> Option<tokio::sync::mpsc::UnboundedReceiver<()>> {
    use rtnetlink::constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_LINK};
    use rtnetlink::sys::{AsyncSocket, SocketAddr};
    let opened = rtnetlink::new_connection().and_then(|(mut connection, _, messages)| {
        let groups = SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE);
        connection.socket_mut().socket_mut().bind(&groups)?;
        Ok((connection, messages))
    });
    match opened {
        Ok((connection, messages)) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            // Ends when the publisher drops its receiver.
            tokio::spawn(async move {
                use futures_util::StreamExt;
                let mut messages = messages;
                let forward = async move {
                    while messages.next().await.is_some() {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    _ = connection => {}
                    _ = forward => {}
                }
            });
            Some(rx)
        }
        Err(error) => {
            tracing::warn!(
                "cannot follow this host's route changes ({error}); reading them every {PUBLISH_INTERVAL:?}"
            );
            None
        }
    }
}

/// Keeps this host's record up to date until `shutdown`: it reads the routes and
/// addresses when the kernel reports a change (and every `interval` all the same, and
/// when the node's lease changes), and rewrites the record if they changed, or if the
/// node's lease changed (the record follows the lease of the node's record
/// `v1/nodes/NODE_ID`, so it needs no lease of its own and survives the agent
/// registering again). Store and netlink failures are logged and retried.
pub async fn run_publisher<S: Store>(
    store: S,
    node_id: String,
    node_name: String,
    interval: Duration,
    mut lease_changes: Option<tokio::sync::watch::Receiver<LeaseId>>,
    shutdown: Shutdown,
) {
    let key = keys::host_networks(&node_id);
    let mut events = subscribe();
    let mut backoff = crate::store::Backoff::new(Duration::from_millis(250), interval.min(Duration::from_secs(5)));
    // What the store was last seen or made to hold; an event that changes nothing of it
    // (a container's veth coming up) costs one netlink read and no store request.
    let mut published: Option<(Vec<HostRoute>, Vec<HostAddress>)> = None;
    let mut only_if_changed = false;
    loop {
        let step = async {
            let (routes, addresses) = read_local().await?;
            if only_if_changed && published.as_ref() == Some(&(routes.clone(), addresses.clone())) {
                return Ok(true);
            }
            let Some(node) = store.get(&crate::cluster::keys::node(&node_id)).await? else {
                return Ok(false);
            };
            let Some(lease) = node.lease else { return Ok(false) };
            let current = store.get(&key).await?;
            let unchanged = current.as_ref().is_some_and(|entry| {
                entry.lease == Some(lease)
                    && serde_json::from_slice::<HostNetworks>(&entry.value)
                        .is_ok_and(|r| r.routes == routes && r.addresses == addresses && r.node_name == node_name)
            });
            if !unchanged {
                let record = HostNetworks {
                    node_id: node_id.clone(),
                    node_name: node_name.clone(),
                    routes: routes.clone(),
                    addresses: addresses.clone(),
                    updated_at: crate::cluster::unix_now(),
                };
                store.put(&key, serde_json::to_vec(&record)?, Some(lease)).await?;
            }
            published = Some((routes, addresses));
            Ok::<_, NetworkError>(true)
        };
        // A failure is retried soon (a change must not wait for the safety net).
        let outcome = step.await;
        only_if_changed = false;
        let wait = match outcome {
            Ok(true) => {
                backoff.reset();
                interval
            }
            Ok(false) => {
                tracing::debug!("node {node_id} is not registered yet; host routes not published");
                backoff.next_delay()
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!("publishing this host's routes and addresses failed ({error}); retrying in {delay:?}");
                delay
            }
        };
        let event = async {
            match events.as_mut() {
                Some(events) => events.recv().await,
                None => std::future::pending().await,
            }
        };
        let lease_changed = async {
            match lease_changes.as_mut() {
                Some(lease) => lease.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            woke = event => {
                if woke.is_none() {
                    tracing::warn!("the route event socket closed; reading this host's routes every {interval:?}");
                    events = None;
                }
                // The rest of the burst, then one reading for all of it.
                tokio::time::sleep(EVENT_SETTLE).await;
                if let Some(events) = events.as_mut() {
                    while events.try_recv().is_ok() {}
                }
                only_if_changed = true;
            }
            open = lease_changed => {
                if !open {
                    lease_changes = None;
                }
            }
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_routes_that_place_subnets_are_kept() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(relevant(net("192.168.1.0/24")));
        assert!(relevant(net("10.0.9.5/32")));
        assert!(!relevant(net("0.0.0.0/0")));
        assert!(!relevant(net("127.0.0.0/8")));
        assert!(!relevant(net("224.0.0.0/4")));
        assert!(!relevant(net("255.255.255.255/32")));
    }

    #[test]
    fn a_record_lists_routes_before_addresses() {
        let record = HostNetworks {
            node_id: "n".into(),
            node_name: "agt01".into(),
            routes: vec![HostRoute { prefix: "192.168.1.0/24".parse().unwrap(), interface: Some("eth0".into()) }],
            addresses: vec![HostAddress { address: "192.168.1.141/24".parse().unwrap(), interface: None }],
            updated_at: 0,
        };
        let taken: Vec<Taken> = record.taken().collect();
        assert!(matches!(&taken[0], Taken::Route { host, .. } if host == "agt01"));
        assert_eq!(taken[1].prefix(), "192.168.1.0/24".parse().unwrap());
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(serde_json::from_slice::<HostNetworks>(&json).unwrap(), record);
    }
}
