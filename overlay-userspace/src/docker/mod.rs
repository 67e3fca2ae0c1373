//! The Docker plugin: libnetwork's remote network driver and remote IPAM driver,
//! served by the agent over HTTP on a unix socket that dockerd discovers
//! (`/run/docker/plugins/NAME.sock`), backed by the cluster's store, IPAM and datapath.
//!
//! - [`protocol`]: the JSON bodies, with Docker's field names.
//! - [`server`]: the socket, one dispatcher, the protocol's error shapes.
//! - [`driver`]: networks, endpoints, joins (veth, datapath, endpoint records) and the
//!   IPAM calls (pools are subnets, addresses come from the cluster IPAM).
//! - [`tasks`]: what runs beside the socket: binding new Docker networks to cluster
//!   networks, learning container names, re-publishing under a new lease, the mirror
//!   (networks created through Docker on another host appear in this dockerd) and the
//!   view of the resolver that serves Docker's embedded DNS.
//! - [`client`]: the local dockerd's Engine API.
//! - [`state`]: what survives a restart of the plugin.
//!
//! How a Docker network maps to a cluster network: Docker gives the driver no network
//! name, and its network IDs differ per host. RequestPool gets the subnet, and cluster
//! networks never overlap, so a subnet names at most one cluster network: CreateNetwork
//! binds to the cluster network with that subnet if there is one; otherwise, once
//! dockerd has stored the new network, the plugin reads its name from dockerd's API
//! and creates the cluster network (Docker's network ID as its ID), or binds to one of
//! that name with the same subnet. Networks created through Docker are marked under
//! `v1/docker/networks/CLUSTER_ID`; the agents of the other hosts create them in their
//! dockerd (`POST /networks/create` with the same subnet, which binds by subnet).
//! Bindings are this host's and live in the state file. See docs/docker.md.

pub mod client;
pub mod driver;
pub mod protocol;
pub mod server;
pub mod state;
pub mod tasks;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::PathBuf,
    sync::Arc,
};

use tokio::sync::{Mutex, Notify, watch};

pub use client::DockerClient;

use crate::{
    datapath::Datapath,
    dns::{self, DnsError, Upstreams},
    netlink::Netlink,
    network::SubnetPool,
    network::ipam::Ipam,
    shutdown::Shutdown,
    store::{LeaseId, Store, Transact},
};

/// The plugin's default name: `docker network create -d ebpf-overlay --ipam-driver
/// ebpf-overlay`. Not "overlay": dockerd resolves that to its built-in Swarm driver
/// before it looks for plugins.
pub const DEFAULT_NAME: &str = "ebpf-overlay";
/// Where dockerd looks for plugin sockets.
pub const PLUGIN_DIR: &str = "/run/docker/plugins";
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/overlay/docker";
/// Where the resolver for dockerd's embedded DNS listens by default (list it as the only
/// `nameserver` of the resolv.conf dockerd reads; docs/docker.md).
pub const DEFAULT_DNS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 77)), 53);
/// The IPAM's one address space (local and global): the cluster's subnets.
pub const ADDRESS_SPACE: &str = "OverlayCluster";
/// Marks a cluster network created through Docker (the mirror makes it appear in the
/// dockerd of every host): `v1/docker/networks/CLUSTER_ID` → [`tasks::Marker`].
pub const MARKERS: &str = "v1/docker/networks/";

/// What went wrong with the Docker plugin, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("invalid Docker plugin configuration: {0}")]
    Config(String),
    #[error(
        "cannot listen on the plugin socket {path}: {source}; the agent must run as root and the \
         directory must be writable (dockerd looks in {PLUGIN_DIR})"
    )]
    Listen { path: PathBuf, source: std::io::Error },
    #[error("serving the plugin socket {path}: {source}")]
    Serve { path: PathBuf, source: std::io::Error },
    #[error("the Docker API at {socket}: {message}; is dockerd running (--docker-socket)?")]
    Api { socket: PathBuf, message: String },
    #[error("the plugin state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error(transparent)]
    Dns(#[from] DnsError),
}

/// The plugin's settings, checked by [`PluginConfig::validate`] before anything is made.
#[derive(Clone, Debug)]
pub struct PluginConfig {
    /// The driver and IPAM driver name users give Docker.
    pub name: String,
    /// The socket dockerd discovers: `/run/docker/plugins/NAME.sock`.
    pub socket: PathBuf,
    /// The local dockerd's API: network names, container names, the mirror. `None`:
    /// networks created here are named `docker-ID12`, containers `docker-EP12`, and
    /// nothing is mirrored.
    pub docker_socket: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// MTU of container interfaces: the underlay's minus the VXLAN overhead (50).
    pub mtu: u32,
    /// Subnets for `docker network create` without `--subnet`.
    pub subnet_pool: SubnetPool,
    /// Create the networks made through Docker on other hosts in this dockerd too.
    pub mirror: bool,
}

