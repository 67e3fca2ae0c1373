//! What every part of the plugin shares: its settings, the agent's store, IPAM,
//! datapath and host, dockerd's API, the state (under one lock) and the queue of
//! background jobs.

use std::sync::Arc;

use tokio::sync::{Mutex, Notify, mpsc, watch};

use super::{client::DockerClient, config::PluginConfig, state::State};
use crate::{
    datapath::Datapath, egress::Egress, netlink::Netlink, network::ipam::Ipam, shutdown::Shutdown, store::LeaseId,
};

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
    /// The host's egress (docs/egress.md): containers' way out and `docker run -p`.
    /// `None`: containers get no way out, and endpoints with published ports are refused.
    pub egress: Option<Arc<Egress>>,
    /// The cluster's epoch, shared with the agent: while a loss of the store's data is
    /// recent, the mirror removes no Docker network. `None`: never held.
    pub epoch: Option<Arc<crate::cluster::Epoch>>,
}

/// Work a call starts and does not wait for. The plugin's job task runs each one
/// (`jobs.rs`) and waits for them all when it stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// Docker created a network on this host: wait until dockerd has stored it, then
    /// bind it to its cluster network if it is not bound yet (`bindings::settle`).
    SettleNetwork { docker_id: String },
    /// An endpoint joined: learn its container's name and aliases from dockerd and
    /// publish them (`endpoints::learn_name`).
    LearnName { endpoint_id: String },
}

/// The plugin's shared state.
pub struct Plugin<S> {
    pub config: PluginConfig,
    pub backend: Backend<S>,
    pub docker: Option<DockerClient>,
    /// Operations that change the state hold this lock throughout, so dockerd's calls
    /// and the background tasks never interleave halfway.
    pub state: Mutex<State>,
    /// Fired when a binding changes (waiters for a pending network, the DNS view).
    pub bindings_changed: Notify,
    pub jobs: mpsc::UnboundedSender<Job>,
    pub shutdown: Shutdown,
    /// The address of the resolver for this host's Docker containers, if it serves one
    /// (`Join` routes it through the network's gateway, also on internal networks).
    pub resolver: Option<std::net::Ipv4Addr>,
}

impl<S> Plugin<S> {
    pub fn lease_id(&self) -> LeaseId {
        *self.backend.lease.borrow()
    }

    /// Queues `job` for the job task. After shutdown nothing runs it, which is what
    /// shutdown means.
    pub fn submit(&self, job: Job) {
        if self.jobs.send(job).is_err() {
            tracing::debug!("the plugin is stopping; a background job is dropped");
        }
    }

    /// Saves the state, logging a failure: for background work, which has nobody to
    /// answer (a call answers with the error instead).
    pub fn save_or_log(&self, state: &State) {
        if let Err(error) = state.save(&self.config.state_dir) {
            tracing::error!("{error}");
        }
    }
}
