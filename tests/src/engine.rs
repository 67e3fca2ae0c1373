//! The cluster's Docker Engine API in tests: one CA with certificates for the manager,
//! each Docker host's agent and a CLI user; the manager serving `--docker-api`; and the
//! real docker CLI (Debian's 20.10, `/usr/bin/docker`) pointed at it, as a user types it.

use std::{
    collections::BTreeMap,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::{
    cluster::{self, Daemon, Scratch},
    docker::docker_cli,
    lab::Host,
    pki::{Ca, Leaf, Usage},
};

/// The port the manager's TCP listener and the agents' engine endpoints use.
pub const PORT: u16 = 2376;

/// The cluster's certificates.
pub struct EnginePki {
    pub ca: Ca,
    pub manager: Leaf,
    /// A CLI user's client certificate.
    pub client: Leaf,
    nodes: BTreeMap<String, Leaf>,
}

impl EnginePki {
    /// The CA, the manager's certificate (server and client, naming `manager`'s
    /// address), one server certificate per node (naming its address) and a client's.
    pub fn create(dir: &Path, manager: &Host, nodes: &[&Host]) -> anyhow::Result<Self> {
        let ca = Ca::create(dir)?;
        let manager = ca.sign("manager", &manager.name, &[manager.ip], Usage::Both)?;
        let client = ca.sign("client", "operator", &[], Usage::Client)?;
        let mut signed = BTreeMap::new();
        for node in nodes {
            signed.insert(node.name.clone(), ca.sign(&node.name, &node.name, &[node.ip], Usage::Server)?);
        }
        Ok(EnginePki { ca, manager, client, nodes: signed })
    }

    fn path(path: &Path) -> String {
        path.to_string_lossy().into_owned()
    }

    /// `overlay agent` options that serve `node`'s dockerd to the managers.
    pub fn agent_args(&self, node: &str) -> anyhow::Result<Vec<String>> {
        let leaf = self.nodes.get(node).with_context(|| format!("no certificate for {node}"))?;
        Ok(vec![
            "--docker-tls-ca".into(),
            Self::path(&self.ca.cert),
            "--docker-tls-cert".into(),
            Self::path(&leaf.cert),
            "--docker-tls-key".into(),
            Self::path(&leaf.key),
        ])
    }

    /// `overlay manage` options for its certificate.
    pub fn manager_args(&self) -> Vec<String> {
        vec![
            "--tls-ca".into(),
            Self::path(&self.ca.cert),
            "--tls-cert".into(),
            Self::path(&self.manager.cert),
            "--tls-key".into(),
            Self::path(&self.manager.key),
        ]
    }
}

/// `overlay manage` on `host` with the tests' short timing and `extra` options
/// (`--docker-api ...`, certificates).
pub fn start_manager(scratch: &Scratch, store: &str, host: &Host, extra: &[String]) -> anyhow::Result<Daemon> {
    let mut args = cluster::manager_args(store, host);
    args.extend_from_slice(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::spawn_entered(host, &host.name, &args, &scratch.path(&format!("{}.log", host.name)))
}

/// What a docker command printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn of(out: &std::process::Output) -> Self {
        Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The docker CLI pointed at one endpoint, with a configuration directory of its own
/// (nothing of root's `~/.docker` is read or written).
#[derive(Clone, Debug)]
pub struct DockerCli {
    host: String,
    /// Run inside this network namespace (`ip netns exec`), for a TCP endpoint.
    netns: Option<String>,
    /// `--tlsverify` with the files of this `DOCKER_CERT_PATH`.
    cert_path: Option<PathBuf>,
    config_dir: PathBuf,
}

impl DockerCli {
    pub fn unix(socket: &Path, config_dir: &Path) -> Self {
        DockerCli {
            host: format!("unix://{}", socket.display()),
            netns: None,
            cert_path: None,
            config_dir: config_dir.to_owned(),
        }
    }

    /// `docker --tlsverify -H tcp://ADDRESS` from namespace `netns`.
    pub fn tls(address: SocketAddr, cert_path: &Path, netns: &str, config_dir: &Path) -> Self {
        DockerCli {
            host: format!("tcp://{address}"),
            netns: Some(netns.to_owned()),
            cert_path: Some(cert_path.to_owned()),
            config_dir: config_dir.to_owned(),
        }
    }

    /// `docker ARGS`, fed `stdin`, given at most 60 s.
    pub fn output(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Output> {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "timeout", "60", docker_cli()]);
                c
            }
            None => {
                let mut c = Command::new("timeout");
                c.args(["60", docker_cli()]);
                c
            }
        };
        if let Some(path) = &self.cert_path {
            command.arg("--tlsverify").env("DOCKER_CERT_PATH", path);
        }
        command.args(["-H", &self.host]).args(args).env("DOCKER_CONFIG", &self.config_dir);
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("starting docker {}", args.join(" ")))?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("docker's stdin")?;
            pipe.write_all(input)?;
            // Dropping the pipe is the end of stdin.
        }
        Ok(Output::of(&child.wait_with_output()?))
    }

    /// `docker ARGS` on a terminal of its own (`script`, util-linux's), as a user types
    /// `docker exec -it` or `docker run -it`: the CLI refuses `-t` without one. What it
    /// printed comes back with the terminal's line ends (`\r\n`); stdin is empty.
    pub fn output_tty(&self, args: &[&str]) -> anyhow::Result<Output> {
        if self.netns.is_some() {
            bail!("a terminal is only given to the CLI on a unix socket");
        }
        let line = std::iter::once(docker_cli())
            .chain(["-H", &self.host])
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ");
        let out = Command::new("timeout")
            .args(["60", "script", "--quiet", "--return", "--command", &line, "/dev/null"])
            .env("DOCKER_CONFIG", &self.config_dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting script for docker {}", args.join(" ")))?;
        Ok(Output::of(&out))
    }

    /// `docker ARGS`: its stdout, or an error with what it printed.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.output(args, None)?;
        if !out.success {
            bail!("`docker {}` failed: {}{}", args.join(" "), out.stderr.trim(), out.stdout.trim());
        }
        Ok(out.stdout)
    }
}

/// `word` as one word of a POSIX shell command line.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
