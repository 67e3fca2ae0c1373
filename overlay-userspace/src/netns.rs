//! Running code inside a named network namespace (`ip netns exec NAME`, for a thread).

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("creating network namespace {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("deleting network namespace {path}: {source}")]
    Delete { path: PathBuf, source: std::io::Error },
    #[error("network namespace {name:?} not found at {path}: {source}; create it with `ip netns add`")]
    Open { name: String, path: PathBuf, source: std::io::Error },
    #[error("entering network namespace {name:?}: {source}")]
    Enter { name: String, source: nix::Error },
    #[error("the thread running in network namespace {0:?} panicked")]
    Panicked(String),
}

/// Where `ip netns add NAME` puts namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// Whether `path` holds a namespace (nsfs is mounted on it), not only the empty file a
/// creation interrupted before its mount leaves.
pub fn is_namespace(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type().0 == NSFS_MAGIC)
}

/// Where `ip netns add NAME` puts the namespace handle.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Runs `f` on a fresh thread that has entered the namespace `name`; the caller's
/// threads stay where they are. Netlink sockets, interface lookups and TCX attaches
/// made by `f` happen in that namespace.
pub fn run_in<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    run_in_path(&path(name), f)
}

/// [`run_in`] for a namespace at any path.
pub fn run_in_path<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let name = &path.display().to_string();
    let file =
        File::open(path).map_err(|source| NetnsError::Open { name: name.to_owned(), path: path.to_owned(), source })?;
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

/// Creates a network namespace kept alive by a bind mount at `path`, as `ip netns add`
/// does for /run/netns/NAME. The calling thread's namespaces are untouched.
pub fn create_at(path: &Path) -> Result<(), NetnsError> {
    let err = |source: std::io::Error| NetnsError::Create { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(err)?;
    let target = path.to_owned();
    let made = std::thread::spawn(move || -> Result<(), nix::Error> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .unwrap_or(Err(nix::Error::EIO));
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(err(e.into()));
    }
    Ok(())
}

/// Deletes a namespace made by [`create_at`] (`ip netns del`): once no process is in it,
/// its interfaces go away with it. Absent is not an error.
pub fn delete_at(path: &Path) -> Result<(), NetnsError> {
    let err = |source: std::io::Error| NetnsError::Delete { path: path.to_owned(), source };
    if !path.exists() {
        return Ok(());
    }
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) => {}
        Err(e) => return Err(err(e.into())),
    }
    std::fs::remove_file(path).map_err(err)
}

/// The processes whose network namespace is the one at `path` (`ip netns pids`).
pub fn pids(path: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(path) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev())
        })
        .collect()
}

/// Turns IPv6 off for the interfaces of the calling thread's namespace (`sysctl -w
/// net.ipv6.conf.{all,default}.disable_ipv6=1`): the overlay carries IPv4, and IPv6
/// neighbour discovery would only be dropped by the datapath. Hosts without IPv6
/// support have nothing to turn off.
pub fn disable_ipv6_here(interface: Option<&str>) -> std::io::Result<()> {
    let names: Vec<&str> = match interface {
        Some(name) => vec![name],
        None => vec!["all", "default"],
    };
    for name in names {
        match std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1") {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}
