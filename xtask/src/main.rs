//! `cargo xtask`: what a developer or CI runs. Every command first installs what is
//! missing (idempotent, quick when nothing is).

mod run;
mod setup;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Setup, build, test, demo and benchmark the overlay")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what the build and the tests need (Debian packages, nightly rust-src,
    /// bpf-linker built against nightly's LLVM). Idempotent.
    Setup,
    /// Build the eBPF object and the workspace.
    Build,
    /// Run every test: unit tests and the integration tests on simulated hosts.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Bring up the reference scenario on simulated hosts and walk through it.
    Demo {
        /// The cluster store: etcd, or zk (ZooKeeper).
        #[arg(long, default_value = "etcd", value_parser = ["etcd", "zk"])]
        store: String,
    },
    /// Benchmark this datapath against the raw underlay, the bound, the floor (the bound
    /// plus bare VXLAN) and the kernel VXLAN, Flannel-style and Cilium-style paths.
    Bench {
        /// Fewer and shorter runs: 5 short rounds instead of 9.
        #[arg(long)]
        quick: bool,
        /// Only the datapath figures, not the control plane.
        #[arg(long)]
        datapath_only: bool,
        /// Only the fault scenarios (etcd leader killed, a host cut off from the store,
        /// the agent killed at random points, the store wiped), added to the JSON as `faults`.
        #[arg(long, conflicts_with = "datapath_only")]
        faults: bool,
        /// Write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the chart (SVG) here.
        #[arg(long)]
        chart: Option<PathBuf>,
    },
}

/// A failure is one line (the error and its causes), whatever RUST_BACKTRACE says.
fn main() -> std::process::ExitCode {
    match run_task() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_task() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.command {
        Task::Setup => setup::all(&root),
        Task::Build => {
            setup::all(&root)?;
            run::cargo(&root, &["build", "--workspace", "--all-targets"])
        }
        Task::Test { cargo_args } => {
            setup::all(&root)?;
            run::remove_stale_labs()?;
            run::cargo(&root, &["build", "--workspace", "--all-targets"])?;
            let mut args = vec!["test", "--workspace", "--no-fail-fast", "--"];
            args.extend(cargo_args.iter().map(String::as_str));
            let overlay = root.join("target/debug/overlay");
            run::cargo_test(&root, &args, &[("OVERLAY_BIN", overlay.as_os_str())])
        }
        Task::Demo { store } => {
            setup::all(&root)?;
            run::remove_stale_labs()?;
            run::cargo(&root, &["build", "--workspace", "--bins"])?;
            let overlay = root.join("target/debug/overlay");
            let demo = root.join("target/debug/overlay-demo");
            run::program_with_env(&demo, &["--store", &store], &[("OVERLAY_BIN", overlay.as_os_str())])
        }
        Task::Bench { quick, datapath_only, faults, json, chart } => {
            setup::all(&root)?;
            run::remove_stale_labs()?;
            run::cargo(&root, &["build", "--release", "--workspace", "--bins"])?;
            let mut args: Vec<String> = Vec::new();
            if quick {
                args.push("--quick".into());
            }
            if datapath_only {
                args.push("--datapath-only".into());
            }
            if faults {
                args.push("--faults".into());
            }
            let json = json.unwrap_or_else(|| root.join("bench-results/bench.json"));
            let chart = chart.unwrap_or_else(|| root.join("bench-results/bench.svg"));
            args.extend(["--json".into(), absolute(&json)?, "--chart".into(), absolute(&chart)?]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let overlay = root.join("target/release/overlay");
            run::program_with_env(
                &root.join("target/release/overlay-bench"),
                &args,
                &[("OVERLAY_BIN", overlay.as_os_str())],
            )
        }
    }
}

fn absolute(path: &std::path::Path) -> anyhow::Result<String> {
    let path = if path.is_absolute() { path.to_owned() } else { std::env::current_dir()?.join(path) };
    Ok(path.to_string_lossy().into_owned())
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).context("xtask is not inside the workspace")
}
