//! Finding the `overlay` binary that tests run as a real process on simulated hosts.

use std::path::PathBuf;

use anyhow::bail;

/// `$OVERLAY_BIN`, else the workspace's target/debug/overlay (built by `cargo xtask test`
/// before the tests; `cargo build -p overlay-userspace` builds it by hand).
pub fn overlay_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("OVERLAY_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/overlay");
    if !path.exists() {
        bail!("{} not found: run `cargo build -p overlay-userspace` or set OVERLAY_BIN", path.display());
    }
    Ok(path)
}
