//! Running code inside a named network namespace (`ip netns exec NAME`, for a thread).

use std::{fs::File, path::PathBuf};

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {name:?} not found at {path}: {source}; create it with `ip netns add`")]
    Open { name: String, path: PathBuf, source: std::io::Error },
    #[error("entering network namespace {name:?}: {source}")]
    Enter { name: String, source: nix::Error },
    #[error("the thread running in network namespace {0:?} panicked")]
    Panicked(String),
}

/// Where `ip netns add NAME` puts the namespace handle.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Runs `f` on a fresh thread that has entered the namespace `name`; the caller's
/// threads stay where they are. Netlink sockets, interface lookups and TCX attaches
/// made by `f` happen in that namespace.
pub fn run_in<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let path = path(name);
    let file = File::open(&path)
        .map_err(|source| NetnsError::Open { name: name.to_owned(), path: path.clone(), source })?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|source| NetnsError::Enter { name: name.to_owned(), source })?;
                Ok(f())
            })
            .join()
            .map_err(|_| NetnsError::Panicked(name.to_owned()))?
    })
}
