//! The node's stable identity: a random ID kept in `STATE_DIR/node-id`.

use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::ClusterError;

pub const IDENTITY_FILE: &str = "node-id";

/// Where agents keep their state when `--state-dir` is not given.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/overlay";

/// The lock that keeps two agents from sharing one state directory (and so one
/// identity) on the same host. Released when dropped or when the process exits.
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
}

pub const LOCK_FILE: &str = "agent.lock";

/// Creates `state_dir` if needed and takes its lock (like `flock -n STATE_DIR/agent.lock`).
pub fn lock_state_dir(state_dir: &Path) -> Result<StateLock, ClusterError> {
    let dir_error = |source| ClusterError::StateDir { path: state_dir.to_owned(), source };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(state_dir).map_err(dir_error)?;
    let path = state_dir.join(LOCK_FILE);
    let file =
        fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(&path).map_err(dir_error)?;
    match file.try_lock() {
        Ok(()) => Ok(StateLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(ClusterError::StateDirInUse { path: state_dir.to_owned() }),
        Err(fs::TryLockError::Error(source)) => Err(dir_error(source)),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub file: PathBuf,
}

/// 32 lowercase hex digits (128 random bits).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Identity {
    /// Reads the identity from `state_dir`, creating the directory and a fresh identity
    /// if there is none. With `reset`, an existing identity is replaced.
    pub fn load_or_create(state_dir: &Path, reset: bool) -> Result<Self, ClusterError> {
        let file = state_dir.join(IDENTITY_FILE);
        let dir_error = |source| ClusterError::StateDir { path: state_dir.to_owned(), source };
        if !reset {
            match fs::read_to_string(&file) {
                Ok(text) => {
                    let id = text.trim();
                    if !is_valid_id(id) {
                        return Err(ClusterError::CorruptIdentity {
                            path: file,
                            reason: "expected 32 hexadecimal digits".into(),
                        });
                    }
                    return Ok(Identity { id: id.to_owned(), file });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(dir_error(source)),
            }
        }
        fs::DirBuilder::new().recursive(true).mode(0o700).create(state_dir).map_err(dir_error)?;
        let id = new_id();
        // Write then rename: a crash never leaves a half-written identity.
        let temporary = state_dir.join(format!(".{IDENTITY_FILE}.tmp"));
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(dir_error)?;
        out.write_all(format!("{id}\n").as_bytes()).and_then(|()| out.sync_all()).map_err(dir_error)?;
        fs::rename(&temporary, &file).map_err(dir_error)?;
        tracing::info!(node_id = %id, file = %file.display(), "new node identity");
        Ok(Identity { id, file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("overlay-identity-{tag}-{}", rand::random::<u64>()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn created_once_then_stable_and_reset_on_demand() {
        let dir = temp_dir("stable");
        let first = Identity::load_or_create(&dir.join("sub"), false).unwrap();
        assert!(is_valid_id(&first.id));
        let again = Identity::load_or_create(&dir.join("sub"), false).unwrap();
        assert_eq!(first, again);
        let fresh = Identity::load_or_create(&dir.join("sub"), true).unwrap();
        assert_ne!(fresh.id, first.id);
        assert_eq!(Identity::load_or_create(&dir.join("sub"), false).unwrap(), fresh);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_agent_per_state_dir() {
        let dir = temp_dir("lock");
        let lock = lock_state_dir(&dir).unwrap();
        let err = lock_state_dir(&dir).unwrap_err();
        assert!(matches!(err, ClusterError::StateDirInUse { .. }), "{err}");
        drop(lock);
        assert!(lock_state_dir(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_fix() {
        let dir = temp_dir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(IDENTITY_FILE), "not-an-id\n").unwrap();
        let err = Identity::load_or_create(&dir, false).unwrap_err();
        assert!(err.to_string().contains("--reset-identity"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
