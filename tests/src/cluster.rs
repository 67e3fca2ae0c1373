//! Cluster tests' fixture: `overlay agent` and `overlay manage` as real processes on lab
//! hosts, with their logs kept for a failing test, and the CLI's views parsed.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{
    cmd,
    etcd::tail,
    lab::{Host, Lab},
    overlay_binary,
};

/// Short lease timing so that tests run in seconds.
pub const HEARTBEAT: &str = "1s";
pub const TTL_SECS: u64 = 3;

/// A scratch directory for state dirs and logs, removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ovt-cluster-{tag}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An `overlay` daemon running in a host's namespace. Killed on drop.
pub struct Daemon {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Runs `overlay ARGS` in `host`'s namespace, stderr and stdout to `log`.
    pub fn spawn(host: &Host, name: &str, args: &[&str], log: &Path) -> anyhow::Result<Self> {
        let bin = overlay_binary::path()?;
        let bin = bin.to_str().context("overlay path is not UTF-8")?.to_owned();
        let mut all = vec![bin.as_str()];
        all.extend_from_slice(args);
        let all = cmd::in_ns(&host.ns, &all);
        let out = File::options().create(true).append(true).open(log)?;
        let child = Command::new(all[0])
            .args(&all[1..])
            .env("OVERLAY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting `{}`", all.join(" ")))?;
        Ok(Daemon { name: name.to_owned(), log: log.to_owned(), child: Some(child) })
    }

    /// Runs `overlay ARGS` with only its network namespace set to `host`'s (`nsenter
    /// --net`): unlike `ip netns exec`, the process keeps the machine's mount namespace,
    /// so the container namespaces an agent mounts under /run/netns are visible to all.
    pub fn spawn_entered(host: &Host, name: &str, args: &[&str], log: &Path) -> anyhow::Result<Self> {
        let bin = overlay_binary::path()?;
        let net = format!("--net=/run/netns/{}", host.ns);
        let out = File::options().create(true).append(true).open(log)?;
        let child = Command::new("nsenter")
            .arg(&net)
            .arg("--")
            .arg(&bin)
            .args(args)
            .env("OVERLAY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting nsenter {net} {} {}", bin.display(), args.join(" ")))?;
        Ok(Daemon { name: name.to_owned(), log: log.to_owned(), child: Some(child) })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("daemon already stopped")?;
        cmd::run(&["kill", signal, &pid.to_string()]).map(|_| ())
    }

    /// SIGKILL: no chance to clean up, as when a host dies.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.signal("-KILL")?;
        if let Some(mut child) = self.child.take() {
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait (up to 10 s) for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> anyhow::Result<bool> {
        self.signal("-TERM")?;
        let mut child = self.child.take().context("daemon already stopped")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not exit within 10s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `limit` for the daemon to exit by itself; returns whether it exited 0.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<bool> {
        let child = self.child.as_mut().context("daemon already stopped")?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                bail!("{} still runs after {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP / SIGCONT: a hung host.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        format!("--- {} ({}) ---\n{}", self.name, self.log.display(), tail(&self.log, 40))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused process must be continued to die of SIGTERM; SIGKILL needs nothing.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Arguments of an agent with the tests' short timing.
pub fn agent_args(store: &str, host: &Host, state_dir: &Path, extra: &[&str]) -> Vec<String> {
    agent_args_timed(store, host, state_dir, HEARTBEAT, &format!("{TTL_SECS}s"), extra)
}

/// Arguments of an agent with the given heartbeat and TTL.
pub fn agent_args_timed(
    store: &str,
    host: &Host,
    state_dir: &Path,
    heartbeat: &str,
    ttl: &str,
    extra: &[&str],
) -> Vec<String> {
    // Each host pins its datapath in its own directory, which the lab removes. No
    // upstream resolvers: names the overlay does not know are forwarded nowhere.
    let mut args: Vec<String> = [
        "agent",
        "--store",
        store,
        "--advertise",
        &host.ip.to_string(),
        "--name",
        &host.name,
        "--state-dir",
        state_dir.to_str().unwrap_or_default(),
        "--heartbeat",
        heartbeat,
        "--ttl",
        ttl,
        "--pin-dir",
        host.pin_dir.to_str().unwrap_or_default(),
        "--upstream-resolv-conf",
        "/dev/null",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Where [`start_agent`] keeps `host`'s state.
pub fn state_dir(scratch: &Scratch, host: &Host) -> PathBuf {
    scratch.path(&format!("{}-state", host.name))
}

/// Starts an agent on `host` with its state under `scratch`.
pub fn start_agent(scratch: &Scratch, store: &str, host: &Host, extra: &[&str]) -> anyhow::Result<Daemon> {
    let args = agent_args(store, host, &state_dir(scratch, host), extra);
    spawn_agent(scratch, host, &args)
}

/// Starts `overlay ARGS` as `host`'s agent, logging under `scratch`.
pub fn spawn_agent(scratch: &Scratch, host: &Host, args: &[String]) -> anyhow::Result<Daemon> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::spawn(host, &host.name, &args, &scratch.path(&format!("{}.log", host.name)))
}

/// The arguments of a manager on `host` with the tests' short timing, checking health
/// every 300 ms.
pub fn manager_args(store: &str, host: &Host) -> Vec<String> {
    let ttl = format!("{TTL_SECS}s");
    let args = [
        "manage",
        "--store",
        store,
        "--name",
        &host.name,
        "--advertise",
        &host.ip.to_string(),
        "--heartbeat",
        HEARTBEAT,
        "--ttl",
        &ttl,
        "--check-interval",
        "300ms",
    ];
    args.iter().map(|s| s.to_string()).collect()
}

/// Starts a manager on `host` ([`manager_args`]).
pub fn start_manager(scratch: &Scratch, store: &str, host: &Host) -> anyhow::Result<Daemon> {
    let args = manager_args(store, host);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::spawn(host, &host.name, &args, &scratch.path(&format!("{}.log", host.name)))
}

/// `overlay stats --format json` on `host`, of the datapath pinned at its pin directory.
pub fn stats(lab: &Lab, host: &str) -> anyhow::Result<serde_json::Value> {
    let h = lab.host(host);
    let out = overlay(h, &["stats", "--format", "json", "--pin-dir", h.pin_dir.to_str().unwrap_or_default()])?;
    anyhow::ensure!(out.status.success(), "overlay stats: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The packets counted for the reason `name` (e.g. `egress`) in a [`stats`] answer, both
/// directions.
pub fn reason_packets(stats: &serde_json::Value, name: &str) -> u64 {
    let reasons = stats["reasons"].as_array().into_iter().flatten();
    reasons.filter(|r| r["reason"] == name).filter_map(|r| r["packets"].as_u64()).sum()
}

/// Runs `overlay ARGS` in `host`'s namespace and returns its output, whatever the status.
pub fn overlay(host: &Host, args: &[&str]) -> anyhow::Result<Output> {
    let bin = overlay_binary::path()?;
    let bin = bin.to_str().context("overlay path is not UTF-8")?.to_owned();
    let mut all = vec![bin.as_str()];
    all.extend_from_slice(args);
    cmd::output_in(&host.ns, &all)
}

/// `overlay list` from `host`: the advertised addresses, one per line.
pub fn list(host: &Host, store: &str) -> anyhow::Result<Vec<String>> {
    let out = overlay(host, &["list", "--store", store, "--store-timeout", "5s"])?;
    if !out.status.success() {
        bail!("overlay list failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
}

/// `overlay info --format json` from `host`.
pub fn info(host: &Host, store: &str) -> anyhow::Result<Value> {
    let out = overlay(host, &["info", "--format", "json", "--store", store, "--store-timeout", "5s"])?;
    if !out.status.success() {
        bail!("overlay info failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).context("overlay info --format json printed invalid JSON")
}

/// The node named `name` in an info view.
pub fn node<'a>(info: &'a Value, name: &str) -> Option<&'a Value> {
    info["nodes"].as_array()?.iter().find(|n| n["name"] == name)
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `limit` with the
/// last state it described.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> anyhow::Result<Result<T, String>>,
) -> anyhow::Result<(T, Duration)> {
    let started = Instant::now();
    loop {
        let last = match check() {
            Ok(Ok(value)) => return Ok((value, started.elapsed())),
            Ok(Err(state)) => state,
            Err(error) => format!("{error:#}"),
        };
        if started.elapsed() > limit {
            bail!("waited {limit:?} for {what}; last seen: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `overlay list` from `host` shows exactly `expected` (in any order).
pub fn wait_for_list(host: &Host, store: &str, expected: &[&Host], limit: Duration) -> anyhow::Result<Duration> {
    let mut want: Vec<String> = expected.iter().map(|h| h.ip.to_string()).collect();
    want.sort();
    let (_, took) = wait_for(&format!("`overlay list` to show {want:?}"), limit, || {
        let mut got = list(host, store)?;
        got.sort();
        Ok(if got == want { Ok(()) } else { Err(format!("{got:?}")) })
    })?;
    Ok(took)
}

/// Prints the daemons' (and etcd's) logs when a test body failed, then returns its result.
pub fn report(result: anyhow::Result<()>, daemons: &[&Daemon], extra: &str) -> anyhow::Result<()> {
    if result.is_err() {
        for daemon in daemons {
            eprintln!("{}", daemon.log_tail());
        }
        eprintln!("{extra}");
    }
    result
}

/// Runs `request` against the store `store` from `host`'s namespace, through overlay's
/// own store layer, as an operator's tool would.
fn with_store<T>(
    host: &Host,
    store: &str,
    request: impl AsyncFnOnce(overlay::store::AnyStore) -> anyhow::Result<T> + Send,
) -> anyhow::Result<T>
where
    T: Send,
{
    use overlay::store::{StoreConfig, TlsFiles};
    let config = StoreConfig::new(store, &TlsFiles::default(), None, None)?;
    overlay::netns::run_in(&host.ns, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let shutdown = overlay::shutdown::Shutdown::never();
            let store = overlay::store::connect(&config, Some(Duration::from_secs(5)), &shutdown).await?;
            request(store).await
        })
    })?
}

/// Writes `value` at `key` (relative to the cluster root of `store`) straight into the
/// store from `host`'s namespace, as an operator editing the store by hand would.
pub fn put_raw(host: &Host, store: &str, key: &str, value: &[u8]) -> anyhow::Result<()> {
    use overlay::store::Store;
    with_store(host, store, async |store| Ok(store.put(key, value.to_vec(), None).await?))
}

/// Every key under `prefix` (relative to the cluster root), read from `host`'s namespace.
pub fn list_raw(host: &Host, store: &str, prefix: &str) -> anyhow::Result<overlay::store::Listing> {
    use overlay::store::Store;
    with_store(host, store, async |store| Ok(store.list(prefix).await?))
}

/// The namespace prefix of containers run by `host`'s agent in `lab`: under the lab's
/// prefix, so the lab deletes them whatever happens.
pub fn container_netns_prefix(lab: &Lab, host: &Host) -> String {
    format!("{}-{}-", lab.prefix, host.name)
}

/// The arguments of an agent that runs containers and programs its datapath on `host`.
pub fn container_agent_args(scratch: &Scratch, store: &str, lab: &Lab, host: &Host) -> anyhow::Result<Vec<String>> {
    container_agent_args_ttl(scratch, store, lab, host, TTL_SECS)
}

fn container_agent_args_ttl(
    scratch: &Scratch,
    store: &str,
    lab: &Lab,
    host: &Host,
    ttl_secs: u64,
) -> anyhow::Result<Vec<String>> {
    let prefix = container_netns_prefix(lab, host);
    let ttl = format!("{ttl_secs}s");
    Ok(agent_args_timed(store, host, &state_dir(scratch, host), HEARTBEAT, &ttl, &["--netns-prefix", &prefix]))
}

/// Starts `host`'s agent with its datapath and container runtime (see
/// [`Daemon::spawn_entered`] for why it is not started with `ip netns exec`).
pub fn start_container_agent(scratch: &Scratch, store: &str, lab: &Lab, host: &str) -> anyhow::Result<Daemon> {
    start_container_agent_ttl(scratch, store, lab, host, TTL_SECS)
}

/// [`start_container_agent`] with a lease of `ttl_secs`: a test that stops an agent for
/// a while and expects its peers to keep its containers needs the lease to outlast the
/// outage and the restarted agent's start on a slow machine.
pub fn start_container_agent_ttl(
    scratch: &Scratch,
    store: &str,
    lab: &Lab,
    host: &str,
    ttl_secs: u64,
) -> anyhow::Result<Daemon> {
    start_container_agent_ttl_with(scratch, store, lab, host, ttl_secs, &[])
}

/// [`start_container_agent_ttl`] with more of the agent's options (e.g. `--docker ...`).
pub fn start_container_agent_ttl_with(
    scratch: &Scratch,
    store: &str,
    lab: &Lab,
    host: &str,
    ttl_secs: u64,
    extra: &[String],
) -> anyhow::Result<Daemon> {
    let host = lab.host(host);
    let mut args = container_agent_args_ttl(scratch, store, lab, host, ttl_secs)?;
    args.extend_from_slice(extra);
    spawn_container_agent(scratch, host, &args)
}

/// [`start_container_agent`] with more of the agent's options (e.g. `--docker ...`).
pub fn start_container_agent_with(
    scratch: &Scratch,
    store: &str,
    lab: &Lab,
    host: &str,
    extra: &[String],
) -> anyhow::Result<Daemon> {
    let host = lab.host(host);
    let mut args = container_agent_args(scratch, store, lab, host)?;
    args.extend_from_slice(extra);
    spawn_container_agent(scratch, host, &args)
}

fn spawn_container_agent(scratch: &Scratch, host: &Host, args: &[String]) -> anyhow::Result<Daemon> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::spawn_entered(host, &host.name, &args, &scratch.path(&format!("{}.log", host.name)))
}

/// `overlay run --name NAME --net NETWORK --node NODE [OPTIONS] -- sleep 3600` from
/// `node`: the container's namespace and the address `overlay run` printed last.
pub fn run_container(
    lab: &Lab,
    store: &str,
    node: &str,
    name: &str,
    network: &str,
    options: &[&str],
) -> anyhow::Result<(String, std::net::Ipv4Addr)> {
    let mut args = vec!["run", "--name", name, "--net", network, "--node", node];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--", "sleep", "3600"]);
    let out = overlay_ok(lab, node, store, &args)?;
    let ip = out.split_whitespace().last().with_context(|| format!("no address in {out:?}"))?.parse()?;
    Ok((format!("{}{name}", container_netns_prefix(lab, lab.host(node))), ip))
}

/// Starts `overlay ARGS --store STORE` (the store placed before any `--`) on `host`
/// without waiting for it; its output is captured.
pub fn overlay_spawn(host: &Host, store: &str, args: &[&str]) -> anyhow::Result<std::process::Child> {
    let bin = overlay_binary::path()?;
    let bin = bin.to_str().context("overlay path is not UTF-8")?.to_owned();
    let mut all = vec![bin.as_str()];
    all.extend_from_slice(args);
    let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
    all.splice(at..at, ["--store", store]);
    let all = cmd::in_ns(&host.ns, &all);
    Command::new(all[0])
        .args(&all[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}`", all.join(" ")))
}

/// `overlay ARGS` on `lab`'s host `host` with `--store STORE` placed before any `--`
/// (a container's command); its stdout, or an error with its stderr.
pub fn overlay_ok(lab: &Lab, host: &str, store: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = args.to_vec();
    let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
    all.splice(at..at, ["--store", store]);
    let out = overlay(lab.host(host), &all)?;
    if !out.status.success() {
        bail!("overlay {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
