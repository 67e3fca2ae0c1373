//! Docker on simulated hosts: a real dockerd (Debian's docker.io) per lab host, and an
//! in-process "agent" per host (store session with a lease, eBPF datapath following
//! the store, and the Docker plugin) running on a tokio runtime whose threads live in
//! the host's namespace.
//!
//! Each dockerd runs inside its host's network namespace and a mount namespace of its
//! own, where its plugin directory (/run/docker/plugins) and its /etc/resolv.conf are
//! this test's files: two dockerds on one machine each find their own host's plugin,
//! and forward the names they do not know to their own host's resolver. dockerd runs
//! with `--iptables=false --ip-masq=false --bridge=none`: no NAT, no bridge, no route
//! to the machine's interfaces. Images come from `docker import` of a busybox-static
//! root filesystem; nothing is pulled.

use std::{
    io::{Read, Write},
    net::Ipv4Addr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use overlay::{
    agent::datapath_task,
    cluster::{NodeRecord, keys as cluster_keys},
    datapath::{Datapath, DatapathConfig, ensure_bpffs},
    dns::{NameView, Upstreams},
    docker::{self, Backend, DockerDns, PluginConfig},
    metrics,
    netlink::Netlink,
    netns,
    network::ipam::Ipam,
    shutdown::{self, Shutdown, Trigger},
    store::{self, AnyStore, LeaseId, Store, StoreConfig, TlsFiles},
};
use tokio::sync::{Mutex, watch};

use crate::{
    cmd,
    etcd::tail,
    lab::{BPFFS, Host},
};

/// The image every Docker test container runs.
pub const IMAGE: &str = "ovt-busybox:latest";
/// The resolver for each host's Docker containers, which dockerd's resolv.conf names
/// (the plugin serves it in a namespace of its own; docs/docker.md).
pub const DNS_ADDRESS: Ipv4Addr = docker::DEFAULT_DNS_ADDRESS;
/// The plugin's name (its default), as `docker network create -d` takes it.
pub const PLUGIN: &str = docker::DEFAULT_NAME;
/// Container MTU: the lab's 1500-byte underlay minus VXLAN.
pub const MTU: u32 = 1450;

/// `network create -d PLUGIN --ipam-driver PLUGIN --subnet SUBNET NAME`: a network of
/// the plugin, bound to the cluster network of that subnet if there is one.
pub fn network_create<'a>(subnet: &'a str, name: &'a str) -> [&'a str; 9] {
    ["network", "create", "-d", PLUGIN, "--ipam-driver", PLUGIN, "--subnet", subnet, name]
}

/// Debian's docker CLI (Docker 20.10, like the daemon), else whatever `docker` is.
pub fn docker_cli() -> &'static str {
    if Path::new("/usr/bin/docker").exists() { "/usr/bin/docker" } else { "docker" }
}

/// A busybox root filesystem as a tar file in `dir`: /bin/busybox (busybox-static) and
/// the applets the tests use.
pub fn busybox_rootfs(dir: &Path) -> anyhow::Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox not found: install Debian's busybox-static");
    }
    let root = dir.join("rootfs");
    for sub in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    for applet in ["sh", "ping", "nslookup", "sleep", "cat", "ip", "hostname", "true", "tty"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    let tar = dir.join("rootfs.tar");
    cmd::run(&["tar", "-C", root.to_str().context("temp path")?, "-cf", tar.to_str().context("temp path")?, "."])?;
    Ok(tar)
}

