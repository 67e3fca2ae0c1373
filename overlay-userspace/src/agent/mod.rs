//! `overlay agent`: the privileged host daemon. [`run`] connects to the store, joins
//! the cluster and runs the daemon's tasks until a signal stops them. The datapath
//! (loading eBPF, programming maps from the store) is to be added here as another task
//! beside the membership.


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
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
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

    let store = match store::connect(&config.store, config.store_timeout, &shutdown).await {
        Err(StoreError::Stopped) => return Ok(()),
        other => other?,
    };
    // Held until the agent exits: one agent per state directory (and identity).
    let _state_lock = crate::cluster::lock_state_dir(&config.state_dir)?;
    let identity = Identity::load_or_create(&config.state_dir, config.reset_identity)?;
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
    };

    // Joining may meet a store that went away after the first probe: retry those
    // failures, but a duplicate identity is final.
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    let membership = loop {
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

    // The tasks stop on the operator's signal, or when one of them fails (the others
    // then clean up as on a signal).
    let (stop_all, tasks_shutdown) = crate::shutdown::channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let shutdown = tasks_shutdown.clone();
        async move { ("membership", membership.run(shutdown).await.map_err(AgentError::from)) }
    });
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
