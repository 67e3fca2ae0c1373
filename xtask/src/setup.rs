//! Installing what is missing on a fresh machine. Every step checks first, so a
//! second run takes a second or two.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::run;

/// Debian packages: iproute2 (namespaces, veth, bridge, vxlan), etcd-server (the
/// cluster store in tests), iperf3 and iputils-ping (traffic), bpftool and tcpdump
/// (inspection), dnsutils (dig), protobuf-compiler (etcd-client's build needs protoc),
/// openssl (the store TLS tests make their CA with it), docker.io and busybox-static
/// (the Docker plugin tests run dockerd with a busybox image made by `docker import`).
const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "etcd-server",
    "iperf3",
    "iputils-ping",
    "bpftool",
    "tcpdump",
    "dnsutils",
    "protobuf-compiler",
    "libprotobuf-dev",
    "openssl",
    "docker.io",
    "busybox-static",
];

pub fn all(root: &Path) -> anyhow::Result<()> {
    apt_packages()?;
    nightly_rust_src()?;
    bpf_linker(root)?;
    Ok(())
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask setup: installing {}", missing.join(" "));
    run::status(Command::new("apt-get").args(["update", "-qq"]))?;
    run::status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = run::output("rustup", &["component", "list", "--toolchain", "nightly", "--installed"])
        .context("the nightly toolchain is needed for the eBPF crate; `rustup toolchain list` should show it")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask setup: adding rust-src to nightly");
    run::status(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// bpf-linker has no prebuilt binary here and Debian's LLVM is too old, so it is built
/// against the nightly toolchain's own libLLVM. The linker keeps a RUNPATH to the prefix
/// it was built with, so the prefix lives in CARGO_HOME, next to the installed binary.
fn bpf_linker(_root: &Path) -> anyhow::Result<()> {
    let prefix = cargo_home()?.join("overlay-llvm-prefix");
    let (lib_name, llvm_major) = nightly_llvm()?;
    let sysroot = run::output("rustc", &["+nightly", "--print", "sysroot"])?;
    let library = PathBuf::from(sysroot.trim()).join("lib").join(&lib_name);
    if !library.exists() {
        bail!("{} not found: the nightly toolchain ships no libLLVM to build bpf-linker with", library.display());
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
    let works = Command::new("bpf-linker").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if works {
        return Ok(());
    }
    eprintln!("xtask setup: building bpf-linker against nightly's LLVM {llvm_major} (about 90 s)");
    run::status(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--version", "^0.13", "--force", "--no-default-features"])
            .args(["--features", &format!("llvm-{llvm_major}")])
            .env("LLVM_PREFIX", &prefix),
    )
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
