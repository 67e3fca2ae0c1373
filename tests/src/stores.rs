//! The cluster stores the tests run against, started on a lab host: etcd or ZooKeeper.
//! Tests that hold for both are written once, over a [`Backend`], and run once per
//! backend ([`crate::for_each_store`]).

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{cmd, etcd::Etcd, lab::Host, zookeeper::ZooKeeper};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Etcd,
    ZooKeeper,
}

/// A running store server.
pub enum StoreServer {
    Etcd(Etcd),
    ZooKeeper(ZooKeeper),
}

impl StoreServer {
    /// Starts the server on `host` and waits until it serves clients.
    pub fn start(backend: Backend, host: &Host) -> anyhow::Result<Self> {
        Ok(match backend {
            Backend::Etcd => StoreServer::Etcd(Etcd::start(host)?),
            Backend::ZooKeeper => StoreServer::ZooKeeper(ZooKeeper::start(host)?),
        })
    }

    /// The store URL of cluster `prefix`.
    pub fn url(&self, prefix: &str) -> String {
        match self {
            StoreServer::Etcd(s) => s.url(prefix),
            StoreServer::ZooKeeper(s) => s.url(prefix),
        }
    }

    pub fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            StoreServer::Etcd(s) => s.stop(),
            StoreServer::ZooKeeper(s) => s.stop(),
        }
    }

    /// Starts the server again on its data.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        match self {
            StoreServer::Etcd(s) => s.start_again(),
            StoreServer::ZooKeeper(s) => s.start_again(),
        }
    }

    /// Deletes the data of a stopped server: the next start is an empty store.
    pub fn wipe(&mut self) -> anyhow::Result<()> {
        match self {
            StoreServer::Etcd(s) => s.wipe(),
            StoreServer::ZooKeeper(s) => s.wipe(),
        }
    }

    pub fn logs(&self) -> String {
        match self {
            StoreServer::Etcd(s) => s.logs(),
            StoreServer::ZooKeeper(s) => s.logs(),
        }
    }
}

/// One `#[test]` per backend for each named function `fn NAME(Backend) -> anyhow::Result<()>`
/// of the test file: `etcd::NAME` and `zookeeper::NAME`.
#[macro_export]
macro_rules! for_each_store {
    ($($name:ident),* $(,)?) => {
        mod etcd {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name($crate::stores::Backend::Etcd)
                }
            )*
        }
        mod zookeeper {
            $(
                #[test]
                fn $name() -> anyhow::Result<()> {
                    super::$name($crate::stores::Backend::ZooKeeper)
                }
            )*
        }
    };
}

/// Stops a server's process (SIGTERM, then SIGKILL after 10 s) and waits for it to exit.
pub fn stop_process(child: &mut Option<Child>) -> anyhow::Result<()> {
    let Some(mut child) = child.take() else { return Ok(()) };
    let _ = cmd::run(&["kill", "-TERM", &child.id().to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
    Ok(())
}

/// Deletes the data directory of a stopped server: its next start is an empty store.
pub fn wipe_data(child: &Option<Child>, data: &Path, server: &str) -> anyhow::Result<()> {
    if child.is_some() {
        bail!("stop {server} before wiping its data");
    }
    if data.exists() {
        std::fs::remove_dir_all(data).with_context(|| format!("removing {}", data.display()))?;
    }
    Ok(())
}

/// The ends of the logs of every start (`log_path(1..=starts)`), for a failing test.
pub fn start_logs(starts: u32, log_path: impl Fn(u32) -> PathBuf) -> String {
    (1..=starts)
        .map(|i| {
            let path = log_path(i);
            format!("--- {} ---\n{}", path.display(), crate::etcd::tail(&path, 40))
        })
        .collect()
}
