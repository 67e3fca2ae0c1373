//! Builds overlay-ebpf (nightly, bpfel-unknown-none, -Z build-std=core) and hands the
//! object to the crate through OUT_DIR, so `overlay` is one self-contained binary.
//! Set OVERLAY_EBPF_OBJECT to an object file to skip the nested build.

use std::{env, path::PathBuf, process::Command};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out.join("overlay-ebpf.o");
    println!("cargo:rerun-if-env-changed=OVERLAY_EBPF_OBJECT");
    if let Some(prebuilt) = env::var_os("OVERLAY_EBPF_OBJECT") {
        std::fs::copy(&prebuilt, &dest).unwrap_or_else(|e| panic!("copying OVERLAY_EBPF_OBJECT {prebuilt:?}: {e}"));
        return;
    }

    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.parent().expect("crate lives in the workspace");
    let ebpf = root.join("overlay-ebpf");
    for watched in ["overlay-ebpf/src", "overlay-ebpf/Cargo.toml", "overlay-common/src"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut cargo = Command::new("rustup");
    cargo
        .args(["run", "nightly", "cargo", "build", "--release", "-Z", "build-std=core"])
        .args(["--target", "bpfel-unknown-none"])
        .current_dir(&ebpf);
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
        .unwrap_or_else(|e| panic!("running rustup to build overlay-ebpf: {e}; run `cargo xtask setup` first"));
    if !status.success() {
        panic!(
            "building overlay-ebpf failed ({status}). It needs the nightly toolchain with \
             rust-src and bpf-linker: run `cargo xtask setup`."
        );
    }
    let object = ebpf.join("target/bpfel-unknown-none/release/overlay-ebpf");
    std::fs::copy(&object, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", object.display()));
}
