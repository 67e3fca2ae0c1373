//! Finding the `overlay` binary that tests run as a real process on simulated hosts.

use std::path::PathBuf;

use anyhow::bail;

/// `$OVERLAY_BIN`; else `overlay` next to the running program, so that
/// `target/release/overlay-bench` run by hand measures the release agent, not a debug
/// one; else the workspace's target/debug/overlay (built by `cargo xtask test` before the
/// tests, whose binaries live in target/debug/deps; `cargo build -p overlay-userspace`
/// builds it by hand).
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("OVERLAY_BIN") {
        return Ok(PathBuf::from(path));
    }
    let beside_me = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("overlay")));
    if let Some(path) = beside_me.filter(|p| p.is_file()) {
        return Ok(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/overlay");
    if !path.exists() {
        bail!("{} not found: run `cargo build -p overlay-userspace` or set OVERLAY_BIN", path.display());
    }
    Ok(path)
}
