//! One agent per pin directory. Two agents sharing pins (two started by mistake, or two
//! configured with the same `--pin-dir`) would each replace the other's programs and
//! rewrite the other's tables. The first holds an exclusive `flock` on the directory
//! itself for its whole life (bpffs holds only pins and directories, no lock file); a
//! second one is refused before it touches anything, and the kernel drops the lock when
//! the holder dies, so a killed agent leaves nothing that blocks the next start.

use std::{fs::File, os::unix::fs::MetadataExt, path::Path};

use nix::fcntl::{Flock, FlockArg};

use super::{DatapathError, ensure_bpffs};

/// Held for as long as the agent runs.
pub struct PinLock {
    _lock: Flock<File>,
}

/// Makes `pin_dir` (on a bpffs under its parent) and locks it, or says who holds it.
/// Equivalent: `flock --exclusive --nonblock PIN_DIR`.
pub fn lock_pin_dir(pin_dir: &Path) -> Result<PinLock, DatapathError> {
    let pin_err = |source: std::io::Error| DatapathError::PinDir { path: pin_dir.to_owned(), source };
    if let Some(root) = pin_dir.parent() {
        ensure_bpffs(root)?;
    }
    std::fs::create_dir_all(pin_dir).map_err(pin_err)?;
    lock_dir(pin_dir)
}

fn lock_dir(pin_dir: &Path) -> Result<PinLock, DatapathError> {
    let pin_err = |source: std::io::Error| DatapathError::PinDir { path: pin_dir.to_owned(), source };
    let dir = File::open(pin_dir).map_err(pin_err)?;
    let inode = dir.metadata().map_err(pin_err)?.ino();
    match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(PinLock { _lock: lock }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            Err(DatapathError::PinDirInUse { path: pin_dir.to_owned(), holder: holder(inode) })
        }
        Err((_, errno)) => Err(pin_err(std::io::Error::from(errno))),
    }
}

/// The process holding a `flock` on inode `inode`, from /proc/locks, as
/// "pid N: its command line"; "another process" if it cannot be told.
fn holder(inode: u64) -> String {
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let pid = locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1815 00:19:3063 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, file) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let file_inode: u64 = file.rsplit(':').next()?.parse().ok()?;
        (*kind == "FLOCK" && file_inode == inode).then(|| (*pid).to_owned())
    });
    let Some(pid) = pid else { return "another process".to_owned() };
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    if command.is_empty() { format!("pid {pid}") } else { format!("pid {pid}: {command}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_with_the_first() {
        let dir = std::env::temp_dir().join(format!("overlay-pin-lock-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = lock_dir(&dir).unwrap();
        match lock_dir(&dir) {
            Err(DatapathError::PinDirInUse { holder, .. }) => {
                assert!(holder.starts_with(&format!("pid {}", std::process::id())), "{holder}");
            }
            other => panic!("a second lock was not refused: {:?}", other.map(|_| ())),
        }
        drop(first);
        assert!(lock_dir(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
