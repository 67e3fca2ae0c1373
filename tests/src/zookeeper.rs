//! A real ZooKeeper (Debian's `zookeeper` package, 3.8) on a lab host: java started
//! directly on the server's main class with a config file in a scratch directory, its
//! client port on the host's underlay address inside its namespace, its data in the
//! scratch directory (removed when the [`ZooKeeper`] is dropped), no admin server.

use std::{
    fs::File,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{cmd, etcd::tail, lab::Host, stores};

pub const CLIENT_PORT: u16 = 2181;

/// The server's jar (its manifest names the libraries it needs) and a logger for it
/// (ZooKeeper logs through slf4j, which is silent without one).
const CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";
const MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

pub struct ZooKeeper {
    ns: String,
    pub ip: Ipv4Addr,
    dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl ZooKeeper {
    /// Starts ZooKeeper on `host` and waits until it serves clients.
    pub fn start(host: &Host) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("{}-zk-{:08x}", host.ns, rand::random::<u32>()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut zk = ZooKeeper { ns: host.ns.clone(), ip: host.ip, dir, child: None, starts: 0 };
        zk.write_config()?;
        zk.start_again()?;
        Ok(zk)
    }

    /// `zk://IP:2181/PREFIX`
    pub fn url(&self, prefix: &str) -> String {
        format!("zk://{}:{CLIENT_PORT}/{prefix}", self.ip)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.join(format!("zookeeper-{start}.log"))
    }

    fn write_config(&self) -> anyhow::Result<()> {
        // A 500 ms tick lets sessions (leases) be as short as 1 s (two ticks) and as long
        // as 60 s; the tests' agents use 3 s. Writes are not synced to disk: a test store
        // does not outlive a crash of the machine. Empty directories (container nodes)
        // are reaped every second, so the tests meet them vanishing under their feet.
        let config = format!(
            "tickTime=500\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=60000\n\
             dataDir={}\n\
             clientPortAddress={}\n\
             clientPort={CLIENT_PORT}\n\
             admin.enableServer=false\n\
             4lw.commands.whitelist=srvr\n\
             forceSync=no\n\
             znode.container.checkIntervalMs=1000\n",
            self.data_dir().display(),
            self.ip
        );
        std::fs::write(self.dir.join("zoo.cfg"), config).context("writing zoo.cfg")
    }

    /// Starts ZooKeeper (again) on the same data directory and waits until it serves.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("ZooKeeper is already running");
        }
        self.starts += 1;
        let log = self.log_path(self.starts);
        let config = self.dir.join("zoo.cfg");
        let config = config.to_str().context("temp dir path is not UTF-8")?;
        // A small heap and the client compiler: a test server starts in about a second.
        let args = [
            "java",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            CLASSPATH,
            MAIN_CLASS,
            config,
        ];
        let all = cmd::in_ns(&self.ns, &args);
        let out = File::create(&log)?;
        let child = Command::new(all[0])
            .args(&all[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting java for ZooKeeper (Debian's zookeeper package)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.serving() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("ZooKeeper exited ({status}) before it served:\n{}", tail(&log, 40));
            }
            if Instant::now() > deadline {
                bail!("ZooKeeper did not serve after 60s:\n{}", tail(&log, 40));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `srvr` (asked from inside the namespace) says the server runs.
    fn serving(&self) -> bool {
        let address = SocketAddr::from((self.ip, CLIENT_PORT));
        let answer = overlay::netns::run_in(&self.ns, move || -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(b"srvr")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        });
        matches!(answer, Ok(Ok(text)) if text.contains("Mode: standalone"))
    }

    /// Stops ZooKeeper (SIGTERM, then SIGKILL after 10 s) and waits for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        stores::stop_process(&mut self.child)
    }

    /// Deletes the data directory (ZooKeeper must be stopped): the next start is an empty store.
    pub fn wipe(&mut self) -> anyhow::Result<()> {
        stores::wipe_data(&self.child, &self.data_dir(), "ZooKeeper")
    }

    /// The logs of every start, for a failing test's output.
    pub fn logs(&self) -> String {
        stores::start_logs(self.starts, |i| self.log_path(i))
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
