//! Running commands, on the host or inside a namespace, with errors that show stderr.

use std::process::{Command, Output, Stdio};

use anyhow::{Context, bail};

/// Runs `args` and returns stdout; a non-zero exit is an error carrying stderr.
pub fn run(args: &[&str]) -> anyhow::Result<String> {
    let output = output(args)?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `args` and returns its output whatever the exit status.
pub fn output(args: &[&str]) -> anyhow::Result<Output> {
    let (program, rest) = args.split_first().context("empty command")?;
    Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{}`", args.join(" ")))
}

/// Runs `args` inside network namespace `ns` (`ip netns exec NS ...`).
pub fn run_in(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    run(&in_ns(ns, args))
}

pub fn output_in(ns: &str, args: &[&str]) -> anyhow::Result<Output> {
    output(&in_ns(ns, args))
}

pub fn in_ns<'a>(ns: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    all
}

/// `ip -n NS ...`
pub fn ip(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["ip", "-n", ns];
    all.extend_from_slice(args);
    run(&all)
}
