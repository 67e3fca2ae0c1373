//! The Docker plugin: libnetwork's remote network driver and remote IPAM driver,
//! served by the agent over HTTP on a unix socket that dockerd discovers
//! (`/run/docker/plugins/NAME.sock`), backed by the cluster's store, IPAM and datapath.
//! See docs/docker.md. One file per job:
//!
//! - [`server`]: the socket and one dispatcher; where an error becomes the protocol's
//!   message. [`protocol`]: the JSON bodies, with Docker's field names.
//! - [`network_driver`]: networks and endpoints, as dockerd calls for them.
//! - [`ipam_driver`]: pools (the cluster networks' subnets) and addresses (the cluster
//!   IPAM's).
//! - [`bindings`]: which cluster network each Docker network of this host is bound to:
//!   binding a new one, waiting for a binding, forgetting networks dockerd lost.
//! - [`endpoints`]: attach, detach and recover Docker endpoints, learn their names,
//!   keep their records on the node's lease.
//! - [`mirror`]: networks created through Docker on another host appear in this dockerd.
//! - [`resolver`]: the resolver that dockerd's embedded DNS forwards to, which tells
//!   Docker containers apart by their address; [`resolver_namespace`]: the namespace it
//!   lives in, which the datapath sends containers' queries to.
//! - [`follow`]: one watch of the cluster and a regular look at dockerd, for the
//!   resolver, the bindings and the mirror.
//! - [`jobs`]: runs the background work calls start ([`plugin::Job`]).
//! - [`plugin`]: what they all share; [`config`]: the settings; [`state`]: what survives
//!   a restart; [`client`]: the local dockerd's Engine API; [`error`]: the errors.
//!
//! Every task runs in [`serve`]'s set and stops with the plugin.

pub mod bindings;
pub mod client;
pub mod config;
pub mod endpoints;
pub mod error;
pub mod follow;
pub mod ipam_driver;
pub mod jobs;
pub mod mirror;
pub mod network_driver;
pub mod plugin;
pub mod protocol;
pub mod resolver;
pub mod resolver_namespace;
pub mod server;
pub mod state;

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use tokio::sync::{Mutex, Notify, mpsc};

pub use client::DockerClient;
pub use config::PluginConfig;
pub use error::{DockerError, DriverError};
pub use plugin::{Backend, Plugin};
pub use resolver::DockerDns;

use crate::{
    dns::NameView,
    shutdown::Shutdown,
    store::{Store, Transact},
};

/// The plugin's default name: `docker network create -d ebpf-overlay --ipam-driver
/// ebpf-overlay`. Not "overlay": dockerd resolves that to its built-in Swarm driver
/// before it looks for plugins.
pub const DEFAULT_NAME: &str = "ebpf-overlay";
/// Where dockerd looks for plugin sockets.
pub const PLUGIN_DIR: &str = "/run/docker/plugins";
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/overlay/docker";
/// Where the resolver for dockerd's embedded DNS is by default (list it as the only
/// `nameserver` of the resolv.conf dockerd reads; docs/docker.md).
pub const DEFAULT_DNS_ADDRESS: Ipv4Addr = resolver_namespace::DEFAULT_ADDRESS;

/// How long the plugin's tasks have to return once it stops; then they are aborted.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves the plugin until `shutdown`: the socket dockerd calls, and the tasks beside it
/// (the job task, the republishing of endpoints, the cluster follower, the resolver for
/// dockerd). Loads the state a previous run left and re-attaches its endpoints first,
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
    let (jobs, queue) = mpsc::unbounded_channel();
    let plugin = Arc::new(Plugin {
        backend,
        docker,
        state: Mutex::new(loaded),
        bindings_changed: Notify::new(),
        jobs,
        shutdown: shutdown.clone(),
        resolver: dns.as_ref().map(|dns| dns.address),
        config,
    });
    let listener = server::listen(&plugin.config.socket)?;
    {
        let mut state = plugin.state.lock().await;
        endpoints::recover(&plugin, &mut state).await;
        // The records of the networks it serves, read now: what it puts back if the
        // store loses them (`endpoint::keep_on_lease`).
        for id in state.networks.values().filter_map(|n| n.cluster_id()) {
            if let Err(error) = plugin.backend.ipam.network(id, false).await {
                tracing::debug!("network {id}: {error}");
            }
        }
        bindings::resume(&plugin, &state);
        plugin.save_or_log(&state);
    }
    let view = NameView::new();
    let resolver = match dns {
        Some(dns) => Some(resolver::start(dns, &plugin.backend, view.clone()).await?),
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(jobs::run(plugin.clone(), queue));
    tasks.spawn(endpoints::republish(plugin.clone()));
    tasks.spawn(follow::run(plugin.clone(), view));
    if let Some(resolver) = resolver {
        let (shutdown, plugin) = (shutdown.clone(), plugin.clone());
        tasks.spawn(async move {
            shutdown.wait().await;
            resolver.stop(&plugin.backend).await;
        });
    }
    tracing::info!(socket = %plugin.config.socket.display(), name = %plugin.config.name, "Docker plugin serving");
    let result = server::run(plugin.clone(), listener, shutdown.clone()).await;
    // The tasks stop on the same shutdown (the resolver closes its sockets, so a new
    // run can bind them again at once); whatever is still busy after that is aborted.
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tasks.shutdown().await;
    }
    let _ = std::fs::remove_file(&plugin.config.socket);
    result
}
