//! A real etcd (Debian's etcd-server) on a lab host, listening only on that host's
//! underlay address inside its namespace; its data lives in a temporary directory that
//! is removed when the [`Etcd`] is dropped. [`EtcdCluster`] runs one member on each of
//! several hosts, as production does (three or five members).

use std::{
    fs::File,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    cmd,
    lab::Host,
    pki::{Ca, Usage},
    stores,
};

/// The etcd binary (`$OVERLAY_ETCD`, else Debian's path).
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("OVERLAY_ETCD").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from)
}

pub const CLIENT_PORT: u16 = 2379;

pub const PEER_PORT: u16 = 2380;

pub struct Etcd {
    ns: String,
    pub ip: Ipv4Addr,
    /// The member's name in the cluster.
    pub name: String,
    /// Where its peers reach it, and `--initial-cluster` (every member's name=peer URL).
    peer: String,
    initial_cluster: String,
    /// Extra etcd arguments (TLS), and the client URL scheme they imply.
    extra: Vec<String>,
    scheme: &'static str,
    /// Holds the data dir and the logs of each start.
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Etcd {
    /// Starts etcd on `host` and waits until it serves clients.
    pub fn start(host: &Host) -> anyhow::Result<Self> {
        Self::start_with(host, "http", Vec::new())
    }

    /// Starts etcd serving clients over TLS only, requiring a client certificate signed
    /// by `ca` (PEM files).
    pub fn start_tls(host: &Host, cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<Self> {
        let mut extra = Vec::new();
        for (flag, path) in [("--cert-file", cert), ("--key-file", key), ("--trusted-ca-file", ca)] {
            extra.push(flag.to_owned());
            extra.push(path.to_str().context("certificate path is not UTF-8")?.to_owned());
        }
        extra.push("--client-cert-auth".to_owned());
        Self::start_with(host, "https", extra)
    }

    fn start_with(host: &Host, scheme: &'static str, extra: Vec<String>) -> anyhow::Result<Self> {
        // Peers only on the namespace's loopback: this is a one-member cluster.
        let peer = format!("http://127.0.0.1:{PEER_PORT}");
        let initial_cluster = format!("store={peer}");
        let mut etcd = Self::new(host, "store", peer, initial_cluster, scheme, extra)?;
        etcd.start_again()?;
        Ok(etcd)
    }

    /// A member that is not started yet.
    fn new(
        host: &Host,
        name: &str,
        peer: String,
        initial_cluster: String,
        scheme: &'static str,
        extra: Vec<String>,
    ) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("{}-etcd-{:08x}", host.ns, rand::random::<u32>()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Etcd {
            ns: host.ns.clone(),
            ip: host.ip,
            name: name.to_owned(),
            peer,
            initial_cluster,
            extra,
            scheme,
            dir,
            child: None,
            starts: 0,
        })
    }

    /// The client endpoint, `http://IP:2379` or `https://IP:2379`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}:{CLIENT_PORT}", self.scheme, self.ip)
    }

