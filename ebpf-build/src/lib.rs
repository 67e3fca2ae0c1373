//! The nested build of an eBPF crate, for build scripts: nightly, `bpfel-unknown-none`,
//! `-Z build-std=core`, with bpf-linker. overlay-userspace embeds the agent's object
//! (overlay-ebpf) this way, and the bench crate its own (bench/ebpf), so each binary is
//! self-contained. An environment variable may name a prebuilt object instead.

use std::{env, path::Path, process::Command};

/// One eBPF object to build and copy into `OUT_DIR`.
pub struct Object<'a> {
    /// The eBPF crate's directory, relative to the workspace root (a workspace of its own).
    pub crate_dir: &'a str,
    /// The crate's binary, which is the object file.
    pub binary: &'a str,
    /// The file name in `OUT_DIR` that the embedding crate includes.
    pub out_name: &'a str,
    /// Set to a prebuilt object to skip the nested build.
    pub prebuilt_env: &'a str,
    /// Paths (relative to the workspace root) whose changes rebuild the object.
    pub watched: &'a [&'a str],
}

/// Builds `object` and copies it to `OUT_DIR/out_name`. Panics with what to do on
/// failure: a build script has no other way to report.
pub fn build(object: &Object) {
    let out = env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let dest = Path::new(&out).join(object.out_name);
    println!("cargo:rerun-if-env-changed={}", object.prebuilt_env);
    if let Some(prebuilt) = env::var_os(object.prebuilt_env) {
        std::fs::copy(&prebuilt, &dest).unwrap_or_else(|e| panic!("copying {} {prebuilt:?}: {e}", object.prebuilt_env));
        return;
    }

    let manifest = env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it");
    let root = Path::new(&manifest)
        .ancestors()
        .find(|dir| dir.join(object.crate_dir).join("Cargo.toml").is_file())
        .unwrap_or_else(|| panic!("no {} above {manifest:?}", object.crate_dir))
        .to_owned();
    let crate_dir = root.join(object.crate_dir);
    for watched in object.watched {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut cargo = Command::new("rustup");
    cargo
        .args(["run", "nightly", "cargo", "build", "--release", "-Z", "build-std=core"])
        .args(["--target", "bpfel-unknown-none"])
        .current_dir(&crate_dir);
    // The outer (stable) build's settings must not leak into the nested nightly one.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo
        .status()
        .unwrap_or_else(|e| panic!("running rustup to build {}: {e}; run `cargo xtask setup` first", object.crate_dir));
    if !status.success() {
        panic!(
            "building {} failed ({status}). It needs the nightly toolchain with rust-src and \
             bpf-linker: run `cargo xtask setup`.",
            object.crate_dir
        );
    }
    let built = crate_dir.join("target/bpfel-unknown-none/release").join(object.binary);
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
}
