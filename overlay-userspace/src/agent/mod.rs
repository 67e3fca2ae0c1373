//! `overlay agent`: the privileged host daemon. [`run`] checks its options, connects to
//! the store, joins the cluster, brings up the eBPF datapath ([`datapath_setup`]) and
//! runs the daemon's tasks until a signal stops them or one fails: the membership
//! (`cluster::Membership`), the datapath tables ([`datapath_task`], from what
//! [`reconcile`] computes), the containers ([`container_task`]), the host's routes
//! (`network::host`), the metrics and, with `--docker`, the Docker plugin (`docker`).
//! docs/agent.md has the table.

pub mod cleanup;
pub mod container_task;
pub mod datapath_setup;
pub mod datapath_task;
pub mod reconcile;

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use crate::{
    cluster::{ClusterError, HostFacts, Identity, Membership, NodeRecord, Timing, node},
    shutdown::Shutdown,
    store::{self, Backoff, StoreConfig, StoreError},
};

/// Everything the agent needs, validated before the first write.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub store: StoreConfig,
    /// Give up if the store stays unreachable this long at start; `None`: keep trying.
    pub store_timeout: Option<Duration>,
    pub advertise: IpAddr,
    /// Defaults to the host name.
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state_dir: PathBuf,
    pub reset_identity: bool,
    pub timing: Timing,
    /// The eBPF datapath: pins and underlay interface.
    pub datapath: datapath_setup::DatapathOptions,
    /// Container namespaces are /run/netns/PREFIX+NAME.
    pub netns_prefix: String,
    /// Prometheus metrics on this loopback address; `None`: no metrics endpoint.
    pub metrics: Option<std::net::SocketAddr>,
    /// The resolv.conf whose nameservers the containers' DNS forwards to.
    pub upstream_resolv_conf: PathBuf,
    /// The Docker network and IPAM plugin; `None`: off. Its MTU is set by the agent.
    pub docker: Option<crate::docker::PluginConfig>,
    /// The address of the resolver for Docker containers (link-local; dockerd's
    /// resolv.conf names it), in a namespace of its own, PREFIX + `_docker-dns`.
    pub docker_dns: Option<std::net::Ipv4Addr>,
    /// dockerd served to the managers over mutual TLS (with the plugin); `None`: off.
    pub engine: Option<crate::engine::endpoint::EndpointConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the datapath could not start: {0}")]
    Datapath(#[from] datapath_setup::SetupError),
    #[error("the datapath task failed: {0}")]
    DatapathTask(#[from] crate::datapath::DatapathError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    #[error("the Docker engine endpoint: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("egress could not start: {0}")]
    Egress(#[from] crate::egress::EgressError),
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
    #[error("the overlay's underlay is IPv4: --advertise {0} is not an IPv4 address")]
    NotIpv4(IpAddr),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("agent task {0} failed: {1}")]
    Task(&'static str, String),
}

/// Runs the agent until `shutdown` fires. On a clean stop the node's lease is revoked,
/// so the node disappears from the cluster at once.
pub async fn run(config: AgentConfig, shutdown: Shutdown) -> Result<(), AgentError> {
    // Checks that need the host but write nothing.
    node::check_local_address(config.advertise)?;
    let facts = HostFacts::gather()?;
    let name = config.name.clone().unwrap_or_else(|| facts.hostname.clone());
    node::validate_name(&name)?;

    let IpAddr::V4(vtep) = config.advertise else { return Err(AgentError::NotIpv4(config.advertise)) };
    if let Some(addr) = config.metrics {
        crate::metrics::check_address(addr)?;
    }
    // One agent per datapath, refused before anything is sent to the store or the kernel.
    let _pin_lock = crate::datapath::lock_pin_dir(&config.datapath.pin_dir)
        .map_err(|e| AgentError::Datapath(datapath_setup::SetupError::Datapath(e)))?;
    let store = match store::connect(&config.store, config.store_timeout, &shutdown).await {
        Err(StoreError::Stopped) => return Ok(()),
        other => other?,
    };
    // Held until the agent exits: one agent per state directory (and identity).
    let _state_lock = crate::cluster::lock_state_dir(&config.state_dir)?;
    let identity = Identity::load_or_create(&config.state_dir, config.reset_identity)?;
    // The engine endpoint listens before the node record names it.
    let engine = match &config.engine {
        Some(endpoint) => {
            let driver = config.docker.as_ref().map(|p| p.name.clone()).unwrap_or_default();
            let bound = crate::engine::endpoint::bind(endpoint).await?;
            Some((bound, crate::cluster::EngineEndpoint { address: endpoint.listen, network_driver: driver }))
        }
        None => None,
    };
    let record = NodeRecord {
        id: identity.id.clone(),
        name,
        address: config.advertise,
        hostname: facts.hostname,
        kernel_version: facts.kernel_version,
        os: facts.os,
        cpus: facts.cpus,
        memory_bytes: facts.memory_bytes,
        labels: config.labels.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        containers: 0,
        heartbeat_ms: u64::try_from(config.timing.heartbeat.as_millis()).unwrap_or(u64::MAX),
        ttl_secs: config.timing.ttl.as_secs(),
        started_at: crate::cluster::unix_now(),
        engine: engine.as_ref().map(|(_, registered)| registered.clone()),
    };

    // Joining may meet a store that went away after the first probe: retry those
    // failures, but a duplicate identity is final.
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    let mut membership = loop {
        match Membership::join(store.clone(), record.clone(), identity.clone(), config.timing).await {
            Ok(membership) => break membership,
            Err(ClusterError::Store(error)) if error.is_transient() => {
                let delay = backoff.next_delay();
                tracing::warn!("joining the cluster failed ({error}); retrying in {delay:?}");
                if shutdown.sleep(delay).await.is_err() {
                    return Ok(());
                }
            }
            Err(error) => return Err(error.into()),
        }
    };

    // The datapath comes up once the node is admitted (a cloned identity is refused
    // before anything is attached), and a host that cannot forward leaves at once.
    // Pinned state of a previous run is adopted, so forwarding goes on across restarts.
    let host = match crate::netlink::Netlink::connect() {
        Ok(host) => host,
        Err(error) => {
            membership.leave().await;
            return Err(error.into());
        }
    };
    let ready = match datapath_setup::start(vtep, &config.datapath, &host).await {
        Ok(ready) => ready,
        Err(error) => {
            membership.leave().await;
            return Err(error.into());
        }
    };
    tracing::info!(
        underlay = %ready.underlay_interface,
        container_mtu = ready.container_mtu,
        pin_dir = %config.datapath.pin_dir.display(),
        "datapath attached"
    );
    let container_mtu = ready.container_mtu;
    // The host's egress rules (its own nftables table), kept as a previous agent left
    // them until the tasks below have read the cluster.
    let egress = match crate::egress::Egress::start(&host, &ready.underlay_interface).await {
        Ok(egress) => std::sync::Arc::new(egress),
        Err(error) => {
            membership.leave().await;
            return Err(error.into());
        }
    };
    let mut datapath = ready.datapath;
    if let Err(error) = datapath.set_egress_device(egress.device, crate::egress::host::DEVICE_MAC) {
        membership.leave().await;
        return Err(AgentError::Datapath(datapath_setup::SetupError::Datapath(error)));
    }
    let datapath = std::sync::Arc::new(tokio::sync::Mutex::new(datapath));
    // The cluster's epoch as this agent first finds it: a store that later lacks it, or
    // holds another, lost its data, and the tasks below republish instead of removing.
    let epoch = std::sync::Arc::new(crate::cluster::Epoch::new());
    if let Err(error) = epoch.check(&store).await {
        tracing::warn!("reading the cluster's epoch: {error}; its first task to look reads it");
    }

    // The tasks stop on the operator's signal, or when one of them fails (the others
    // then clean up as on a signal).
    let (stop_all, tasks_shutdown) = crate::shutdown::channel();
    let mut tasks = tokio::task::JoinSet::new();
    let node_id = membership.record().id.clone();
    let node_name = membership.record().name.clone();
    let containers = crate::metrics::ContainerCount::default();
    membership.count_containers(containers.clone());
    let lease = membership.lease();
    let docker_lease = membership.lease();
    let host_networks_lease = membership.lease();
    tasks.spawn({
        let shutdown = tasks_shutdown.clone();
        async move { ("membership", membership.run(shutdown).await.map_err(AgentError::from)) }
    });

    let names = crate::dns::NameView::new();
    let upstreams = match crate::dns::Upstreams::from_resolv_conf(
        &config.upstream_resolv_conf,
        std::time::Duration::from_secs(2),
    ) {
        Ok(upstreams) => upstreams,
        Err(error) => {
            tracing::warn!("containers' DNS will not forward other names: {error}");
            crate::dns::Upstreams::new(Vec::new(), std::time::Duration::from_secs(2))
        }
    };
    let upstreams = std::sync::Arc::new(upstreams);
    let resolver_netns = format!("{}{}", config.netns_prefix, crate::docker::resolver_namespace::NETNS_SUFFIX);
    if config.docker.is_none() || config.docker_dns.is_none() {
        crate::docker::resolver::remove_stale(&resolver_netns, &datapath, &host).await;
    }
    if let Some(mut plugin) = config.docker.clone() {
        plugin.mtu = container_mtu;
        let dns = config.docker_dns.map(|address| crate::docker::DockerDns {
            address,
            netns: resolver_netns,
            upstreams: upstreams.clone(),
        });
        let backend = crate::docker::Backend {
            store: store.clone(),
            ipam: crate::network::ipam::Ipam::new(store.clone()),
            datapath: datapath.clone(),
            host: host.clone(),
            node_id: node_id.clone(),
            node_name: node_name.clone(),
            lease: docker_lease,
            egress: Some(egress.clone()),
            epoch: Some(epoch.clone()),
        };
        let shutdown = tasks_shutdown.clone();
        tasks.spawn(async move {
            ("docker", crate::docker::serve(plugin, backend, dns, shutdown).await.map_err(AgentError::from))
        });
    }
    if let Some((bound, _)) = engine {
        let shutdown = tasks_shutdown.clone();
        tasks.spawn(async move {
            bound.serve(shutdown).await;
            ("engine", Ok(()))
        });
    }
    let convergence = std::sync::Arc::new(std::sync::Mutex::new(crate::metrics::ConvergenceStats::default()));
    tasks.spawn({
        let (store, datapath, me, stats, names, egress) =
            (store.clone(), datapath.clone(), node_id.clone(), convergence.clone(), names.clone(), egress.clone());
        let (epoch, shutdown) = (epoch.clone(), tasks_shutdown.clone());
        async move {
            let wiring = datapath_task::Wiring { names: Some(names), egress: Some(egress), epoch: Some(epoch) };
            let result = datapath_task::run(store, datapath, me, stats, wiring, shutdown).await;
            ("datapath", result.map_err(AgentError::from))
        }
    });
    let container_task = container_task::ContainerTask {
        store: store.clone(),
        ipam: crate::network::ipam::Ipam::new(store.clone()),
        datapath: datapath.clone(),
        host: host.clone(),
        lease,
        config: container_task::ContainerConfig {
            node_id: node_id.clone(),
            node_name: node_name.clone(),
            netns_prefix: config.netns_prefix.clone(),
            mtu: container_mtu,
            log_dir: config.state_dir.join("logs"),
        },
        count: containers.clone(),
        dns: Some(container_task::DnsWiring { view: names.clone(), upstreams: upstreams.clone() }),
        egress: Some(egress.clone()),
        epoch: Some(epoch.clone()),
        unpublished: Default::default(),
    };
    tasks.spawn({
        let shutdown = tasks_shutdown.clone();
        async move {
            container_task.run(shutdown).await;
            ("containers", Ok(()))
        }
    });
    tasks.spawn({
        let (store, id, name) = (store.clone(), node_id.clone(), node_name.clone());
        let (shutdown, lease) = (tasks_shutdown.clone(), host_networks_lease);
        async move {
            let interval = crate::network::host::PUBLISH_INTERVAL;
            crate::network::host::run_publisher(store, id, name, interval, Some(lease), shutdown).await;
            ("host-networks", Ok(()))
        }
    });
    if let Some(addr) = config.metrics {
        let sources = crate::metrics::Sources { datapath: datapath.clone(), convergence, containers };
        let shutdown = tasks_shutdown.clone();
        tasks.spawn(async move {
            ("metrics", crate::metrics::serve(addr, sources, shutdown).await.map_err(AgentError::from))
        });
    }
    let mut result = Ok(());
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = shutdown.wait(), if !stopping => {
                stopping = true;
                stop_all.fire();
            }
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok((_, Ok(())))) => {}
                Some(Ok((_, Err(error)))) => {
                    stop_all.fire();
                    if result.is_ok() {
                        result = Err(error);
                    }
                }
                Some(Err(join_error)) => {
                    stop_all.fire();
                    if result.is_ok() {
                        result = Err(AgentError::Task("agent", join_error.to_string()));
                    }
                }
            },
        }
    }
    result
}
