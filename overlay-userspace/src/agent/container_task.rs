//! The agent's container task: it runs the containers the scheduler placed on this node
//! and removes those that were removed or moved. For each network of a container: an
//! address from the cluster IPAM, a veth into the container's namespace, the datapath
//! entry, and the endpoint published under this node's lease so every host learns it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::sync::{Mutex, watch};

use crate::{
    cluster::Epoch,
    container::{
        self, Attachment, ContainerError,
        record::{self, AttachedNetwork, ContainerRecord, ContainerStatus, State},
    },
    datapath::{Datapath, DatapathError},
    dns,
    egress::{self, Egress, EgressError},
    endpoint::{self, EndpointError, EndpointRecord},
    metrics::ContainerCount,
    netlink::{Netlink, NetlinkError},
    netns,
    network::{
        NetworkError,
        ipam::{Ipam, IpamError, Release},
    },
    shutdown::Shutdown,
    store::{Backoff, Expect, LeaseId, PutOutcome, Store, Transact, WatchEvent, WatchUpdate, watch_prefix},
};

/// Where and how this node runs containers.
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    pub node_id: String,
    pub node_name: String,
    /// A container's namespace is /run/netns/PREFIX+NAME (usable with `ip netns exec`).
    pub netns_prefix: String,
    /// MTU of container interfaces: the underlay's minus the VXLAN overhead.
    pub mtu: u32,
    /// Logs of the containers' commands.
    pub log_dir: PathBuf,
}

impl ContainerConfig {
    pub fn netns_name(&self, container: &str) -> String {
        format!("{}{container}", self.netns_prefix)
    }
}

/// One network of a running container.
#[derive(Clone, Debug)]
struct Joined {
    vni: u32,
    internal: bool,
    attachment: Attachment,
    endpoint: EndpointRecord,
    network_name: String,
}

struct Running {
    record: ContainerRecord,
    joined: Vec<Joined>,
    status: ContainerStatus,
    resolver: Option<dns::Resolver>,
}

/// The embedded DNS every container gets at 127.0.0.11.
#[derive(Clone)]
pub struct DnsWiring {
    pub view: dns::NameView,
    pub upstreams: Arc<dns::Upstreams>,
}

pub struct ContainerTask<S: Store + Transact> {
    pub store: S,
    pub ipam: Ipam<S>,
    pub datapath: Arc<Mutex<Datapath>>,
    pub host: Netlink,
    pub lease: watch::Receiver<LeaseId>,
    pub config: ContainerConfig,
    pub count: ContainerCount,
    pub dns: Option<DnsWiring>,
    /// The host's egress; `None`: containers get no way out and publish no ports.
    pub egress: Option<Arc<Egress>>,
    /// The cluster's epoch: records that vanish because the store lost its data are
    /// published again instead of removed here. `None`: every removal is taken as meant.
    pub epoch: Option<Arc<Epoch>>,
    /// Statuses the store did not take (it was electing a leader, say), by container:
    /// written again until it does, or `overlay run` would wait for them in vain.
    /// Starts empty.
    pub(super) unpublished: BTreeMap<String, ContainerStatus>,
}

