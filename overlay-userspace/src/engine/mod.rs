//! The cluster's Docker Engine API, served by `overlay manage --docker-api`: the stock
//! docker CLI pointed at the manager drives every node, as classic Swarm's manager did
//! (`docker info | ps | run | network create | network ls | exec | attach`). The
//! manager aggregates what spans the cluster, schedules `run` onto a node and passes the
//! rest to the node that holds the container. Each node's dockerd is reached through its
//! agent, which serves it over mutual TLS on the node's advertised address
//! ([`endpoint`]); the node record carries that endpoint. See docs/docker.md, "The
//! cluster through the docker CLI".
//!
//! - [`address`]: `--docker-api` and the rule that TCP beyond loopback needs TLS with
//!   client certificates.
//! - [`tls`]: the cluster CA, certificates and keys, as rustls configurations.
//! - [`listener`]: the sockets; one HTTP/1.1 task per connection, upgrades allowed.
//! - [`route`] and [`dispatch`]: which endpoint a request is; the one dispatcher.
//! - [`nodes`]: the live nodes and their engines; every node's containers at once; which
//!   node holds a container; what a node that stopped answering last listed.
//! - [`node_client`]: one request to a node's engine, bounded, failures naming the node;
//!   [`keepalive`]: a connection to a host that died is dropped within seconds.
//! - [`aggregate`]: `info` and `ps`; [`networks`]: the cluster's networks.
//! - [`create`]: container creation: placement, constraints, unique names.
//! - [`proxy`] and [`splice`]: requests passed to a node, streamed; the hijacked stream
//!   of attach and exec, half-closes carried over.
//! - [`native`]: the containers of `overlay run`, as `docker ps` shows them.
//! - [`error`], [`body`], [`query`], [`format`]: Docker's shapes of errors, bodies,
//!   query strings, sizes and times.

pub mod address;
pub mod aggregate;
pub mod body;
pub mod create;
mod dispatch;
pub mod endpoint;
mod error;
pub mod format;
pub mod keepalive;
pub mod listener;
pub mod native;
pub mod networks;
pub mod node_client;
pub mod nodes;
pub mod proxy;
pub mod query;
pub mod route;
pub mod splice;
pub mod tls;

use std::sync::{Arc, Mutex, MutexGuard};

pub use address::{ApiAddress, DEFAULT_SOCKET};
pub use aggregate::ManagerFacts;
pub use error::{ApiError, EngineError};
pub use listener::Listener;
pub use tls::{CertFiles, Credentials};

use crate::{
    shutdown::Shutdown,
    store::{Store, Transact},
};

/// The default port of an agent's engine endpoint (IANA's port for Docker over TLS).
pub const DEFAULT_ENGINE_PORT: u16 = 2376;

/// What `overlay manage --docker-api` serves with, checked before anything listens.
pub struct EngineConfig {
    pub listen: Vec<ApiAddress>,
    /// The manager's certificate: its TLS listeners' server certificate, and its client
    /// certificate towards the agents' endpoints.
    pub credentials: Credentials,
    pub manager: ManagerFacts,
}

impl EngineConfig {
    /// Checks the addresses and reads the certificates. The manager reaches the agents
    /// only over mutual TLS, so the certificates are needed whatever it listens on.
    pub fn new(
        listen: Vec<ApiAddress>,
        files: Option<CertFiles>,
        manager: ManagerFacts,
    ) -> Result<EngineConfig, EngineError> {
        let Some(files) = files else {
            let open = listen.iter().find(|a| a.needs_tls());
            return Err(EngineError::Config(match open {
                Some(address) => format!(
                    "{address} would serve the Engine API to the network without authentication: a TCP address \
                     other than loopback is served only over TLS with client certificates; give --tls-ca, \
                     --tls-cert and --tls-key (docs/docker.md)"
                ),
                None => "the manager reaches the agents' Docker engines over mutual TLS: give --tls-ca, \
                         --tls-cert and --tls-key (docs/docker.md)"
                    .to_owned(),
            }));
        };
        if listen.is_empty() {
            return Err(EngineError::Config("no --docker-api address".into()));
        }
        Ok(EngineConfig { listen, credentials: files.load()?, manager })
    }

    /// Binds every address (TCP beyond loopback with TLS). Must be called inside a tokio
    /// runtime.
    pub async fn bind(&self) -> Result<Vec<Listener>, EngineError> {
        let server_tls = self.credentials.server_config()?;
        let mut listeners = Vec::new();
        for address in &self.listen {
            let tls = address.needs_tls().then(|| server_tls.clone());
            listeners.push(listener::bind(address, tls).await?);
        }
        Ok(listeners)
    }
}

/// The Engine API's shared state.
pub struct Engine<S> {
    pub store: S,
    pub client: node_client::NodeClient,
    pub manager: ManagerFacts,
    /// Container and exec IDs → node, and what each node last listed.
    routes: Mutex<nodes::Routes>,
    /// Held across a creation: its name check and placement see the others' results.
    pub creating: tokio::sync::Mutex<()>,
    /// Hijacked streams end when this fires.
    pub shutdown: Shutdown,
}

impl<S> Engine<S> {
    pub fn routes(&self) -> MutexGuard<'_, nodes::Routes> {
        self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Serves the bound `listeners` until `shutdown`.
pub async fn serve<S: Store + Transact>(
    store: S,
    config: EngineConfig,
    listeners: Vec<Listener>,
    shutdown: Shutdown,
) -> Result<(), EngineError> {
    let engine = Arc::new(Engine {
        store,
        client: node_client::NodeClient::new(config.credentials.client_config()?),
        manager: config.manager,
        routes: Mutex::new(nodes::Routes::default()),
        creating: tokio::sync::Mutex::new(()),
        shutdown: shutdown.clone(),
    });
    let handler: listener::Handler = Arc::new(move |request| {
        let engine = engine.clone();
        Box::pin(async move { dispatch::handle(engine, request).await })
    });
    let mut serving = tokio::task::JoinSet::new();
    for listener in listeners {
        serving.spawn(listener.serve(handler.clone(), shutdown.clone()));
    }
    while serving.join_next().await.is_some() {}
    Ok(())
}
