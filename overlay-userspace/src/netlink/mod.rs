//! Links, addresses and routes over rtnetlink, one file per object. A [`Netlink`]
//! handle is bound to the network namespace its socket was opened in.

mod address;
mod link;
mod neighbour;
mod route;

use std::{fs::File, path::Path};

use nix::sched::{CloneFlags, setns};

pub use link::VethSpec;
pub use route::CONTAINER_ROUTE_PROTOCOL;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("opening network namespace {path}: {source}")]
    Namespace { path: String, source: std::io::Error },
    #[error("entering network namespace {path}: {source}")]
    Enter { path: String, source: nix::Error },
    #[error("{what}: {source}")]
    Request { what: String, source: rtnetlink::Error },
    #[error("no interface named {0:?}")]
    NoSuchLink(String),
    #[error("netlink answered nothing for {0}")]
    NoAnswer(String),
}

/// An rtnetlink connection; its requests act on the namespace it was opened in.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// A connection in the calling thread's namespace. Needs a tokio runtime.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// A connection in the namespace at `path` (e.g. /run/netns/NAME): the socket is
    /// opened from a thread that entered it, and keeps that namespace for its life.
    pub fn connect_in(path: &Path) -> Result<Self, NetlinkError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|source| NetlinkError::Namespace { path: shown.clone(), source })?;
        let runtime = tokio::runtime::Handle::current();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(&file, CloneFlags::CLONE_NEWNET)
                        .map_err(|source| NetlinkError::Enter { path: shown.clone(), source })?;
                    let _guard = runtime.enter();
                    Netlink::connect()
                })
                .join()
                .unwrap_or_else(|_| Err(NetlinkError::NoAnswer("namespace thread".into())))
        })
    }
}

fn request_err(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}