/// A stable 64-hex-digit endpoint ID for a container on a network; its first 12 digits
/// name the host side of the veth, so they differ between the container's networks.
pub fn endpoint_id(container_id: &str, network_id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in container_id.bytes().chain([b'/']).chain(network_id.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let tail: String =
        container_id.chars().filter(char::is_ascii_hexdigit).chain(std::iter::repeat('0')).take(48).collect();
    format!("{hash:016x}{tail}")
}

impl<S: Store + Transact> ContainerTask<S> {
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut running: BTreeMap<String, Running> = BTreeMap::new();
        let mut retries = Retries::default();
        let mut updates = watch_prefix(self.store.clone(), record::CONTAINERS.to_owned(), shutdown.clone());
        let mut resync = tokio::time::interval(Duration::from_secs(5));
        let mut retry_tick = tokio::time::interval(RETRY_FIRST);
        let mut status_tick = tokio::time::interval(STATUS_RETRY);
        // Whether a listing of the containers came yet.
        let mut listed = false;
        // The store's losses this task has acted on, and whether a restore is unfinished.
        let mut restores_acted = match &self.epoch {
            Some(epoch) => epoch.standing().await.restores,
            None => 0,
        };
        let mut restore_pending = false;
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Some(WatchUpdate::Reset(entries)) => {
                        let wanted: BTreeMap<String, ContainerRecord> = entries
                            .iter()
                            .filter_map(|e| parse(&e.key, &e.value))
                            .filter(|r| r.node_id.as_deref() == Some(self.config.node_id.as_str()))
                            .map(|r| (r.name.clone(), r))
                            .collect();
                        let gone: Vec<String> = running.keys().filter(|n| !wanted.contains_key(*n)).cloned().collect();
                        // Gone because the store lost its data: kept, and published again.
                        let lost = !gone.is_empty() && self.store_lost_data(&mut restores_acted).await;
                        if lost {
                            restore_pending = !self.restore(&running).await;
                        } else {
                            for name in gone {
                                // A listing read before a restore put the record back.
                                if let Some(r) = running.get(&name)
                                    && self.record_is_back(r).await
                                {
                                    continue;
                                }
                                if let Some(r) = running.remove(&name) {
                                    self.remove(r).await;
                                }
                            }
                            retries.due.retain(|name, _| wanted.contains_key(name));
                            self.unpublished.retain(|name, _| wanted.contains_key(name));
                        }
                        for (name, record) in &wanted {
                            if !running.contains_key(name) {
                                self.start_or_retry(record.clone(), &mut running, &mut retries).await;
                            }
                        }
                        if !lost {
                            self.sweep(|name| wanted.contains_key(name) || running.contains_key(name)).await;
                            // Ports a previous agent published for containers that went
                            // away while no agent ran.
                            if let Some(egress) = &self.egress {
                                let keep = wanted
                                    .keys()
                                    .chain(running.keys())
                                    .map(|name| egress::container_owner(name))
                                    .collect();
                                if let Err(error) = egress.retain("container/", &keep).await {
                                    tracing::warn!("removing the ports of containers that are gone: {error}");
                                }
                            }
                        }
                        listed = true;
                    }
                    Some(WatchUpdate::Event(WatchEvent::Put(entry))) => {
                        let Some(record) = parse(&entry.key, &entry.value) else { continue };
                        let mine = record.node_id.as_deref() == Some(self.config.node_id.as_str());
                        match (mine, running.contains_key(&record.name)) {
                            (true, false) => self.start_or_retry(record, &mut running, &mut retries).await,
                            (false, true) => {
                                if let Some(r) = running.remove(&record.name) {
                                    self.remove(r).await;
                                }
                            }
                            (false, false) => {
                                retries.cancel(&record.name);
                                self.unpublished.remove(&record.name);
                            }
                            (true, true) => {}
                        }
                    }
                    Some(WatchUpdate::Event(WatchEvent::Delete { key, .. })) => {
                        if let Some(name) = key.strip_prefix(record::CONTAINERS) {
                            if let Some(r) = running.get(name) {
                                if self.store_lost_data(&mut restores_acted).await {
                                    restore_pending = !self.restore(&running).await;
                                    continue;
                                }
                                // A deletion the store took back: one heard after a restore
                                // had put the record back.
                                if self.record_is_back(r).await {
                                    continue;
                                }
                            }
                            retries.cancel(name);
                            self.unpublished.remove(name);
                            if let Some(r) = running.remove(name) {
                                self.remove(r).await;
                            }
                        }
                    }
                    None => break,
                },
                _ = retry_tick.tick(), if !retries.due.is_empty() => {
                    for record in retries.take_due() {
                        self.start_or_retry(record, &mut running, &mut retries).await;
                    }
                }
                _ = status_tick.tick(), if !self.unpublished.is_empty() => self.publish_unpublished().await,
                _ = resync.tick() => {
                    // A loss no watch reported (one that resumed on the new store's
                    // history hears no deletion) is found here within a tick.
                    if !running.is_empty() && self.store_lost_data(&mut restores_acted).await {
                        restore_pending = true;
                    }
                    if restore_pending {
                        restore_pending = !self.restore(&running).await;
                    } else {
                        self.republish(&running).await;
                    }
                    // Only once the store said what runs here: before, every namespace
                    // would look left over.
                    if listed {
                        self.sweep(|name| running.contains_key(name) || retries.due.contains_key(name)).await;
                    }
                }
                _ = shutdown.wait() => break,
            }
            self.count.store(running.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Starts a container; one that met a store outage is tried again later.
    async fn start_or_retry(
        &mut self,
        record: ContainerRecord,
        running: &mut BTreeMap<String, Running>,
        retries: &mut Retries,
    ) {
        let name = record.name.clone();
        match self.start(record.clone()).await {
            Started::Running(r) => {
                retries.cancel(&name);
                running.insert(name, *r);
            }
            Started::Failed => retries.cancel(&name),
            Started::Retry => retries.schedule(record),
        }
    }

    fn lease(&self) -> LeaseId {
        *self.lease.borrow()
    }

    /// Starts (or, after an agent restart, adopts) a container. Failures are reported in
    /// its status and leave nothing half-made behind; a store that does not answer is
    /// not a failure of the container, which is tried again.
    async fn start(&mut self, record: ContainerRecord) -> Started {
        let netns_name = self.config.netns_name(&record.name);
        let netns_path = netns::path(&netns_name);
        // A file without a namespace mounted on it is what a kill during the creation
        // leaves: made again, not adopted.
        if netns_path.exists() && !netns::is_namespace(&netns_path) {
            let _ = std::fs::remove_file(&netns_path);
        }
        let adopting = netns_path.exists();
        let mut joined = Vec::new();
        let mut result = self.attach_all(&record, &netns_path, adopting, &mut joined).await;
        let mut ports_message = None;
        if result.is_ok() {
            match self.publish_ports(&record, &joined).await {
                Ok(()) => {}
                // An adopted container keeps running as it is; it says what it lacks.
                Err(error) if adopting && !error.is_transient() => ports_message = Some(error.to_string()),
                Err(error) => result = Err(error),
            }
        }
        let mut status = ContainerStatus {
            name: record.name.clone(),
            node_id: self.config.node_id.clone(),
            node_name: self.config.node_name.clone(),
            state: State::Running,
            message: None,
            networks: joined
                .iter()
                .map(|j| AttachedNetwork {
                    network: j.network_name.clone(),
                    network_id: j.endpoint.network_id.clone(),
                    ip: j.endpoint.ip,
                    interface: j.attachment.interface.clone(),
                })
                .collect(),
            ports: if ports_message.is_none() { record.ports.clone() } else { Vec::new() },
            netns: netns_name.clone(),
        };
        if let Some(message) = ports_message {
            tracing::warn!("container {}: {message}", record.name);
            status.message = Some(message);
        }
        match result {
            Ok(()) => {}
            Err(error) if error.is_transient() => {
                tracing::warn!("container {}: {error}; trying again", record.name);
                // An adopted container keeps running as it is; the next attempt redoes
                // what this one did (every step is idempotent). A new one goes entirely.
                if !adopting {
                    self.undo(&record, &joined, &netns_path).await;
                }
                return Started::Retry;
            }
            Err(error) => {
                tracing::error!("container {}: {error}", record.name);
                self.undo(&record, &joined, &netns_path).await;
                status.state = State::Failed;
                status.message = Some(error.to_string());
                status.networks.clear();
                status.ports.clear();
                self.write_status(&status).await;
                return Started::Failed;
            }
        }
        let resolver = self.start_resolver(&record.name, &netns_name);
        // An adopted container whose command never started (the agent was killed
        // between making its namespace and starting it) gets it now.
        let has_processes = adopting && !netns::pids(&netns_path).is_empty();
        if !has_processes
            && !record.command.is_empty()
            && let Err(e) = self.spawn_command(&record, &netns_name)
        {
            tracing::warn!("container {}: starting its command failed: {e}", record.name);
            status.message = Some(format!("command not started: {e}"));
        }
        self.write_status(&status).await;
        tracing::info!(
            "container {} {} on {} network(s)",
            record.name,
            if adopting { "adopted" } else { "started" },
            joined.len()
        );
        Started::Running(Box::new(Running { record, joined, status, resolver }))
    }

    /// Publishes the container's ports (`-p`) on this host, to its address on its first
    /// network (the one its default route, and so its replies, take).
    async fn publish_ports(&self, record: &ContainerRecord, joined: &[Joined]) -> Result<(), StartError> {
        if record.ports.is_empty() {
            return Ok(());
        }
        let Some(egress) = &self.egress else { return Err(StartError::NoEgress) };
        let Some(first) = joined.first() else { return Ok(()) };
        if first.internal {
            return Err(StartError::InternalPorts { network: first.network_name.clone() });
        }
        Ok(egress.publish(&egress::container_owner(&record.name), first.endpoint.ip, &record.ports).await?)
    }

    /// Serves DNS inside the container and points its resolv.conf at it. A container
    /// without DNS still runs: names are a convenience, not its network.
    fn start_resolver(&self, name: &str, netns_name: &str) -> Option<dns::Resolver> {
        let wiring = self.dns.as_ref()?;
        let resolver = match dns::serve_container(netns_name, name, wiring.view.clone(), wiring.upstreams.clone()) {
            Ok(resolver) => resolver,
            Err(error) => {
                tracing::warn!("container {name}: no DNS: {error}");
                return None;
            }
        };
        if let Err(error) = dns::write_netns_resolv_conf(netns_name, &dns::container_resolv_conf(&[])) {
            tracing::warn!("container {name}: resolv.conf not written: {error}");
        }
        Some(resolver)
    }

    async fn attach_all(
        &mut self,
        record: &ContainerRecord,
        netns_path: &Path,
        adopting: bool,
        joined: &mut Vec<Joined>,
    ) -> Result<(), StartError> {
        if !adopting {
            container::create_namespace(netns_path).await?;
        }
        let inside = if adopting { Some(Netlink::connect_in(netns_path)?) } else { None };
        for (index, request) in record.networks.iter().enumerate() {
            let network = self.ipam.network(&request.network, true).await?;
            let endpoint_id = endpoint_id(&record.id, &network.id);
            let interface = format!("eth{index}");
            let host_interface = container::host_interface_name(&endpoint_id);
            // An adopted container keeps the address it has (its MAC carries it).
            let mut requested = request.ip;
            let mut already_attached = false;
            if let Some(inside) = &inside
                && inside.link_index(&interface).await?.is_some()
                && self.host.link_index(&host_interface).await?.is_some()
            {
                already_attached = true;
                requested = container::ip_of_mac(inside.link_mac(&interface).await?).or(requested);
            }
            let ip =
                self.ipam.allocate(&network.id, &endpoint_id, &self.config.node_id, self.lease(), requested).await?;
            let attachment = Attachment {
                interface,
                host_interface,
                ip,
                prefix_len: network.subnet.prefix_len(),
                mac: container::mac_for(ip),
                mtu: self.config.mtu,
                default_gateway: (index == 0).then_some(network.gateway),
            };
            let endpoint = EndpointRecord {
                id: endpoint_id,
                network_id: network.id.clone(),
                node_id: self.config.node_id.clone(),
                container: record.name.clone(),
                aliases: record.aliases.clone(),
                ip,
                mac: attachment.mac,
            };
            // Recorded before the veth exists, so a failure below undoes the allocation.
            joined.push(Joined {
                vni: network.vni,
                internal: network.internal,
                attachment: attachment.clone(),
                endpoint: endpoint.clone(),
                network_name: network.name.clone(),
            });
            if already_attached {
                container::configure(&self.host, netns_path, &attachment).await?;
            } else {
                container::attach(&self.host, netns_path, &attachment).await?;
            }
            // The way back from the host's stack, for egress replies and published ports.
            if self.egress.is_some() && !network.internal {
                egress::host::connect_container(&self.host, &attachment.host_interface, ip, attachment.mac).await?;
            }
            let spec = endpoint.local_spec(network.vni, &attachment.host_interface);
            {
                // The network goes in first, so the container's first packet finds it; the
                // datapath task removes it when no local container is left on it.
                let mut datapath = self.datapath.lock().await;
                let gateway_mac = container::mac_for(network.gateway);
                datapath.add_network(crate::datapath::NetworkSpec {
                    vni: network.vni,
                    gateway: network.gateway,
                    gateway_mac,
                })?;
                datapath.add_local_endpoint(&spec)?;
            }
            endpoint::publish(&self.store, &endpoint, self.lease()).await?;
        }
        Ok(())
    }

    fn spawn_command(&self, record: &ContainerRecord, netns_name: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.config.log_dir)?;
        let log = std::fs::File::create(self.config.log_dir.join(format!("{}.log", record.name)))?;
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", netns_name])
            .args(&record.command)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group: the agent's signals are not the container's.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn()?;
        // Reap it whenever it exits; it is stopped by `overlay rm`, not by the agent.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }

    /// Publishes `status`; one the store did not take is kept in
    /// [`ContainerTask::unpublished`] and written again on the next status tick.
    async fn write_status(&mut self, status: &ContainerStatus) {
        let value = match serde_json::to_vec(status) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!("encoding the status of {}: {e}", status.name);
                return;
            }
        };
        match self.store.put(&record::status_key(&status.name), value, Some(self.lease())).await {
            Ok(_) => {
                self.unpublished.remove(&status.name);
            }
            Err(e) => {
                tracing::warn!("publishing the status of {}: {e}; trying again", status.name);
                self.unpublished.insert(status.name.clone(), status.clone());
            }
        }
    }

    /// Writes the statuses the store refused before, oldest name first; stops at the
    /// first refusal, as a store that is down would keep each one waiting its timeout.
    async fn publish_unpublished(&mut self) {
        let pending: Vec<ContainerStatus> = self.unpublished.values().cloned().collect();
        for status in pending {
            self.write_status(&status).await;
            if self.unpublished.contains_key(&status.name) {
                return;
            }
            tracing::info!("container {}: its status is published", status.name);
        }
    }

    /// Re-publishes what a new lease (after the store lost ours) would have dropped:
    /// the endpoints, their addresses (held by IPAM endpoints of the same ID, in networks
    /// put back if the store lost them) and the container's status. `false`: the store
    /// did not answer (the next tick tries again).
    async fn republish(&mut self, running: &BTreeMap<String, Running>) -> bool {
        let lease = self.lease();
        for r in running.values() {
            for j in &r.joined {
                let kept =
                    endpoint::keep_on_lease(&self.store, &self.ipam, &j.endpoint, Some(&j.endpoint.id), lease).await;
                match kept {
                    Ok(false) => {}
                    Ok(true) => self.write_status(&r.status).await,
                    Err(_) => return false,
                }
            }
        }
        true
    }

    /// Whether the store lost its data since this task last looked
    /// ([`Epoch::check`]); a store that cannot tell is taken at its word.
    async fn store_lost_data(&self, acted: &mut u64) -> bool {
        let Some(epoch) = &self.epoch else { return false };
        match epoch.check(&self.store).await {
            Ok(standing) => standing.unacted(acted),
            Err(error) => {
                tracing::debug!("cannot tell whether the store lost its data ({error}); taking its word");
                false
            }
        }
    }

    /// After the store lost its data: puts back what runs here, each container's record
    /// (as it was placed), then its networks, addresses, endpoints and status
    /// ([`ContainerTask::republish`]). Nothing is taken down. `false`: not all of it went
    /// through (the next tick tries again).
    async fn restore(&mut self, running: &BTreeMap<String, Running>) -> bool {
        let mut complete = true;
        for r in running.values() {
            let value = match serde_json::to_vec(&r.record) {
                Ok(value) => value,
                Err(error) => {
                    tracing::error!("encoding the record of {}: {error}", r.record.name);
                    continue;
                }
            };
            // Written again meanwhile (by an operator): theirs stands.
            match self.store.put_if(&record::key(&r.record.name), value, None, Expect::Absent).await {
                Ok(PutOutcome::Written) => {
                    tracing::info!("container {}: its record is back in the store", r.record.name)
                }
                Ok(PutOutcome::Conflict(_)) => {}
                Err(error) => {
                    tracing::warn!("container {}: putting its record back: {error}", r.record.name);
                    complete = false;
                }
            }
        }
        self.republish(running).await && complete
    }

    /// Whether the store holds `running`'s record (same container, same node) again.
    async fn record_is_back(&self, running: &Running) -> bool {
        let key = record::key(&running.record.name);
        match self.store.get(&key).await {
            Ok(Some(entry)) => parse(&entry.key, &entry.value)
                .is_some_and(|r| r.id == running.record.id && r.node_id == running.record.node_id),
            Ok(None) => false,
            Err(error) => {
                tracing::warn!("container {}: reading its record: {error}", running.record.name);
                false
            }
        }
    }

    async fn remove(&mut self, running: Running) {
        let name = running.record.name.clone();
        self.unpublished.remove(&name);
        let netns_path = netns::path(&self.config.netns_name(&name));
        if let Some(resolver) = running.resolver {
            resolver.stop().await;
        }
        kill_all_in(&netns_path);
        let mut clean = self.undo_networks(&name, &running.joined).await;
        if let Err(e) = self.delete_own_status(&name).await {
            tracing::warn!("removing the status of {name}: {e}");
            clean = false;
        }
        if clean {
            self.delete_namespace(&name);
            tracing::info!("container {name} removed");
        } else {
            tracing::warn!("container {name}: the store did not answer; its namespace stays until the next sweep");
        }
    }

    /// Takes down what `attach_all` made, in reverse, ignoring what is already gone.
    /// The namespace goes last, and only if the store took every deletion: while it is
    /// there, [`ContainerTask::sweep`] finds what is left of the container, so an agent
    /// killed at any point of a removal finishes it when it starts again.
    async fn undo(&mut self, record: &ContainerRecord, joined: &[Joined], netns_path: &Path) {
        kill_all_in(netns_path);
        if self.undo_networks(&record.name, joined).await {
            self.delete_namespace(&record.name);
        }
    }

    /// Whether the store took every deletion.
    async fn undo_networks(&mut self, name: &str, joined: &[Joined]) -> bool {
        // Its published ports first: their rules lead to an address about to go.
        if let Some(egress) = &self.egress
            && let Err(error) = egress.unpublish(&egress::container_owner(name)).await
        {
            tracing::warn!("container {name}: removing its published ports: {error}");
        }
        let mut clean = true;
        for j in joined.iter().rev() {
            let spec = j.endpoint.local_spec(j.vni, &j.attachment.host_interface);
            if let Err(e) = self.datapath.lock().await.remove_local_endpoint(&spec) {
                tracing::warn!("container {name}: datapath removal: {e}");
            }
            // The address before the endpoint: the endpoint is how a sweep after a crash
            // finds what is left, so it goes last.
            if let Err(e) = self.ipam.release(&j.endpoint.network_id, &Release::Endpoint(j.endpoint.id.clone())).await {
                tracing::warn!("container {name}: releasing {}: {e}", j.endpoint.ip);
                clean = false;
            }
            if let Err(e) = endpoint::withdraw(&self.store, &j.endpoint).await {
                tracing::warn!("container {name}: withdrawing its endpoint: {e}");
                clean = false;
            }
            if let Err(e) = container::detach(&self.host, &j.attachment).await {
                tracing::warn!("container {name}: {e}");
            }
        }
        clean
    }

    /// Deletes the status of container `name` if this node wrote it: a container of the
    /// same name made again on another host may have written its own already.
    async fn delete_own_status(&self, name: &str) -> Result<(), crate::store::StoreError> {
        let key = record::status_key(name);
        let Some(entry) = self.store.get(&key).await? else { return Ok(()) };
        let theirs = serde_json::from_slice::<ContainerStatus>(&entry.value)
            .is_ok_and(|status| status.node_id != self.config.node_id);
        if !theirs {
            self.store.delete_if(&key, entry.mod_revision).await?;
        }
        Ok(())
    }

    fn delete_namespace(&self, name: &str) {
        let netns_name = self.config.netns_name(name);
        let _ = dns::remove_netns_resolv_conf(&netns_name);
        if let Err(e) = container::delete_namespace(&netns::path(&netns_name)) {
            tracing::warn!("container {name}: {e}");
        }
    }

    /// Finishes removing containers whose namespace is here but that this node no
    /// longer runs: removed or moved while the agent was down, or half-removed when it
    /// was killed. Their endpoints and addresses are found in the store (published by
    /// this node under the container's name). `keep` names the containers to leave.
    async fn sweep(&mut self, keep: impl Fn(&str) -> bool) {
        let orphans: Vec<String> = match std::fs::read_dir(netns::NETNS_DIR) {
            Ok(entries) => entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_prefix(&self.config.netns_prefix).map(str::to_owned))
                // Only what a container can be named: the Docker resolver's namespace
                // shares the prefix (`_docker-dns`, which no container name can be).
                .filter(|name| record::validate_name(name).is_ok() && !keep(name))
                .collect(),
            Err(_) => return,
        };
        if orphans.is_empty() {
            return;
        }
        let listing = match self.store.list(endpoint::ENDPOINTS).await {
            Ok(listing) => listing,
            Err(error) => {
                tracing::warn!("cannot sweep leftover containers {orphans:?} yet: {error}");
                return;
            }
        };
        for name in orphans {
            let mut joined = Vec::new();
            for entry in &listing.entries {
                let Some(e) = EndpointRecord::parse(&entry.key, &entry.value) else { continue };
                if e.node_id != self.config.node_id || e.container != name {
                    continue;
                }
                let vni = match self.ipam.network(&e.network_id, false).await {
                    Ok(network) => network.vni,
                    // Not while it holds an address: the network cannot go before it.
                    Err(error) => {
                        tracing::warn!("container {name}: network {} of a leftover endpoint: {error}", e.network_id);
                        continue;
                    }
                };
                let attachment = Attachment {
                    interface: String::new(),
                    host_interface: container::host_interface_name(&e.id),
                    ip: e.ip,
                    prefix_len: 0,
                    mac: e.mac,
                    mtu: self.config.mtu,
                    default_gateway: None,
                };
                joined.push(Joined { vni, internal: false, attachment, endpoint: e, network_name: String::new() });
            }
            tracing::info!("container {name} is no longer placed here; removing what is left of it");
            let netns_path = netns::path(&self.config.netns_name(&name));
            kill_all_in(&netns_path);
            let mut clean = self.undo_networks(&name, &joined).await;
            clean &= self.delete_own_status(&name).await.is_ok();
            if clean {
                self.delete_namespace(&name);
            }
        }
    }
}

