//! The eBPF toolchain: nightly's rust-src (for `-Z build-std=core`) and bpf-linker
//! built against nightly's own libLLVM.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, bail};

use crate::run;

pub fn nightly_rust_src() -> anyhow::Result<()> {
    let Ok(installed) = run::output("rustup", &["component", "list", "--toolchain", "nightly", "--installed"]) else {
        bail!(
            "xtask setup: the nightly toolchain is missing (the eBPF crate needs it): `rustup toolchain install nightly --component rust-src`"
        );
    };
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask setup: adding rust-src to nightly");
    if run::status(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"])).is_err() {
        bail!("xtask setup: nightly's rust-src cannot be added: `rustup component add rust-src --toolchain nightly`");
    }
    Ok(())
}

/// bpf-linker has no prebuilt binary here and Debian's LLVM is too old, so it is built
/// against the nightly toolchain's own libLLVM. The linker keeps a RUNPATH to the prefix
/// it was built with, so the prefix lives in CARGO_HOME, next to the installed binary.
/// Done when `bpf-linker --version` runs.
pub fn bpf_linker() -> anyhow::Result<()> {
    let prefix = cargo_home()?.join("overlay-llvm-prefix");
    let (lib_name, llvm_major) = nightly_llvm()?;
    let sysroot = run::output("rustc", &["+nightly", "--print", "sysroot"])?;
    let library = PathBuf::from(sysroot.trim()).join("lib").join(&lib_name);
    if !library.exists() {
        bail!(
            "xtask setup: {} not found: this nightly ships no libLLVM to build bpf-linker with; `rustup update nightly`",
            library.display()
        );
    }
    let lib_dir = prefix.join("lib");
    std::fs::create_dir_all(&lib_dir)?;
    for link in ["libLLVM.so".to_owned(), lib_name.clone()] {
        let path = lib_dir.join(link);
        if std::fs::read_link(&path).ok().as_deref() != Some(library.as_path()) {
            let _ = std::fs::remove_file(&path);
            std::os::unix::fs::symlink(&library, &path)?;
        }
    }
    if bpf_linker_runs() {
        return Ok(());
    }
    eprintln!("xtask setup: building bpf-linker against nightly's LLVM {llvm_major} (about 90 s)");
    let built = run::status(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--version", "^0.13", "--force", "--no-default-features"])
            .args(["--features", &format!("llvm-{llvm_major}")])
            .env("LLVM_PREFIX", &prefix),
    );
    if built.is_err() {
        bail!(
            "xtask setup: bpf-linker did not build (output above): `cargo install bpf-linker --version ^0.13 --no-default-features --features llvm-{llvm_major}` with LLVM_PREFIX={}",
            prefix.display()
        );
    }
    if !bpf_linker_runs() {
        bail!(
            "xtask setup: bpf-linker was installed but `bpf-linker --version` fails: is {} on PATH, and {} in place?",
            cargo_home()?.join("bin").display(),
            library.display()
        );
    }
    Ok(())
}

fn bpf_linker_runs() -> bool {
    Command::new("bpf-linker").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `bpf-linker --version` and `rustc +nightly -V`, for the setup checks' stamp.
pub fn fingerprint() -> String {
    ["bpf-linker --version", "rustc +nightly -V"]
        .iter()
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            run::output(words[0], &words[1..]).unwrap_or_else(|_| "-\n".into())
        })
        .collect()
}

/// The SONAME of nightly's libLLVM (libLLVM.so.MAJOR.MINOR-rust-RELEASE) and LLVM's
/// major version, from `rustc +nightly -vV`.
fn nightly_llvm() -> anyhow::Result<(String, String)> {
    let info = run::output("rustc", &["+nightly", "-vV"])?;
    let field = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("`rustc +nightly -vV` has no {key}"))
    };
    let release = field("release:")?;
    let llvm = field("LLVM version:")?;
    let mut parts = llvm.split('.');
    let major = parts.next().context("LLVM version")?.to_owned();
    let minor = parts.next().context("LLVM version")?.to_owned();
    Ok((format!("libLLVM.so.{major}.{minor}-rust-{release}"), major))
}

fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}
