//! Making a fresh machine ready, then checking that it is: Debian packages (named
//! explicitly, [`packages`]), nightly's rust-src and bpf-linker ([`toolchain`]), and
//! checks that every tool works ([`checks`], with etcd and dockerd started briefly by
//! [`probe`]). Every step looks before it acts, and the checks remember their success,
//! so a second run takes well under a second. A step that fails stops with one line
//! that says what is missing and how to get it.

mod checks;
mod packages;
mod probe;
mod toolchain;

use std::path::Path;

pub fn all(root: &Path) -> anyhow::Result<()> {
    packages::install_missing()?;
    toolchain::nightly_rust_src()?;
    toolchain::bpf_linker()?;
    checks::run(root)
}