/// A dockerd on a lab host. Stopped (containers removed first) on drop.
pub struct Dockerd {
    pub host: String,
    /// The host's namespace, where dockerd runs.
    ns: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// The directory bound over /run/docker/plugins for this dockerd.
    pub plugins: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd in `host`'s namespace; its resolv.conf names only `resolver`.
    pub fn start(host: &Host, resolver: Ipv4Addr) -> anyhow::Result<Self> {
        if !Path::new("/usr/sbin/dockerd").exists() {
            bail!("/usr/sbin/dockerd not found: install Debian's docker.io");
        }
        let dir = std::env::temp_dir().join(format!("ovt-docker-{}-{:08x}", host.name, rand::random::<u32>()));
        let plugins = dir.join("plugins");
        for sub in ["data", "exec", "plugins"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let resolv = dir.join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {resolver}\n"))?;
        let socket = dir.join("docker.sock");
        let log = dir.join("dockerd.log");
        let mut dockerd =
            Dockerd { host: host.name.clone(), ns: host.ns.clone(), dir, socket, plugins, log, child: None };
        dockerd.run()?;
        Ok(dockerd)
    }

    /// Starts the daemon on this dockerd's directories, waits until it answers, and
    /// imports the image if its data root does not hold it.
    fn run(&mut self) -> anyhow::Result<()> {
        let d = |p: &Path| p.display().to_string();
        let script = format!(
            "set -e; mkdir -p /run/docker/plugins; mount --make-rprivate /; \
             mount --bind {plugins} /run/docker/plugins; mount --bind {resolv} /etc/resolv.conf; \
             exec /usr/sbin/dockerd --data-root {data} --exec-root {exec} --pidfile {dir}/dockerd.pid \
             -H unix://{socket} --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
             --userland-proxy=false --shutdown-timeout 1",
            plugins = d(&self.plugins),
            resolv = d(&self.dir.join("resolv.conf")),
            data = d(&self.dir.join("data")),
            exec = d(&self.dir.join("exec")),
            dir = d(&self.dir),
            socket = d(&self.socket),
        );
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting dockerd")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.docker(&["version", "--format", "{{.Server.Version}}"]).is_err() {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("dockerd on {} exited ({status}):\n{}", self.host, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("dockerd on {} did not answer within 60s:\n{}", self.host, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if self.docker(&["image", "inspect", IMAGE]).is_err() {
            let made = self.dir.join("rootfs.tar");
            let rootfs = if made.exists() { made } else { busybox_rootfs(&self.dir)? };
            self.docker(&["import", rootfs.to_str().context("temp path")?, IMAGE])?;
        }
        Ok(())
    }

    /// What a host whose dockerd lost its data root looks like: dockerd stopped, its
    /// data root (networks, containers, images) deleted, dockerd started again on an
    /// empty one (the image imported again). The plugin is not told.
    pub fn restart_wiped(&mut self) -> anyhow::Result<()> {
        self.remove_all_containers();
        self.stop();
        std::fs::remove_dir_all(self.dir.join("data"))?;
        std::fs::create_dir_all(self.dir.join("data"))?;
        self.run()
    }

    /// The IDs of this dockerd's networks named `name`.
    pub fn network_ids(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let ls = self.docker(&["network", "ls", "--no-trunc", "--filter", &format!("name=^{name}$"), "-q"])?;
        Ok(ls.split_whitespace().map(str::to_owned).collect())
    }