/// SIGKILL to every process in a container's namespace.
fn kill_all_in(netns_path: &Path) {
    for pid in netns::pids(netns_path) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Why a container did not start; its words go into the container's status.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error("this agent runs without egress, so it publishes no ports")]
    NoEgress,
    #[error(
        "network {network} is internal: nothing of it is reachable from outside, so no port of it can be published; \
         drop -p, or put the container on a non-internal network first"
    )]
    InternalPorts { network: String },
}

impl StartError {
    /// The store did not answer, or this node's lease is being renewed (the membership
    /// registers again and hands out the new lease): not the container's fault, so it
    /// is tried again rather than failed.
    fn is_transient(&self) -> bool {
        match self {
            StartError::Ipam(IpamError::Store(error) | IpamError::Network(NetworkError::Store(error)))
            | StartError::Endpoint(EndpointError::Store { source: error, .. }) => error.is_transient(),
            StartError::Ipam(IpamError::LeaseGone { .. }) => true,
            _ => false,
        }
    }
}

/// What [`ContainerTask::start`] did.
enum Started {
    Running(Box<Running>),
    /// Its status says why.
    Failed,
    /// The store was unreachable: nothing is left of the attempt; try again later.
    Retry,
}

/// Containers whose start met a store outage, tried again with backoff.
#[derive(Default)]
struct Retries {
    due: BTreeMap<String, (ContainerRecord, tokio::time::Instant, Backoff)>,
}

