//! Running commands and reporting failures with the command line.

use std::{ffi::OsStr, path::Path, process::Command};

use anyhow::{Context, bail};

pub fn status(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

pub fn output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("starting {program}"))?;
    if !out.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(root, args, &[])
}

pub fn cargo_with_env(root: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(args).current_dir(root);
    for (key, value) in env {
        command.env(key, value);
    }
    status(&mut command)
}

pub fn program_with_env(program: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let mut command = Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    status(&mut command)
}

/// Deletes network namespaces (and their pins) left by a test run that was killed
/// before its labs could clean up. Only the labs' `ovt-` names are touched.
pub fn remove_stale_labs() -> anyhow::Result<()> {
    let list = output("ip", &["netns", "list"])?;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if !name.starts_with("ovt-") {
            continue;
        }
        if let Ok(pids) = output("ip", &["netns", "pids", name]) {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        output("ip", &["netns", "del", name])?;
        let _ = std::fs::remove_dir_all(Path::new("/run/overlay/bpffs").join(name));
        eprintln!("xtask: removed stale namespace {name}");
    }
    Ok(())
}
