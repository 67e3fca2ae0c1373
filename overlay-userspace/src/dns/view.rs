//! The names the resolver knows: containers, the networks they are attached to, their
//! names, aliases and addresses. The agent keeps one [`NameView`] per host up to date
//! from the store; every container's resolver reads it on every query, so an update
//! (a removal especially) is visible to the next query.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use super::DnsError;

/// An overlay network as the resolver sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsNetwork {
    /// One DNS label (no dots): `NAME.NETWORK` must be unambiguous.
    pub name: String,
    /// An internal network has no way out: names that are not containers are not
    /// forwarded for containers attached only to internal networks.
    pub internal: bool,
}

/// A container's attachment to one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEndpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    /// Extra names on this network (`docker run --network-alias`); several containers
    /// may share one.
    pub aliases: Vec<String>,
}

/// A container, on any host of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsContainer {
    /// The agent's key for the container (unique in the cluster); the resolver serving a
    /// container is told this id, not the name.
    pub id: String,
    pub name: String,
    pub endpoints: Vec<DnsEndpoint>,
}

/// What a name means to one querying container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Addresses of containers on the querier's networks, in a stable order (the
    /// resolver rotates them).
    Found(Vec<Ipv4Addr>),
    /// The name is the overlay's but names nothing the querier may see: NXDOMAIN, never
    /// forwarded. That is a name or alias of containers on other networks only,
    /// `X.NETWORK` for any network of the cluster, and any single-label name (no dot:
    /// a container name, or nothing an upstream could answer).
    NxDomain,
    /// Not a container name: forward it if `may_forward`.
    Unknown { may_forward: bool },
    /// The querier is not in the view (removed, or not added yet).
    UnknownQuerier,
}

/// What an address means to one querying container (PTR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reverse {
    /// `NAME.NETWORK` for every network the address is on that the querier sees.
    Found(Vec<String>),
    /// The address is a container's, on networks the querier is not attached to.
    NxDomain,
    Unknown {
        may_forward: bool,
    },
    UnknownQuerier,
}

/// The cluster's container names, shared by the agent (writer) and every resolver task
/// (readers). Cloning is cheap and shares the same view.
///
/// Updates are incremental (cost proportional to the container's names), readers hold
/// the lock only while looking one name up, never across an `.await`.
#[derive(Clone, Debug, Default)]
pub struct NameView {
    inner: Arc<RwLock<Index>>,
}

/// A string many index entries share (container ids, lower-case names and network
/// names): one allocation per distinct string instead of one per use keeps the view of
/// a large cluster small.
type Shared = Arc<str>;

/// One name on one network points at these (container id, address) pairs.
type Targets = Vec<(Shared, Ipv4Addr)>;

/// A container that holds an address on a network.
#[derive(Debug)]
struct Owner {
    network: Shared,
    /// The container's lower-case name; the PTR answer is `name.network`.
    name: Shared,
    id: Shared,
}

#[derive(Debug, Default)]
struct Index {
    /// By lower-case name.
    networks: HashMap<String, DnsNetwork>,
    /// By id, as given (names not yet lower-cased).
    containers: HashMap<Shared, DnsContainer>,
    /// Network → name or alias → targets in insertion order, all lower-case (nested so
    /// that lookups borrow the query's name instead of building a key).
    names: HashMap<Shared, HashMap<Shared, Targets>>,
    /// Container id → its networks, lower-case.
    attached: HashMap<Shared, Vec<Shared>>,
    /// Lower-case name or alias → on how many networks it is defined (isolation:
    /// a name known elsewhere is hidden rather than forwarded).
    anywhere: HashMap<Shared, usize>,
    /// Address → the containers that hold it.
    addresses: HashMap<Ipv4Addr, Vec<Owner>>,
}

impl NameView {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a network (by name).
    pub fn upsert_network(&self, network: DnsNetwork) -> Result<(), DnsError> {
        validate_network_name(&network.name)?;
        self.write().networks.insert(network.name.to_ascii_lowercase(), network);
        Ok(())
    }

    /// Forgets a network's settings; its containers' names stay until they are removed.
    pub fn remove_network(&self, name: &str) {
        self.write().networks.remove(&name.to_ascii_lowercase());
    }

    /// Adds a container, or replaces the one with the same id (new addresses, aliases or
    /// networks take effect at once). Nothing changes if a name is invalid.
    pub fn upsert_container(&self, container: DnsContainer) -> Result<(), DnsError> {
        validate_container(&container)?;
        let mut index = self.write();
        index.remove_container(&container.id);
        index.add_container(container);
        Ok(())
    }

    /// Removes a container: from the next query on, its names no longer resolve.
    /// Returns whether it was there.
    pub fn remove_container(&self, id: &str) -> bool {
        self.write().remove_container(id)
    }

