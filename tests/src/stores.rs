//! The cluster stores the tests run against, started on a lab host: etcd or ZooKeeper.
//! Tests that hold for both are written once, over a [`Backend`], and run once per
//! backend ([`crate::for_each_store`]).

use crate::{etcd::Etcd, lab::Host, zookeeper::ZooKeeper};

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
