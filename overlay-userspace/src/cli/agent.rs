//! `overlay agent`: the host daemon. Joins the cluster and stays until SIGINT/SIGTERM.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use overlay::{
    agent::{self, AgentConfig},
    cluster::{DEFAULT_STATE_DIR, node},
};

use super::common::{StoreArgs, TimingArgs, parse_duration, store_timeout_arg};

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// This host's underlay address, which the other hosts reach it at (e.g. 192.168.1.141).
    #[arg(long, env = "OVERLAY_ADVERTISE")]
    pub advertise: String,
    /// The node's name in the cluster (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// A label KEY=VALUE for the node (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Where the node's identity is kept.
    #[arg(long, env = "OVERLAY_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Replace the node identity with a fresh one (for a host cloned from another).
    #[arg(long)]
    pub reset_identity: bool,
    /// Give up if the store stays unreachable this long at start (default: keep trying).
    #[arg(long, value_parser = parse_duration)]
    pub store_timeout: Option<Duration>,
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Directory (on a bpffs, mounted if needed) for the datapath's pinned maps and links.
    #[arg(long, env = "OVERLAY_PIN_DIR", default_value = "/run/overlay/bpffs/overlay")]
    pub pin_dir: PathBuf,
    /// The interface VXLAN uses (default: the one holding --advertise).
    #[arg(long)]
    pub underlay_interface: Option<String>,
    /// Container namespaces are /run/netns/PREFIX+NAME (`ip netns exec PREFIX+NAME ...`).
    #[arg(long, default_value = "ovl-")]
    pub netns_prefix: String,
    /// Serve Prometheus metrics on this loopback address ("off" to disable).
    #[arg(long, default_value = "127.0.0.1:9469")]
    pub metrics_addr: String,
    /// The resolv.conf whose nameservers containers' DNS queries are forwarded to.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub upstream_resolv_conf: PathBuf,
    /// Serve the Docker network and IPAM plugin (docs/docker.md).
    #[arg(long)]
    pub docker: bool,
    /// The plugin's name: `docker network create -d NAME --ipam-driver NAME`.
    #[arg(long, default_value = overlay::docker::DEFAULT_NAME)]
    pub docker_plugin: String,
    /// The plugin socket (default /run/docker/plugins/NAME.sock, where dockerd looks).
    #[arg(long)]
    pub docker_plugin_socket: Option<PathBuf>,
    /// dockerd's API socket (container and network names, networks on other hosts).
    #[arg(long, default_value = overlay::docker::DEFAULT_DOCKER_SOCKET)]
    pub docker_socket: PathBuf,
    /// The link-local address of the resolver for Docker containers, which dockerd's
    /// resolv.conf must name as its only nameserver (docs/docker.md); "off": none.
    #[arg(long, default_value = "169.254.77.53")]
    pub docker_dns: String,
    /// The plugin's local state.
    #[arg(long, default_value = overlay::docker::DEFAULT_STATE_DIR)]
    pub docker_state_dir: PathBuf,
    /// The cluster CA (PEM): with --docker-tls-cert and --docker-tls-key, dockerd is served
    /// to the managers over mutual TLS on the advertised address (docs/docker.md).
    #[arg(long, requires_all = ["docker_tls_cert", "docker_tls_key"])]
    pub docker_tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), signed by the cluster CA, naming --advertise (subjectAltName=IP:...).
    #[arg(long, requires_all = ["docker_tls_ca", "docker_tls_key"])]
    pub docker_tls_cert: Option<PathBuf>,
    /// The key of --docker-tls-cert (PEM).
    #[arg(long, requires_all = ["docker_tls_ca", "docker_tls_cert"])]
    pub docker_tls_key: Option<PathBuf>,
    /// The port of that endpoint, on the advertised address.
    #[arg(long, default_value_t = overlay::engine::DEFAULT_ENGINE_PORT)]
    pub docker_engine_port: u16,
    /// Remove what the agent made on this host (container namespaces, pinned datapath,
    /// its nftables table, egress device and routes to containers) and exit, instead of
    /// running.
    #[arg(long)]
    pub cleanup: bool,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    if args.cleanup {
        let report = agent::cleanup::cleanup(&args.pin_dir, &args.netns_prefix)?;
        for ns in &report.namespaces {
            println!("removed container namespace {ns}");
        }
        if report.pins_removed {
            println!("removed the datapath pinned at {}", args.pin_dir.display());
        }
        if report.egress_table_removed {
            println!("removed the nftables table ip {}", overlay::egress::rules::TABLE);
        }
        if report.egress_device_removed {
            println!("removed the egress device {}", overlay::egress::host::DEVICE);
        }
        for ip in &report.container_routes {
            println!("removed the route to container {ip}");
        }
        return Ok(());
    }
    let metrics = match args.metrics_addr.as_str() {
        "off" => None,
        addr => {
            let addr = addr
                .parse()
                .map_err(|_| anyhow::anyhow!("--metrics-addr {addr:?}: use IP:PORT on loopback, or off"))?;
            overlay::metrics::check_address(addr)?;
            Some(addr)
        }
    };
    let docker = if args.docker {
        let mut plugin = overlay::docker::PluginConfig::new(&args.docker_plugin, 1450);
        if let Some(socket) = args.docker_plugin_socket.clone() {
            plugin.socket = socket;
        }
        plugin.docker_socket = Some(args.docker_socket.clone());
        plugin.state_dir = args.docker_state_dir.clone();
        plugin.validate()?;
        Some(plugin)
    } else {
        None
    };
    let docker_dns = match (args.docker, args.docker_dns.as_str()) {
        (false, _) | (true, "off") => None,
        (true, addr) => {
            let addr: std::net::Ipv4Addr = addr
                .parse()
                .map_err(|_| anyhow::anyhow!("--docker-dns {addr:?}: give an IPv4 address (169.254.77.53), or off"))?;
            overlay::docker::resolver_namespace::host_side(addr)?;
            Some(addr)
        }
    };
    let advertise = node::parse_advertise(&args.advertise)?;
    let engine = match (&args.docker_tls_ca, &args.docker_tls_cert, &args.docker_tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            anyhow::ensure!(args.docker, "--docker-tls-* serve dockerd to the managers: they need --docker");
            anyhow::ensure!(args.docker_engine_port != 0, "--docker-engine-port 0 is not a port a manager can be told");
            let files = overlay::engine::CertFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() };
            Some(overlay::engine::endpoint::EndpointConfig {
                listen: std::net::SocketAddr::new(advertise, args.docker_engine_port),
                docker_socket: args.docker_socket.clone(),
                credentials: files.load()?,
            })
        }
        _ => None,
    };
    // Everything is validated before the first write (identity file, store).
    let config = AgentConfig {
        store: args.store.config()?,
        store_timeout: store_timeout_arg(args.store_timeout, None),
        advertise,
        name: args.name.map(|n| node::validate_name(&n).map(|()| n)).transpose()?,
        labels: node::parse_labels(&args.labels)?,
        state_dir: args.state_dir,
        reset_identity: args.reset_identity,
        timing: args.timing.timing()?,
        datapath: agent::datapath_setup::DatapathOptions {
            pin_dir: args.pin_dir,
            underlay_interface: args.underlay_interface,
        },
        netns_prefix: args.netns_prefix,
        metrics,
        upstream_resolv_conf: args.upstream_resolv_conf,
        docker,
        docker_dns,
        engine,
    };
    // glibc gives each thread its own malloc arena; a daemon with a handful of threads
    // and bursty allocations keeps far more resident than it uses. Two arenas suffice.
    // SAFETY: mallopt only sets an allocator parameter, before the runtime's threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let shutdown = overlay::shutdown::on_signals()?;
        agent::run(config, shutdown).await?;
        Ok(())
    })
}
