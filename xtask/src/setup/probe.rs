//! etcd and dockerd started briefly, the way the tests start them, to see that they
//! work: each in a throwaway network namespace of its own (only its loopback, nothing
//! connected to the machine's interfaces), with its data in a temporary directory.
//! Everything is stopped and removed on every exit path.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// A directory under the system's temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ovt-setup-{}-{what}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace named like the labs' (`ovt-pPID-…`), so that one left by a
/// killed run is removed by the next `cargo xtask test|demo|bench`. Deleted on drop,
/// with whatever still runs in it.
struct Namespace(String);

impl Namespace {
    fn new(what: &str) -> anyhow::Result<Self> {
        let name = format!("ovt-p{}-{what}", std::process::id());
        quiet(&["ip", "netns", "add", &name]).with_context(|| format!("`ip netns add {name}` failed"))?;
        let ns = Namespace(name);
        quiet(&["ip", "-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).output();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A daemon: SIGTERM on drop, SIGKILL if it has not exited within `grace`.
struct Daemon {
    child: Child,
    grace: Duration,
}

impl Daemon {
    fn spawn(command: &mut Command, log: &Path, grace: Duration) -> anyhow::Result<Self> {
        let out = File::create(log)?;
        let child = command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn()?;
        Ok(Daemon { child, grace })
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).output();
        let deadline = Instant::now() + self.grace;
        while !self.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn quiet(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `ready` every 100 ms until it holds, the daemon exits, or `limit` passes.
fn wait_ready(daemon: &mut Daemon, limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if daemon.exited() || Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// etcd serves clients on its namespace's loopback: `/health` says so.
pub fn etcd(logs: &Path) -> anyhow::Result<()> {
    let log = logs.join("etcd.log");
    let fail = || {
        anyhow::anyhow!(
            "xtask setup: etcd does not start and answer in a namespace of its own ({}): it comes with etcd-server, `apt-get install --reinstall --no-install-recommends etcd-server`",
            log.display()
        )
    };
    let dir = TempDir::new("etcd")?;
    let ns = Namespace::new("setup-etcd")?;
    let data = dir.path().join("data");
    let (client, peer) = ("http://127.0.0.1:2379", "http://127.0.0.1:2380");
    let mut etcd = Daemon::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "/usr/bin/etcd", "--name", "setup", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", client, "--advertise-client-urls", client])
            .args(["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("setup={peer}")]),
        &log,
        Duration::from_secs(10),
    )
    .map_err(|_| fail())?;
    let health = format!("{client}/health");
    let answers = wait_ready(&mut etcd, Duration::from_secs(30), || {
        quiet(&["ip", "netns", "exec", &ns.0, "curl", "-s", "--max-time", "2", &health])
            .is_ok_and(|body| body.contains("\"health\":\"true\""))
    });
    if !answers {
        return Err(fail());
    }
    Ok(())
}

/// ZooKeeper as the tests run it (tests/src/zookeeper.rs): java on the server's main
/// class with a config in a scratch directory, in a namespace of its own; it must
/// answer `srvr` as a standalone server.
pub fn zookeeper(logs: &Path) -> anyhow::Result<()> {
    let log = logs.join("zookeeper.log");
    let fail = || {
        anyhow::anyhow!(
            "xtask setup: ZooKeeper does not start and answer in a namespace of its own ({}): it comes with \
             zookeeper (and a Java runtime and libslf4j-java), `apt-get install --reinstall --no-install-recommends zookeeper`",
            log.display()
        )
    };
    let dir = TempDir::new("zookeeper")?;
    let ns = Namespace::new("setup-zk")?;
    let config = dir.path().join("zoo.cfg");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "tickTime=500\ndataDir={}\nclientPortAddress=127.0.0.1\nclientPort=2181\nadmin.enableServer=false\n\
             4lw.commands.whitelist=srvr\n",
            data.display()
        ),
    )?;
    let mut zk = Daemon::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "java", "-Xmx128m", "-XX:+UseSerialGC", "-cp"])
            .arg("/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar")
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config),
        &log,
        Duration::from_secs(10),
    )
    .map_err(|_| fail())?;
    let srvr = "exec 3<>/dev/tcp/127.0.0.1/2181 && printf srvr >&3 && timeout 2 cat <&3";
    let answers = wait_ready(&mut zk, Duration::from_secs(30), || {
        quiet(&["ip", "netns", "exec", &ns.0, "bash", "-c", srvr]).is_ok_and(|out| out.contains("Mode: standalone"))
    });
    if !answers {
        return Err(fail());
    }
    Ok(())
}

/// dockerd as the tests run it (tests/src/docker.rs): in the namespace and a private
/// mount namespace, its own data root, exec root and socket, no iptables, no bridge.
/// It must answer `docker version` and run a container of a `docker import`ed busybox
/// (which needs containerd and runc).
pub fn dockerd(logs: &Path) -> anyhow::Result<()> {
    let log = logs.join("dockerd.log");
    let fail = |what: &str, package: &str| {
        anyhow::anyhow!(
            "xtask setup: {what} ({}): `apt-get install --reinstall --no-install-recommends {package}`",
            log.display()
        )
    };
    let dir = TempDir::new("docker")?;
    let ns = Namespace::new("setup-docker")?;
    let d = dir.path().display();
    let socket = format!("unix://{d}/docker.sock");
    let script = format!(
        "set -e; mount --make-rprivate /; \
         exec /usr/sbin/dockerd --data-root {d}/data --exec-root {d}/exec --pidfile {d}/dockerd.pid \
         -H {socket} --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
         --userland-proxy=false --shutdown-timeout 1"
    );
    let mut dockerd = Daemon::spawn(
        Command::new("nsenter").arg(format!("--net=/run/netns/{}", ns.0)).args([
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]),
        &log,
        Duration::from_secs(20),
    )
    .map_err(|_| fail("dockerd cannot be started", "docker.io"))?;
    let docker = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["/usr/bin/docker", "-H", &socket];
        all.extend_from_slice(args);
        quiet(&all)
    };
    let answers = wait_ready(&mut dockerd, Duration::from_secs(60), || {
        docker(&["version", "--format", "{{.Server.Version}}"]).is_ok()
    });
    if !answers {
        return Err(fail("dockerd does not start and answer `/usr/bin/docker version`", "docker.io"));
    }
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .map_err(|_| fail("/bin/busybox cannot be read", "busybox-static"))?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true"))?;
    let tar = dir.path().join("rootfs.tar");
    quiet(&["tar", "-C", &rootfs.to_string_lossy(), "-cf", &tar.to_string_lossy(), "."])?;
    let run = docker(&["import", &tar.to_string_lossy(), "ovt-setup-check:latest"])
        .and_then(|_| docker(&["run", "--rm", "--network", "none", "ovt-setup-check:latest", "/bin/true"]));
    if let Err(error) = run {
        std::fs::write(logs.join("docker-run.log"), format!("{error:#}\n"))?;
        return Err(anyhow::anyhow!(
            "xtask setup: dockerd answers but cannot run a container ({}): it needs containerd and runc, `apt-get install --reinstall --no-install-recommends containerd runc`",
            logs.join("docker-run.log").display()
        ));
    }
    Ok(())
}
