//! The bpffs that holds the pins.

use std::path::Path;

use super::DatapathError;

/// Where the agent mounts its bpffs by default. Outside /sys on purpose: `ip netns exec`
/// remounts /sys, which hides /sys/fs/bpf from a host namespace.
pub const DEFAULT_BPFFS: &str = "/run/overlay/bpffs";

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts a bpffs at `dir` unless one is there already (`mount -t bpf bpffs DIR`).
///
/// Agents of several hosts on one machine may start together: without the lock, two
/// could both find no bpffs and mount one each, the second hiding the first one's pins
/// (a restarted agent would then not find its maps and links).
pub fn ensure_bpffs(dir: &Path) -> Result<(), DatapathError> {
    let pin_err = |source: std::io::Error| DatapathError::PinDir { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(pin_err)?;
    if is_bpffs(dir) {
        return Ok(());
    }
    let mut lock_path = dir.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(pin_err)?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| pin_err(errno.into()))?;
    if is_bpffs(dir) {
        return Ok(());
    }
    nix::mount::mount(Some("bpffs"), dir, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| pin_err(e.into()))
}

pub(super) fn check_is_bpffs(dir: &Path) -> Result<(), DatapathError> {
    if is_bpffs(dir) { Ok(()) } else { Err(DatapathError::NotBpffs { path: dir.to_owned() }) }
}

fn is_bpffs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).map(|fs| fs.filesystem_type().0 == BPF_FS_MAGIC).unwrap_or(false)
}