    /// `docker ARGS` against this dockerd; stdout, or an error with stderr.
    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        let host = format!("unix://{}", self.socket.display());
        let mut all = vec![docker_cli(), "-H", &host];
        all.extend_from_slice(args);
        cmd::run(&all)
    }

    /// `docker ARGS` whatever its exit status: (success, stdout + stderr).
    pub fn docker_status(&self, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let host = format!("unix://{}", self.socket.display());
        let mut all = vec![docker_cli(), "-H", &host];
        all.extend_from_slice(args);
        let out = cmd::output(&all)?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    /// The options that make `overlay agent` serve the plugin to this dockerd: its
    /// plugin socket, dockerd's API socket, the DNS that dockerd's resolv.conf names,
    /// and the plugin's state in `state_dir`.
    pub fn agent_args(&self, state_dir: &Path) -> Vec<String> {
        let plugin = self.plugin_socket(PLUGIN);
        [
            "--docker",
            "--docker-plugin-socket",
            &plugin.to_string_lossy(),
            "--docker-socket",
            &self.socket.to_string_lossy(),
            "--docker-dns",
            &DNS_ADDRESS.to_string(),
            "--docker-state-dir",
            &state_dir.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Where the plugin named `name` must listen for this dockerd to find it.
    pub fn plugin_socket(&self, name: &str) -> PathBuf {
        self.plugins.join(format!("{name}.sock"))
    }

    pub fn log_tail(&self) -> String {
        format!("--- dockerd on {} ({}) ---\n{}", self.host, self.log.display(), tail(&self.log, 30))
    }

    /// Removes every container (while the plugin still answers, so endpoints are
    /// undone and addresses released).
    pub fn remove_all_containers(&self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
    }
}

impl Dockerd {
    /// Stops the daemon (TERM, then KILL after 20 s) and waits for it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = std::fs::read_to_string(self.dir.join("dockerd.pid")).unwrap_or_default();
            let pid = pid.trim();
            if !pid.is_empty() {
                let _ = cmd::run(&["kill", "-TERM", pid]);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if matches!(child.try_wait(), Ok(None)) {
                if !pid.is_empty() {
                    let _ = cmd::run(&["kill", "-KILL", pid]);
                }
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One simulated host's agent, in-process: a store session whose lease is kept alive,
/// the datapath following the store, and (on demand) the Docker plugin. Its runtime's
/// threads entered the host's namespace, so everything it does happens there.
pub struct Node {
    pub name: String,
    pub host: Host,
    pub id: String,
    pub store: AnyStore,
    pub datapath: Arc<Mutex<Datapath>>,
    /// The cluster's names as the datapath task keeps them (what native containers'
    /// resolvers answer from).
    pub names: NameView,
    lease: watch::Sender<LeaseId>,
    stop: Option<Trigger>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    pub fn start(host: &Host, url: &str) -> anyhow::Result<Node> {
        ensure_bpffs(Path::new(BPFFS))?;
        let runtime = netns::run_in(&host.ns, || {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
        })??;
        let config = StoreConfig::new(url, &TlsFiles::default(), None, None)?;
        let id = format!("{:032x}", rand::random::<u128>());
        let host2 = host.clone();
        let id2 = id.clone();
        let (store, datapath, lease) = block_on(&runtime, async move {
            let store = store::connect(&config, Some(Duration::from_secs(10)), &Shutdown::never()).await?;
            let lease = register(&store, &host2, &id2).await?;
            let datapath = Datapath::load(DatapathConfig {
                pin_dir: host2.pin_dir.clone(),
                vtep_ip: host2.ip,
                underlay_interface: host2.interface.clone(),
            })?;
            let mut datapath = datapath;
            datapath.attach_underlay()?;
            anyhow::Ok((store, Arc::new(Mutex::new(datapath)), lease))
        })??;
        let (lease_tx, _) = watch::channel(lease);
        let (stop, shutdown) = shutdown::channel();
        runtime.spawn(keep_alive(store.clone(), lease_tx.subscribe(), shutdown.clone()));
        let stats = Arc::new(std::sync::Mutex::new(metrics::ConvergenceStats::default()));
        let names = NameView::new();
        runtime.spawn(datapath_task::run(
            store.clone(),
            datapath.clone(),
            id.clone(),
            stats,
            datapath_task::Wiring { names: Some(names.clone()), ..Default::default() },
            shutdown,
        ));
        Ok(Node {
            name: host.name.clone(),
            host: host.clone(),
            id,
            store,
            datapath,
            names,
            lease: lease_tx,
            stop: Some(stop),
            runtime: Some(runtime),
        })
    }

    /// Runs `f` on the node's runtime (in the host's namespace) and waits for it.
    pub fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> anyhow::Result<T> {
        block_on(self.runtime.as_ref().context("node stopped")?, f)
    }

    pub fn lease(&self) -> LeaseId {
        *self.lease.borrow()
    }

    /// What an agent restart does to the store: the old lease is revoked (its endpoint
    /// records and allocations vanish) and the node registers under a new one.
    pub fn new_lease(&self) -> anyhow::Result<()> {
        let (store, host, id, old) = (self.store.clone(), self.host.clone(), self.id.clone(), self.lease());
        let lease = self.run(async move {
            store.revoke_lease(old).await?;
            register(&store, &host, &id).await
        })??;
        self.lease.send_replace(lease);
        Ok(())
    }

    /// Starts the Docker plugin for `dockerd` with state in `state_dir`.
    pub fn start_plugin(&self, dockerd: &Dockerd, state_dir: &Path) -> anyhow::Result<Plugin> {
        self.start_plugin_with(dockerd, state_dir, |_| {})
    }

    /// [`Node::start_plugin`] with settings of the test's own (`configure` changes the
    /// defaults).
    pub fn start_plugin_with(
        &self,
        dockerd: &Dockerd,
        state_dir: &Path,
        configure: impl FnOnce(&mut PluginConfig),
    ) -> anyhow::Result<Plugin> {
        let mut config = PluginConfig::new(docker::DEFAULT_NAME, MTU);
        config.socket = dockerd.plugin_socket(docker::DEFAULT_NAME);
        config.docker_socket = Some(dockerd.socket.clone());
        config.state_dir = state_dir.to_owned();
        configure(&mut config);
        let (stop, shutdown) = shutdown::channel();
        let (store, datapath, node_id, name) =
            (self.store.clone(), self.datapath.clone(), self.id.clone(), self.name.clone());
        let lease = self.lease.subscribe();
        let resolver_netns = format!("{}-{}", self.host.ns, docker::resolver_namespace::NETNS_SUFFIX);
        let task = self.runtime.as_ref().context("node stopped")?.spawn(async move {
            let backend = Backend {
                ipam: Ipam::new(store.clone()),
                store,
                datapath,
                host: Netlink::connect()?,
                node_id,
                node_name: name,
                lease,
                egress: None,
                epoch: None,
            };
            let dns = DockerDns { address: DNS_ADDRESS, netns: resolver_netns, upstreams: Arc::new(Upstreams::none()) };
            docker::serve(config.clone(), backend, Some(dns), shutdown).await?;
            anyhow::Ok(())
        });
        let socket = dockerd.plugin_socket(docker::DEFAULT_NAME);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            if task.is_finished() {
                let result = self.run(task)?;
                bail!("the plugin on {} stopped at once: {result:?}", self.name);
            }
            if Instant::now() > deadline {
                bail!("the plugin on {} does not listen on {}", self.name, socket.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Plugin {
            socket,
            stop: Some(stop),
            task: Some(task),
            runtime: self.runtime.as_ref().unwrap().handle().clone(),
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.fire();
        }
        if let Some(runtime) = self.runtime.take() {
            let (store, lease) = (self.store.clone(), self.lease());
            let _ = block_on(&runtime, async move { store.revoke_lease(lease).await });
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A running plugin; stopped on drop.
pub struct Plugin {
    pub socket: PathBuf,
    stop: Option<Trigger>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    runtime: tokio::runtime::Handle,
}

impl Plugin {
    /// Stops it and returns how its `serve` ended.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            stop.fire();
        }
        let Some(task) = self.task.take() else { return Ok(()) };
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime.spawn(async move {
            let _ = tx.send(task.await);
        });
        rx.recv_timeout(Duration::from_secs(10)).context("the plugin did not stop within 10s")??
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `limit`; the error
/// names `what` and the last error `check` returned.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last = Some(error),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?} (last error: {last:?})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `f` as a task on `runtime` (so on its threads, in its namespace) and waits.
fn block_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    f: impl Future<Output = T> + Send + 'static,
) -> anyhow::Result<T> {
    let task = runtime.spawn(f);
    Ok(runtime.block_on(task)?)
}

/// The node's record under a fresh lease (what `overlay agent` registers).
async fn register(store: &AnyStore, host: &Host, id: &str) -> anyhow::Result<LeaseId> {
    let lease = store.grant_lease(Duration::from_secs(10)).await?;
    let record = NodeRecord {
        id: id.to_owned(),
        name: host.name.clone(),
        address: host.ip.into(),
        hostname: host.name.clone(),
        kernel_version: String::new(),
        os: String::new(),
        cpus: 1,
        memory_bytes: 0,
        labels: Default::default(),
        agent_version: "test".into(),
        containers: 0,
        heartbeat_ms: 1000,
        ttl_secs: 10,
        started_at: 0,
        engine: None,
    };
    store.put(&cluster_keys::node(id), serde_json::to_vec(&record)?, Some(lease)).await?;
    Ok(lease)
}

async fn keep_alive(store: AnyStore, lease: watch::Receiver<LeaseId>, shutdown: Shutdown) {
    loop {
        let current = *lease.borrow();
        let _ = store.keep_alive(current).await;
        if shutdown.sleep(Duration::from_secs(1)).await.is_err() {
            return;
        }
    }
}

/// One raw HTTP/1.1 POST on a unix socket: (status, body). For protocol-level checks
/// that a real client would never send (garbage JSON, unknown methods).
pub fn raw_post(socket: &Path, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let mut stream = UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).context("no status line")?.parse()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}
