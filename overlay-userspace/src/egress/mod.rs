//! Egress and published ports: containers on a non-internal overlay network reach
//! addresses off the overlay through their own host, masqueraded to the host's address,
//! and ports published with `-p` reach them, as with Docker's overlay driver.
//!
//! The eBPF datapath (overlay-ebpf `egress.rs`) hands a container's packet for an
//! address off the overlay to the host's stack; everything else of egress is here:
//!
//! - [`rules`]: the agent's own nftables table `ip overlay`: masquerade per network,
//!   DNAT per published port, and a forward filter that lets only replies and published
//!   ports into containers;
//! - [`host`]: forwarding on the underlay and on containers' veths, the /32 route and
//!   neighbour of each container;
//! - [`ports`]: `-p HOSTPORT:PORT[/PROTO]`, and the host ports held while published.
//!
//! [`Egress`] is the agent's handle on all of it: the datapath task gives it the
//! cluster's networks, the container task and the Docker plugin the ports they publish.
//! docs/datapath.md says why egress goes through the host's stack.

pub mod host;
pub mod ports;
pub mod rules;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use tokio::sync::Mutex;

pub use ports::{PortMapping, Protocol};
pub use rules::{CounterValue, NetworkRules, PortRule};

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(
        "running nft: {source}; egress and published ports need nftables' `nft` (Debian: apt-get install nftables)"
    )]
    NftMissing { source: std::io::Error },
    #[error("nftables, {what}: {message}")]
    Nft { what: &'static str, message: String },
    #[error("writing {path}: {source}")]
    Sysctl { path: String, source: std::io::Error },
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
    #[error("host port {port}/{} is in use on this host ({source}); publish another host port", protocol.as_str())]
    PortInUse { protocol: Protocol, port: u16, source: std::io::Error },
    #[error(
        "host port {port}/{} is already published on this host by {owner}; publish another host port, or remove {owner} first",
        protocol.as_str()
    )]
    PortPublished { protocol: Protocol, port: u16, owner: String },
}

/// The owner of a native container's published ports.
pub fn container_owner(name: &str) -> String {
    format!("container/{name}")
}

/// The owner of a Docker endpoint's published ports (`docker run -p`).
pub fn docker_owner(endpoint_id: &str) -> String {
    format!("docker/{endpoint_id}")
}

/// Ports one owner (a container, or a Docker endpoint) publishes, with the host ports
/// held for them. After an agent restart the ports read back from the table are held
/// again when their owner publishes them again.
#[derive(Debug, Default)]
struct Published {
    ip: Option<Ipv4Addr>,
    mappings: Vec<PortMapping>,
    held: Vec<ports::HeldPort>,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until the datapath task gives the cluster's networks: until then the table's
    /// networks part stays as the last agent left it (its masquerade keeps working).
    networks: Option<Vec<NetworkRules>>,
    network_counters: BTreeSet<String>,
    ports: BTreeMap<String, Published>,
    port_counters: BTreeSet<String>,
}

impl State {
    fn port_rules(&self) -> Vec<PortRule> {
        self.ports
            .iter()
            .filter_map(|(owner, p)| p.ip.map(|ip| (owner, ip, p)))
            .flat_map(|(owner, ip, p)| {
                p.mappings.iter().map(move |m| PortRule { owner: owner.clone(), ip, mapping: *m })
            })
            .collect()
    }
}

/// The agent's egress: its nftables table, its device and the host ports it holds.
#[derive(Debug)]
pub struct Egress {
    state: Mutex<State>,
    /// The index of the egress device, for the datapath.
    pub device: u32,
}

impl Egress {
    /// Makes the table (keeping what a previous agent put in it, so connections and
    /// published ports go on across a restart) and the egress device, and turns
    /// forwarding on for the underlay interface. Fails if `nft` cannot be run.
    pub async fn start(host: &crate::netlink::Netlink, underlay_interface: &str) -> Result<Egress, EgressError> {
        rules::apply(&rules::skeleton()).await?;
        let existing = rules::read().await?.unwrap_or_default();
        let mut state = State::default();
        for counter in existing.counters {
            if counter.name.starts_with("net_") {
                state.network_counters.insert(counter.name);
            } else if counter.name.starts_with("port_") {
                state.port_counters.insert(counter.name);
            }
        }
        for port in existing.ports {
            let entry = state.ports.entry(port.owner).or_default();
            entry.ip = Some(port.ip);
            entry.mappings.push(port.mapping);
        }
        host::enable_forwarding(underlay_interface)?;
        let device = host::ensure_device(host).await?;
        Ok(Egress { state: Mutex::new(state), device })
    }

    /// Sets the networks part: every network of the cluster (internal ones only get the
    /// drop). Nothing is written when it is what the table holds.
    pub async fn set_networks(&self, mut networks: Vec<NetworkRules>) -> Result<(), EgressError> {
        networks.sort();
        let mut state = self.state.lock().await;
        if state.networks.as_ref() == Some(&networks) {
            return Ok(());
        }
        let (ruleset, counters) = rules::networks(&networks, &state.network_counters);
        rules::apply(&ruleset).await?;
        state.networks = Some(networks);
        state.network_counters = counters;
        Ok(())
    }