impl PluginConfig {
    /// The defaults for plugin `name`: its socket under [`PLUGIN_DIR`], dockerd at
    /// [`DEFAULT_DOCKER_SOCKET`], state under [`DEFAULT_STATE_DIR`], the mirror on.
    pub fn new(name: &str, mtu: u32) -> Self {
        PluginConfig {
            name: name.to_owned(),
            socket: PathBuf::from(PLUGIN_DIR).join(format!("{name}.sock")),
            docker_socket: Some(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            mtu,
            subnet_pool: SubnetPool::default(),
            mirror: true,
        }
    }

    pub fn validate(&self) -> Result<(), DockerError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(DockerError::Config(format!(
                "plugin name {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                self.name
            )));
        }
        if !(576..=9000).contains(&self.mtu) {
            return Err(DockerError::Config(format!("container MTU {} is outside 576..=9000", self.mtu)));
        }
        if self.socket.as_os_str().is_empty() || self.state_dir.as_os_str().is_empty() {
            return Err(DockerError::Config("the plugin socket and the state directory must be given".into()));
        }
        Ok(())
    }
}

/// The resolver that dockerd's embedded DNS forwards unknown names to.
pub struct DockerDns {
    pub sockets: dns::Sockets,
    /// Where names that are not the cluster's go (the host's real resolvers; never the
    /// resolver itself).
    pub upstreams: Arc<Upstreams>,
}

/// Binds UDP and TCP `listen` in the calling thread's namespace for [`DockerDns`]. Only a
/// loopback address is accepted: nothing is served to the network.
pub fn bind_dns(listen: SocketAddr) -> Result<dns::Sockets, DockerError> {
    if !listen.ip().is_loopback() {
        return Err(DockerError::Config(format!(
            "the Docker DNS address {listen} is not a loopback address; use one in 127.0.0.0/8"
        )));
    }
    let netns = "host".to_owned();
    let bind = || -> std::io::Result<(UdpSocket, TcpListener)> {
        let udp = UdpSocket::bind(listen)?;
        udp.set_nonblocking(true)?;
        let tcp = TcpListener::bind(listen)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    };
    let (udp, tcp) = bind().map_err(|source| DnsError::Bind { netns: netns.clone(), addr: listen, source })?;
    Ok(dns::Sockets { netns, udp, tcp })
}

/// What the plugin works with: the agent's store, IPAM, datapath and host.
pub struct Backend<S> {
    pub store: S,
    pub ipam: Ipam<S>,
    pub datapath: Arc<Mutex<Datapath>>,
    /// rtnetlink in the host's namespace (the one dockerd runs in).
    pub host: Netlink,
    pub node_id: String,
    pub node_name: String,
    /// The node's current lease: endpoint records and allocations are attached to it.
    pub lease: watch::Receiver<LeaseId>,
}

/// The plugin's shared state: the backend, dockerd's API and the bindings.
pub struct Plugin<S> {
    pub config: PluginConfig,
    pub backend: Backend<S>,
    pub docker: Option<DockerClient>,
    pub state: Mutex<state::State>,
    /// Fired when a binding changes (waiters for a pending network, the DNS view).
    pub bindings_changed: Notify,
    pub shutdown: Shutdown,
}

impl<S> Plugin<S> {
    pub fn lease_id(&self) -> LeaseId {
        *self.backend.lease.borrow()
    }
}

/// Serves the plugin until `shutdown`: the socket dockerd calls, and the tasks beside it
/// ([`tasks`]). Loads the state a previous run left and re-attaches its endpoints first,
/// so containers that kept running stay connected. The socket is removed on return.
pub async fn serve<S: Store + Transact>(
    config: PluginConfig,
    backend: Backend<S>,
    dns: Option<DockerDns>,
    shutdown: Shutdown,
) -> Result<(), DockerError> {
    config.validate()?;
    let loaded = state::State::load(&config.state_dir)?;
    let docker = config.docker_socket.clone().map(DockerClient::new);
    let plugin = Arc::new(Plugin {
        backend,
        docker,
        state: Mutex::new(loaded),
        bindings_changed: Notify::new(),
        shutdown: shutdown.clone(),
        config,
    });
    let listener = server::listen(&plugin.config.socket)?;
    tasks::recover(&plugin).await;
    let mut background = tokio::task::JoinSet::new();
    tasks::spawn_all(&plugin, dns, &mut background)?;
    tracing::info!(socket = %plugin.config.socket.display(), name = %plugin.config.name, "Docker plugin serving");
    let result = server::run(plugin.clone(), listener, shutdown.clone()).await;
    // The tasks stop on the same shutdown (the resolver closes its sockets, so a new
    // run can bind them again at once); whatever is still busy after that is aborted.
    let drained = async { while background.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drained).await.is_err() {
        background.shutdown().await;
    }
    let _ = std::fs::remove_file(&plugin.config.socket);
    result
}
