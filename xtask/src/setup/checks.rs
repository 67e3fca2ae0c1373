//! Checks that each tool works, not only that its package is installed: every command
//! the project runs answers, protoc compiles a file importing
//! `google/protobuf/descriptor.proto`, etcd and ZooKeeper serve and dockerd runs a
//! container (all briefly, in a namespace of their own, see [`super::probe`]).
//!
//! They take a few seconds, so their success is remembered in a stamp keyed by the
//! installed versions of the packages, bpf-linker and nightly: the next run with the
//! same versions skips them, a changed package checks again.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::bail;

use super::{packages, probe, toolchain};

/// Bump when the checks change, so that machines check again.
const CHECKS_VERSION: u32 = 2;

/// The commands the project runs (the build, the tests, the demo, the bench), how to
/// see that each one works, and its package.
const COMMANDS: &[(&[&str], &str)] = &[
    (&["ip", "-V"], "iproute2"),
    (&["bridge", "-V"], "iproute2"),
    (&["tc", "-V"], "iproute2"),
    (&["nsenter", "--version"], "util-linux"),
    (&["unshare", "--version"], "util-linux"),
    (&["script", "--version"], "bsdutils"),
    (&["mount", "--version"], "mount"),
    (&["kill", "--version"], "procps"),
    (&["sysctl", "--version"], "procps"),
    (&["tar", "--version"], "tar"),
    (&["curl", "--version"], "curl"),
    (&["ping", "-V"], "iputils-ping"),
    (&["iperf3", "--version"], "iperf3"),
    (&["tcpdump", "--version"], "tcpdump"),
    (&["dig", "-v"], "bind9-dnsutils"),
    (&["bpftool", "version"], "bpftool"),
    (&["ethtool", "--version"], "ethtool"),
    (&["openssl", "version"], "openssl"),
    (&["cc", "--version"], "gcc"),
    (&["protoc", "--version"], "protobuf-compiler"),
    (&["/usr/bin/etcd", "--version"], "etcd-server"),
    (&["java", "-version"], "zookeeper"),
    (&["/usr/sbin/dockerd", "--version"], "docker.io"),
    (&["/usr/bin/docker", "--version"], "docker.io"),
    (&["containerd", "--version"], "containerd"),
    (&["runc", "--version"], "runc"),
    (&["/bin/busybox", "true"], "busybox-static"),
    (&["nft", "--version"], "nftables"),
];

/// Runs the checks unless they passed before with the same versions installed.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let dir = state_dir(root);
    let stamp = dir.join("checked");
    let key = format!("checks {CHECKS_VERSION}\n{}{}", packages::fingerprint()?, toolchain::fingerprint());
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == key) {
        return Ok(());
    }
    let _ = std::fs::remove_file(&stamp);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let started = std::time::Instant::now();
    eprintln!("xtask setup: checking that every tool works (once per set of package versions)");
    for (command, package) in COMMANDS {
        let out = Command::new(command[0]).args(&command[1..]).output();
        if !out.is_ok_and(|o| o.status.success()) {
            bail!(
                "xtask setup: `{}` does not run: it comes with {package}, `apt-get install --reinstall --no-install-recommends {package}`",
                command.join(" ")
            );
        }
    }
    protoc(&logs)?;
    probe::etcd(&logs)?;
    probe::zookeeper(&logs)?;
    probe::dockerd(&logs)?;
    std::fs::write(&stamp, key)?;
    eprintln!("xtask setup: every tool works ({:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}

/// `target/xtask-setup` (or under `$CARGO_TARGET_DIR`): the stamp and the checks' logs.
fn state_dir(root: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("xtask-setup")
}

/// What etcd-client's build does (through prost-build): protoc on files that import
/// the well-known types, which protoc finds in /usr/include only if libprotobuf-dev
/// is installed.
fn protoc(logs: &Path) -> anyhow::Result<()> {
    let dir = probe::TempDir::new("protoc")?;
    std::fs::write(
        dir.path().join("check.proto"),
        "syntax = \"proto3\";\npackage check;\nimport \"google/protobuf/descriptor.proto\";\n\
         message Check { google.protobuf.FileDescriptorProto file = 1; }\n",
    )?;
    let out = Command::new("protoc")
        .arg("--include_imports")
        .arg("-o")
        .arg(dir.path().join("check.pb"))
        .arg("-I")
        .arg(dir.path())
        .arg(dir.path().join("check.proto"))
        .output()?;
    let log = logs.join("protoc.log");
    std::fs::write(&log, [out.stdout.as_slice(), out.stderr.as_slice()].concat())?;
    if !out.status.success() {
        bail!(
            "xtask setup: protoc cannot compile a file that imports google/protobuf/descriptor.proto ({}): the well-known protos come with libprotobuf-dev, `apt-get install --reinstall --no-install-recommends libprotobuf-dev`",
            log.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_checked_command_comes_from_a_listed_package() {
        for (command, package) in super::COMMANDS {
            assert!(
                super::packages::PACKAGES.iter().any(|p| p.name == *package),
                "{command:?} comes from {package}, which setup does not install"
            );
        }
    }
}