impl Retries {
    fn schedule(&mut self, record: ContainerRecord) {
        let name = record.name.clone();
        let (_, _, mut backoff) = self
            .due
            .remove(&name)
            .unwrap_or_else(|| (record.clone(), tokio::time::Instant::now(), Backoff::new(RETRY_FIRST, RETRY_MAX)));
        let at = tokio::time::Instant::now() + backoff.next_delay();
        self.due.insert(name, (record, at, backoff));
    }

    fn cancel(&mut self, name: &str) {
        self.due.remove(name);
    }

    /// The records whose time has come; each attempt schedules its record again or cancels it.
    fn take_due(&mut self) -> Vec<ContainerRecord> {
        let now = tokio::time::Instant::now();
        let names: Vec<String> = self.due.iter().filter(|(_, (_, at, _))| *at <= now).map(|(n, _)| n.clone()).collect();
        names.into_iter().filter_map(|n| self.due.get(&n).map(|(r, _, _)| r.clone())).collect()
    }
}

const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How soon a status the store refused is written again: `overlay run` is waiting.
const STATUS_RETRY: Duration = Duration::from_millis(500);

fn parse(key: &str, value: &[u8]) -> Option<ContainerRecord> {
    match serde_json::from_slice::<ContainerRecord>(value) {
        Ok(r) if key.strip_prefix(record::CONTAINERS) == Some(r.name.as_str()) => Some(r),
        Ok(_) => {
            tracing::warn!("skipping container record {key}: its name does not match its key");
            None
        }
        Err(e) => {
            tracing::warn!("skipping malformed container record {key}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_ids_are_stable_and_distinct_per_network() {
        let c = "ab".repeat(32);
        let a = endpoint_id(&c, "net1");
        assert_eq!(a, endpoint_id(&c, "net1"));
        assert_eq!(a.len(), 64);
        let b = endpoint_id(&c, "net2");
        assert_ne!(container::host_interface_name(&a), container::host_interface_name(&b));
    }
}
