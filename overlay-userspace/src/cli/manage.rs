//! `overlay manage`: the manager daemon (node health, placement; one of several leads),
//! and with `--docker-api` the cluster's Docker Engine API.

use std::time::Duration;

use clap::Args;
use overlay::{
    cluster::{HostFacts, ManagerConfig, manager, node},
    engine::{ApiAddress, CertFiles, EngineConfig, ManagerFacts},
};

use super::common::{StoreArgs, TimingArgs, parse_duration, store_timeout_arg};

#[derive(Debug, Args)]
pub struct ManageArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The manager's name (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// This host's address, shown in `overlay info` (optional).
    #[arg(long, env = "OVERLAY_ADVERTISE")]
    pub advertise: Option<String>,
    /// How often the leading manager checks the nodes' heartbeats.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub check_interval: Duration,
    /// Give up if the store stays unreachable this long at start (default: keep trying).
    #[arg(long, value_parser = parse_duration)]
    pub store_timeout: Option<Duration>,
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Serve the Docker Engine API here, for the docker CLI (repeatable):
    /// unix:///run/overlay/docker.sock (root-only), or tcp://IP:PORT (TLS with client
    /// certificates; plain only on loopback). Needs --tls-ca, --tls-cert and --tls-key.
    #[arg(long = "docker-api", value_name = "URL")]
    pub docker_api: Vec<String>,
    /// The cluster CA (PEM): clients of a TCP listener and the agents' engines must have
    /// certificates it signed.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<std::path::PathBuf>,
    /// The manager's certificate (PEM), signed by the cluster CA: the server certificate of
    /// its TCP listeners (naming their address) and its client certificate to the agents.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
    pub tls_key: Option<std::path::PathBuf>,
}

pub fn run(args: ManageArgs) -> anyhow::Result<()> {
    let store_config = args.store.config()?;
    let timing = args.timing.timing()?;
    let address = args.advertise.as_deref().map(node::parse_advertise).transpose()?;
    if args.check_interval < Duration::from_millis(100) {
        anyhow::bail!("--check-interval {:?} is below 100ms", args.check_interval);
    }
    let facts = HostFacts::gather()?;
    let name = args.name.unwrap_or_else(|| facts.hostname.clone());
    node::validate_name(&name)?;
    let engine = if args.docker_api.is_empty() {
        None
    } else {
        let listen = args.docker_api.iter().map(|a| ApiAddress::parse(a)).collect::<Result<Vec<_>, _>>()?;
        let files = match (args.tls_ca, args.tls_cert, args.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(CertFiles { ca, cert, key }),
            _ => None,
        };
        let facts = ManagerFacts {
            name: name.clone(),
            hostname: facts.hostname.clone(),
            kernel_version: facts.kernel_version.clone(),
            os: facts.os.clone(),
        };
        Some(EngineConfig::new(listen, files, facts)?)
    };
    let config = ManagerConfig { name, address, hostname: facts.hostname, timing, check_interval: args.check_interval };
    let store_timeout = store_timeout_arg(args.store_timeout, None);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let shutdown = overlay::shutdown::on_signals()?;
        // The Engine API's sockets are bound before the store is reached: a taken port
        // fails the start at once.
        let listeners = match &engine {
            Some(engine) => engine.bind().await?,
            None => Vec::new(),
        };
        let store = match overlay::store::connect(&store_config, store_timeout, &shutdown).await {
            Err(overlay::store::StoreError::Stopped) => return Ok(()),
            other => other?,
        };
        let serving = engine
            .map(|engine| tokio::spawn(overlay::engine::serve(store.clone(), engine, listeners, shutdown.clone())));
        manager::run(store, config, shutdown).await?;
        if let Some(serving) = serving {
            serving.await??;
        }
        Ok(())
    })
}
