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
    let out = Command::new(program).args(args).output().with_context(|| format!("starting {program}"))?;
    if !out.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn cargo(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(root, args, &[])
}

/// `cargo` in `root`, without what `cargo run` told xtask about xtask itself
/// (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...): build scripts such as ring's rerun when
/// those change, so a build started from xtask would otherwise redo a minute of work
/// that a plain `cargo build` just did, and the other way round.
fn cargo_command(root: &Path) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let about_xtask = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || ["CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_RUSTC_CURRENT_DIR"]
                .contains(&key.as_ref());
        if about_xtask {
            command.env_remove(key.as_ref());
        }
    }
    command
}

pub fn cargo_with_env(root: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let mut command = cargo_command(root);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    status(&mut command)
}

/// Runs `cargo test`, echoing its output, and ends with one line that adds up every
/// test binary's result: `tests: N passed, M failed`.
pub fn cargo_test(root: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    let mut command = cargo_command(root);
    command.args(args).stdout(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().context("starting cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some((p, f)) = parse_result(&line) {
                passed += p;
                failed += f;
            }
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

/// `test result: ok. 3 passed; 0 failed; ...` → (3, 0).
fn parse_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';').find_map(|part| part.trim().strip_suffix(word)?.trim().rsplit(' ').next()?.parse::<u64>().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

pub fn program_with_env(program: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let mut command = Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    status(&mut command)
}

/// Deletes network namespaces (and their pins and container resolv.conf files) left by a test run that was killed
/// before its labs could clean up. Only the labs' `ovt-pPID-…` names are touched, and
/// only those whose owning process is gone: labs of a run still going on (another
/// checkout's tests, a benchmark) are left alone.
pub fn remove_stale_labs() -> anyhow::Result<()> {
    let list = output("ip", &["netns", "list"])?;
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if !name.starts_with("ovt-") || lab_owner_alive(name) {
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
    // Container resolv.conf files (/etc/netns/NS/) that killed agents left behind, and
    // pin directories of labs whose namespaces are gone (an agent killed during the
    // lab's teardown can make its directories again after the lab removed them).
    for parent in ["/etc/netns", "/run/overlay/bpffs"] {
        let Ok(dirs) = std::fs::read_dir(parent) else { continue };
        for dir in dirs.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if name.starts_with("ovt-") && !lab_owner_alive(&name) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
    Ok(())
}

/// Whether the process named in a lab namespace `ovt-pPID-…` (see the tests crate's
/// `lab::NS_PREFIX`) still runs. A name without a PID is an old lab's.
fn lab_owner_alive(name: &str) -> bool {
    name.strip_prefix("ovt-p")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
}

#[cfg(test)]
mod tests {
    #[test]
    fn lab_owner_is_read_from_the_name() {
        let me = format!("ovt-p{}-e2e-0f3c-agt01", std::process::id());
        assert!(super::lab_owner_alive(&me));
        // A PID above any pid_max Linux allows (2^22).
        assert!(!super::lab_owner_alive("ovt-p99999999-e2e-0f3c-agt01"));
        assert!(!super::lab_owner_alive("ovt-e2e-0f3c-agt01"));
    }

    #[test]
    fn parses_cargo_test_results() {
        let line = "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.2s";
        assert_eq!(super::parse_result(line), Some((3, 2)));
        assert_eq!(super::parse_result("running 3 tests"), None);
    }
}