    /// `etcd://IP:2379/PREFIX`
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}:{CLIENT_PORT}/{prefix}", self.ip)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.join(format!("etcd-{start}.log"))
    }

    /// Starts etcd (again) on the same data directory and waits until it is ready.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_ready()
    }

    /// Starts the process; a member of a cluster is ready only once a quorum runs.
    fn spawn(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("etcd is already running");
        }
        self.starts += 1;
        let log = self.log_path(self.starts);
        let client = self.endpoint();
        let peer = self.peer.as_str();
        let data_dir = self.data_dir();
        let data_dir = data_dir.to_str().context("temp dir path is not UTF-8")?;
        let etcd = etcd_bin();
        let etcd = etcd.to_str().context("etcd path is not UTF-8")?;
        let args = [
            etcd,
            "--name",
            &self.name,
            "--data-dir",
            data_dir,
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            &self.initial_cluster,
            "--initial-cluster-state",
            "new",
        ];
        let mut args = args.to_vec();
        args.extend(self.extra.iter().map(String::as_str));
        let all = cmd::in_ns(&self.ns, &args);
        let out = File::create(&log)?;
        let child = Command::new(all[0])
            .args(&all[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {etcd}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the current start logs that it serves clients.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let log = self.log_path(self.starts);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("ready to serve client requests") {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("etcd exited ({status}) before it was ready:\n{text}");
            }
            if Instant::now() > deadline {
                bail!("etcd was not ready after 30s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as when the member's host dies, and waits for it to exit.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { bail!("etcd {} is not running", self.name) };
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops etcd (SIGTERM, then SIGKILL after 10 s) and waits for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        stores::stop_process(&mut self.child)
    }

    /// Deletes the data directory (etcd must be stopped): the next start is an empty store.
    pub fn wipe(&mut self) -> anyhow::Result<()> {
        stores::wipe_data(&self.child, &self.data_dir(), "etcd")
    }

    /// The logs of every start, for a failing test's output.
    pub fn logs(&self) -> String {
        stores::start_logs(self.starts, |i| self.log_path(i))
    }
}

/// One member per host, all started at once (a member serves only once a quorum runs).
pub struct EtcdCluster {
    pub members: Vec<Etcd>,
}

impl EtcdCluster {
    pub fn start(hosts: &[&Host]) -> anyhow::Result<Self> {
        let names: Vec<String> = (1..=hosts.len()).map(|i| format!("etcd{i}")).collect();
        let peers: Vec<String> = hosts.iter().map(|h| format!("http://{}:{PEER_PORT}", h.ip)).collect();
        let initial_cluster =
            names.iter().zip(&peers).map(|(name, peer)| format!("{name}={peer}")).collect::<Vec<_>>().join(",");
        let mut members = Vec::new();
        for ((host, name), peer) in hosts.iter().zip(&names).zip(&peers) {
            members.push(Etcd::new(host, name, peer.clone(), initial_cluster.clone(), "http", Vec::new())?);
        }
        let mut cluster = EtcdCluster { members };
        for member in &mut cluster.members {
            member.spawn()?;
        }
        for member in &mut cluster.members {
            member.wait_ready()?;
        }
        Ok(cluster)
    }

    /// `etcd://A:2379,B:2379,C:2379/PREFIX`
    pub fn url(&self, prefix: &str) -> String {
        let hosts: Vec<String> = self.members.iter().map(|m| format!("{}:{CLIENT_PORT}", m.ip)).collect();
        format!("etcd://{}/{prefix}", hosts.join(","))
    }

    /// The index of the member that leads, as every running member sees it, waiting up
    /// to `limit` for an election to end.
    pub fn leader(&self, limit: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + limit;
        loop {
            // (index, member ID, the leader's ID) of each member that answers.
            let seen: Vec<(usize, String, String)> = (self.members.iter().enumerate())
                .filter(|(_, m)| m.running())
                .filter_map(|(i, m)| m.status().ok().map(|(id, leader)| (i, id, leader)))
                .collect();
            let leaders: std::collections::BTreeSet<&str> = seen.iter().map(|(_, _, l)| l.as_str()).collect();
            if let [leader] = leaders.into_iter().collect::<Vec<_>>().as_slice()
                && let Some((index, _, _)) = seen.iter().find(|(_, id, _)| id == leader)
            {
                return Ok(*index);
            }
            if Instant::now() > deadline {
                bail!("no single etcd leader after {limit:?}: (member, ID, leader) = {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        self.members.iter().map(Etcd::logs).collect()
    }
}

impl Etcd {
    /// Deletes every key that starts with `prefix` in one request (one revision), as
    /// `etcdctl del --prefix` does, through the gRPC gateway. Returns how many went.
    pub fn delete_prefix(&self, prefix: &str) -> anyhow::Result<u64> {
        let mut end = prefix.as_bytes().to_vec();
        let last = end.last_mut().context("an empty prefix would be the whole store")?;
        *last += 1;
        let body = format!(r#"{{"key": "{}", "range_end": "{}"}}"#, base64(prefix.as_bytes()), base64(&end));
        let url = format!("{}/v3/kv/deleterange", self.endpoint());
        let out = cmd::run_in(&self.ns, &["curl", "-s", "-m", "5", "-X", "POST", &url, "-d", &body])?;
        let value: serde_json::Value = serde_json::from_str(&out).with_context(|| format!("deleterange: {out}"))?;
        // The gateway writes 64-bit integers as strings, and leaves out zeros.
        Ok(value["deleted"].as_str().unwrap_or("0").parse()?)
    }

    /// (this member's ID, the leader's ID) from the gRPC gateway's status call.
    fn status(&self) -> anyhow::Result<(String, String)> {
        let url = format!("{}/v3/maintenance/status", self.endpoint());
        let out = cmd::run_in(&self.ns, &["curl", "-s", "-m", "1", "-X", "POST", &url, "-d", "{}"])?;
        let value: serde_json::Value = serde_json::from_str(&out).with_context(|| format!("status: {out}"))?;
        let id = value["header"]["member_id"].as_str().context("no member_id")?.to_owned();
        let leader = value["leader"].as_str().unwrap_or_default().to_owned();
        Ok((id, leader))
    }
}

/// Standard base64 with padding, as the gRPC gateway takes bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n") + "\n"
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throw-away CA with a server certificate for one IP address and a client
/// certificate (CN `root`), made with the `openssl` command in `dir`.
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    pub fn create(dir: &Path, server_ip: Ipv4Addr) -> anyhow::Result<Self> {
        let ca = Ca::create(dir)?;
        let server = ca.sign("server", "store", &[server_ip], Usage::Server)?;
        let client = ca.sign("client", "root", &[], Usage::Client)?;
        Ok(TestPki {
            ca: ca.cert.clone(),
            server_cert: server.cert,
            server_key: server.key,
            client_cert: client.cert,
            client_key: client.key,
        })
    }
}
