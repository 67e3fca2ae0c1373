//! The bpffs that holds the pins.

use std::path::Path;

use super::DatapathError;

/// Where the agent mounts its bpffs by default. Outside /sys on purpose: `ip netns exec`
/// remounts /sys, which hides /sys/fs/bpf from a host namespace.
pub const DEFAULT_BPFFS: &str = "/run/overlay/bpffs";

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Mounts a bpffs at `dir` unless one is there already (`mount -t bpf bpffs DIR`).
pub fn ensure_bpffs(dir: &Path) -> Result<(), DatapathError> {
    std::fs::create_dir_all(dir).map_err(|source| DatapathError::PinDir { path: dir.to_owned(), source })?;
    if is_bpffs(dir) {
        return Ok(());
    }
    nix::mount::mount(Some("bpffs"), dir, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
        .map_err(|e| DatapathError::PinDir { path: dir.to_owned(), source: e.into() })
}

pub(super) fn check_is_bpffs(dir: &Path) -> Result<(), DatapathError> {
    if is_bpffs(dir) { Ok(()) } else { Err(DatapathError::NotBpffs { path: dir.to_owned() }) }
}

fn is_bpffs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).map(|fs| fs.filesystem_type().0 == BPF_FS_MAGIC).unwrap_or(false)
}