    /// Publishes `mappings` of the container at `ip` for `owner`, replacing what it
    /// published before. A host port that another owner publishes, or that a process
    /// of the host uses, is refused and nothing changes.
    pub async fn publish(&self, owner: &str, ip: Ipv4Addr, mappings: &[PortMapping]) -> Result<(), EgressError> {
        let mut state = self.state.lock().await;
        let before = state.ports.get(owner);
        if before.is_some_and(|p| p.ip == Some(ip) && p.mappings == mappings && p.held.len() == mappings.len()) {
            return Ok(());
        }
        for m in mappings {
            let taken = state.ports.iter().find(|(other, p)| {
                other.as_str() != owner
                    && p.mappings.iter().any(|o| (o.host_port, o.protocol) == (m.host_port, m.protocol))
            });
            if let Some((other, _)) = taken {
                return Err(EgressError::PortPublished {
                    protocol: m.protocol,
                    port: m.host_port,
                    owner: other.clone(),
                });
            }
        }
        // The owner's own ports are let go first, so that publishing them again holds them.
        let previous = state.ports.remove(owner).unwrap_or_default();
        let restored: BTreeSet<PortMapping> =
            if previous.held.is_empty() { previous.mappings.iter().copied().collect() } else { BTreeSet::new() };
        drop(previous.held);
        let mut held = Vec::new();
        for m in mappings {
            match ports::hold(m.protocol, m.host_port) {
                Ok(port) => held.push(port),
                // Published before this agent started (read back from the table): the
                // rule has been taking the port's traffic all along, so it stays.
                Err(error) if restored.contains(m) => {
                    tracing::warn!("{owner}: {error}; the published port stays, unheld");
                }
                Err(error) => {
                    state.ports.insert(owner.to_owned(), Published { held: Vec::new(), ..previous });
                    return Err(error);
                }
            }
        }
        state.ports.insert(owner.to_owned(), Published { ip: Some(ip), mappings: mappings.to_vec(), held });
        self.apply_ports(&mut state).await
    }

    /// Removes what `owner` published; its host ports are free again.
    pub async fn unpublish(&self, owner: &str) -> Result<(), EgressError> {
        let mut state = self.state.lock().await;
        if state.ports.remove(owner).is_none() {
            return Ok(());
        }
        self.apply_ports(&mut state).await
    }

    /// Removes the ports of the owners under `prefix` that are not in `keep`: what a
    /// previous agent published for containers that went away while none ran.
    pub async fn retain(&self, prefix: &str, keep: &BTreeSet<String>) -> Result<(), EgressError> {
        let mut state = self.state.lock().await;
        let before = state.ports.len();
        state.ports.retain(|owner, _| !owner.starts_with(prefix) || keep.contains(owner));
        if state.ports.len() == before {
            return Ok(());
        }
        self.apply_ports(&mut state).await
    }

    /// The ports published now, by owner.
    pub async fn published(&self) -> BTreeMap<String, Vec<PortMapping>> {
        let state = self.state.lock().await;
        state.ports.iter().map(|(owner, p)| (owner.clone(), p.mappings.clone())).collect()
    }

    async fn apply_ports(&self, state: &mut State) -> Result<(), EgressError> {
        let (ruleset, counters) = rules::published(&state.port_rules(), &state.port_counters);
        rules::apply(&ruleset).await?;
        state.port_counters = counters;
        Ok(())
    }
}

/// Egress and published-port counters of this host, read from the table (what
/// `overlay stats` and the metrics show).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressCounters {
    /// By VNI: packets and bytes out (egress), in (its replies) and dropped on the way
    /// in (neither a reply nor a published port).
    pub networks: BTreeMap<u32, NetworkCounters>,
    pub ports: Vec<PortCounters>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NetworkCounters {
    pub out_packets: u64,
    pub out_bytes: u64,
    pub in_packets: u64,
    pub in_bytes: u64,
    pub blocked_packets: u64,
    pub blocked_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PortCounters {
    pub owner: String,
    pub ip: Ipv4Addr,
    pub mapping: PortMapping,
    pub in_packets: u64,
    pub in_bytes: u64,
    pub out_packets: u64,
    pub out_bytes: u64,
}

/// Reads this host's egress counters; `None` if the agent never made its table here.
pub async fn read_counters() -> Result<Option<EgressCounters>, EgressError> {
    let Some(existing) = rules::read().await? else { return Ok(None) };
    let by_name: BTreeMap<&str, &CounterValue> = existing.counters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut counters = EgressCounters::default();
    for c in &existing.counters {
        let Some(rest) = c.name.strip_prefix("net_") else { continue };
        let Some((vni, kind)) = rest.split_once('_') else { continue };
        let Ok(vni) = vni.parse() else { continue };
        let n = counters.networks.entry(vni).or_default();
        match kind {
            "out" => (n.out_packets, n.out_bytes) = (c.packets, c.bytes),
            "in" => (n.in_packets, n.in_bytes) = (c.packets, c.bytes),
            "blocked" => (n.blocked_packets, n.blocked_bytes) = (c.packets, c.bytes),
            _ => {}
        }
    }
    for p in existing.ports {
        let value = |name: String| by_name.get(name.as_str()).map(|c| (c.packets, c.bytes)).unwrap_or_default();
        let (in_packets, in_bytes) = value(rules::counter::port_in(&p.mapping));
        let (out_packets, out_bytes) = value(rules::counter::port_out(&p.mapping));
        counters.ports.push(PortCounters {
            owner: p.owner,
            ip: p.ip,
            mapping: p.mapping,
            in_packets,
            in_bytes,
            out_packets,
            out_bytes,
        });
    }
    Ok(Some(counters))
}

/// `nft delete table ip overlay`, for `overlay agent --cleanup`; whether there was one.
pub async fn remove_table() -> Result<bool, EgressError> {
    if rules::read().await?.is_none() {
        return Ok(false);
    }
    rules::apply(&rules::delete_table()).await?;
    Ok(true)
}