    /// Replaces the whole view (after a full read of the store). A record with a name
    /// the resolver could not answer is left out (the rest of the cluster keeps
    /// resolving); the reasons are returned for the caller to log.
    pub fn replace_all(
        &self,
        networks: impl IntoIterator<Item = DnsNetwork>,
        containers: impl IntoIterator<Item = DnsContainer>,
    ) -> Vec<DnsError> {
        let mut skipped = Vec::new();
        let mut fresh = Index::default();
        for network in networks {
            match validate_network_name(&network.name) {
                Ok(()) => {
                    fresh.networks.insert(network.name.to_ascii_lowercase(), network);
                }
                Err(error) => skipped.push(error),
            }
        }
        for container in containers {
            match validate_container(&container) {
                Ok(()) => {
                    fresh.remove_container(&container.id);
                    fresh.add_container(container);
                }
                Err(error) => skipped.push(error),
            }
        }
        *self.write() = fresh;
        skipped
    }

    /// Adds or replaces the containers of `upserts` and removes those of `removed`,
    /// under one lock (an update of some containers of a large cluster costs only
    /// theirs). Invalid records are left out, as in [`NameView::replace_all`].
    pub fn update_containers<'a>(
        &self,
        upserts: impl IntoIterator<Item = DnsContainer>,
        removed: impl IntoIterator<Item = &'a str>,
    ) -> Vec<DnsError> {
        let mut skipped = Vec::new();
        let mut index = self.write();
        for id in removed {
            index.remove_container(id);
        }
        for container in upserts {
            index.remove_container(&container.id);
            match validate_container(&container) {
                Ok(()) => index.add_container(container),
                Err(error) => skipped.push(error),
            }
        }
        skipped
    }

    /// The record of container `id`, as last given.
    pub fn container(&self, id: &str) -> Option<DnsContainer> {
        self.read().containers.get(id).cloned()
    }

    pub fn container_count(&self) -> usize {
        self.read().containers.len()
    }

    /// Resolves `name` (lower-case, no trailing dot) for container `querier`:
    /// `NAME` or `ALIAS` on any of its networks, or `NAME.NETWORK` on one of them.
    pub fn lookup(&self, querier: &str, name: &str) -> Lookup {
        let index = self.read();
        let Some(networks) = index.attached.get(querier) else { return Lookup::UnknownQuerier };
        let mut found: Vec<Ipv4Addr> = Vec::new();
        for network in networks {
            if let Some(targets) = index.targets(network, name) {
                push_unique(&mut found, targets.iter().map(|(_, ip)| *ip));
            }
        }
        if found.is_empty()
            && let Some((short, network)) = name.rsplit_once('.')
            && networks.iter().any(|n| &**n == network)
            && let Some(targets) = index.targets(network, short)
        {
            push_unique(&mut found, targets.iter().map(|(_, ip)| *ip));
        }
        if !found.is_empty() {
            return Lookup::Found(found);
        }
        // `X.NETWORK` for a network of the cluster is the overlay's own zone: never
        // forwarded, whether or not the querier is attached to NETWORK.
        let network_zone = name.rsplit_once('.').is_some_and(|(short, network)| {
            index.networks.contains_key(network) || index.targets(network, short).is_some()
        });
        if !name.contains('.') || index.anywhere.contains_key(name) || network_zone {
            return Lookup::NxDomain;
        }
        Lookup::Unknown { may_forward: index.may_forward(networks) }
    }

    /// Whether container `querier` may have names forwarded (`None`: not in the view).
    pub fn may_forward(&self, querier: &str) -> Option<bool> {
        let index = self.read();
        index.attached.get(querier).map(|networks| index.may_forward(networks))
    }

    /// The names of the container(s) with address `ip` on the querier's networks.
    pub fn reverse(&self, querier: &str, ip: Ipv4Addr) -> Reverse {
        let index = self.read();
        let Some(networks) = index.attached.get(querier) else { return Reverse::UnknownQuerier };
        match index.addresses.get(&ip) {
            None => Reverse::Unknown { may_forward: index.may_forward(networks) },
            Some(owners) => {
                let names: Vec<String> = owners
                    .iter()
                    .filter(|owner| networks.contains(&owner.network))
                    .map(|owner| format!("{}.{}", owner.name, owner.network))
                    .collect();
                if names.is_empty() { Reverse::NxDomain } else { Reverse::Found(names) }
            }
        }
    }

    /// The id of the container that holds address `ip` (on any network): who asks, for
    /// a resolver that tells its queriers apart by their source address.
    pub fn container_at(&self, ip: Ipv4Addr) -> Option<String> {
        self.read().addresses.get(&ip)?.first().map(|owner| owner.id.to_string())
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        // A writer that panicked left a consistent index (each update is applied after
        // validation, in memory only): keep serving.
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Index {
    fn targets(&self, network: &str, name: &str) -> Option<&Targets> {
        self.names.get(network)?.get(name)
    }

    /// Forwarding is allowed when one of the networks leads out (is not internal).
    /// Networks the view has no record of count as not internal.
    fn may_forward(&self, networks: &[Shared]) -> bool {
        networks.iter().any(|n| !self.networks.get(&**n).is_some_and(|r| r.internal))
    }

    /// The network's name as the index already holds it, or a new one.
    fn network_name(&self, lower: String) -> Shared {
        match self.names.get_key_value(lower.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => Shared::from(lower),
        }
    }

    fn add_container(&mut self, container: DnsContainer) {
        let id = Shared::from(container.id.as_str());
        let name = Shared::from(container.name.to_ascii_lowercase());
        let mut attached = Vec::with_capacity(container.endpoints.len());
        for endpoint in &container.endpoints {
            let network = self.network_name(endpoint.network.to_ascii_lowercase());
            let mut names = vec![name.clone()];
            for alias in &endpoint.aliases {
                let alias = alias.to_ascii_lowercase();
                if !names.iter().any(|n| **n == *alias) {
                    names.push(Shared::from(alias));
                }
            }
            for n in names {
                let targets = self.names.entry(network.clone()).or_default().entry(n.clone()).or_default();
                if targets.is_empty() {
                    *self.anywhere.entry(n).or_default() += 1;
                }
                targets.push((id.clone(), endpoint.ip));
            }
            self.addresses.entry(endpoint.ip).or_default().push(Owner {
                network: network.clone(),
                name: name.clone(),
                id: id.clone(),
            });
            attached.push(network);
        }
        self.attached.insert(id.clone(), attached);
        self.containers.insert(id, container);
    }

    fn remove_container(&mut self, id: &str) -> bool {
        let Some(container) = self.containers.remove(id) else { return false };
        self.attached.remove(id);
        let name = container.name.to_ascii_lowercase();
        for endpoint in &container.endpoints {
            let network = endpoint.network.to_ascii_lowercase();
            let names = std::iter::once(name.clone()).chain(endpoint.aliases.iter().map(|a| a.to_ascii_lowercase()));
            for n in names {
                let Some(on_network) = self.names.get_mut(network.as_str()) else { continue };
                let Some(targets) = on_network.get_mut(n.as_str()) else { continue };
                targets.retain(|(owner, _)| &**owner != id);
                if targets.is_empty() {
                    on_network.remove(n.as_str());
                    if on_network.is_empty() {
                        self.names.remove(network.as_str());
                    }
                    if let Some(count) = self.anywhere.get_mut(n.as_str()) {
                        *count -= 1;
                        if *count == 0 {
                            self.anywhere.remove(n.as_str());
                        }
                    }
                }
            }
            if let Some(owners) = self.addresses.get_mut(&endpoint.ip) {
                owners.retain(|owner| &*owner.id != id);
                if owners.is_empty() {
                    self.addresses.remove(&endpoint.ip);
                }
            }
        }
        true
    }
}

fn push_unique(found: &mut Vec<Ipv4Addr>, ips: impl Iterator<Item = Ipv4Addr>) {
    for ip in ips {
        if !found.contains(&ip) {
            found.push(ip);
        }
    }
}

fn validate_network_name(name: &str) -> Result<(), DnsError> {
    check_name(name, "network")?;
    if name.contains('.') {
        return Err(DnsError::InvalidName {
            name: name.to_owned(),
            reason: "a network name is one label, without dots (containers resolve NAME.NETWORK)".into(),
        });
    }
    Ok(())
}

fn validate_container(container: &DnsContainer) -> Result<(), DnsError> {
    check_name(&container.name, "container")?;
    for endpoint in &container.endpoints {
        validate_network_name(&endpoint.network)?;
        for alias in &endpoint.aliases {
            check_name(alias, "alias")?;
        }
    }
    Ok(())
}

/// A name the resolver can answer: ASCII letters, digits, `-` and `_`, labels of 1 to 63
/// characters separated by dots, 253 characters at most. `what` says whose name it is
/// in the error ("container", "alias", "network").
pub fn check_name(name: &str, what: &str) -> Result<(), DnsError> {
    let invalid =
        |reason: &str| DnsError::InvalidName { name: name.to_owned(), reason: format!("{what} name {reason}") };
    if name.is_empty() || name.len() > 253 {
        return Err(invalid("must have 1 to 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid("must have dot-separated labels of 1 to 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(invalid("may only contain ASCII letters, digits, '-', '_' and dots"));
        }
    }
    Ok(())
}
