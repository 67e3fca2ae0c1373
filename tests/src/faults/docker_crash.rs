//! Scenario 3 through Docker: the agent that serves the Docker plugin to a real dockerd
//! SIGKILLed at a random point of `docker network create`, `docker run` and
//! `docker rm -f`, and started again, round after round. After each restart, besides
//! what [`super::crash`] checks of the store and the host, dockerd and the plugin agree:
//! the same networks, the same endpoints, each network bound to its cluster network, and
//! every running Docker container answers a container of another host.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use rand::Rng;

pub use super::crash::Size;
use super::{
    audit,
    crash::{host_leftovers, median_and_slowest},
    fixture::Cluster,
};
use crate::{
    cluster,
    docker::{self, Dockerd},
    traffic,
};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Figures {
    pub rounds: usize,
    pub kills_during_network_create: usize,
    pub kills_during_run: usize,
    pub kills_during_rm: usize,
    /// Kills that came while the Docker command still ran (the others came just after it
    /// ended, while the plugin finished what it started).
    pub kills_mid_command: usize,
    /// Docker commands that failed because of the kill (their effect must be whole or
    /// absent, never half).
    pub commands_failed: usize,
    pub max_recovery_s: f64,
    pub median_recovery_s: f64,
    /// What was left without an owner, or disagreed between dockerd and the plugin, in
    /// the round that failed (the run stops there).
    pub leaks: usize,
    pub duplicates: usize,
    pub problems: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    NetworkCreate,
    Run,
    Rm,
}

/// The Docker network bound to the fixture's cluster network (same subnet), whose
/// containers reach the peer on agt02.
const DOCKER_NETWORK: &str = "dnet";

pub fn run(size: Size) -> anyhow::Result<Figures> {
    let mut cluster = Cluster::start("dkcr", 1, 2, 8)?;
    let resolver = docker::DNS_ADDRESS;
    let dockerd = Dockerd::start(cluster.host(0), resolver)?;
    let state_dir = cluster.scratch.path("agt01-docker");
    let result = (|| -> anyhow::Result<Figures> {
        cluster.kill_agent(0)?;
        cluster.agent_extra[0] = dockerd.agent_args(&state_dir);
        cluster.start_agent(0)?;
        body(&mut cluster, &dockerd, &state_dir, size)
    })();
    if result.is_err() {
        eprintln!("{}", dockerd.log_tail());
    }
    // While the plugin answers: endpoints are undone and addresses released.
    dockerd.remove_all_containers();
    cluster.report(result)
}

/// `docker ARGS` against `dockerd`, started and not waited for.
fn spawn_docker(dockerd: &Dockerd, args: &[&str]) -> anyhow::Result<Child> {
    let host = format!("unix://{}", dockerd.socket.display());
    Command::new(docker::docker_cli())
        .args(["-H", &host])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting docker")
}

fn body(cluster: &mut Cluster, dockerd: &Dockerd, state_dir: &std::path::Path, size: Size) -> anyhow::Result<Figures> {
    let (peer_ns, _) = cluster.run(1, "peer")?;
    let plugin = docker::PLUGIN;
    cluster::wait_for("the plugin's socket", Duration::from_secs(20), || {
        Ok(if dockerd.plugin_socket(plugin).exists() { Ok(()) } else { Err("not yet".into()) })
    })?;
    dockerd.docker(&docker::network_create(super::fixture::SUBNET, DOCKER_NETWORK))?;
    let mut rng = rand::thread_rng();
    let mut figures = Figures { rounds: size.rounds, ..Default::default() };
    let mut recoveries = Vec::new();
    let mut live: Vec<String> = Vec::new();
    for round in 0..size.rounds {
        let operation = match (round % 3, live.len()) {
            (_, 0) => Operation::Run,
            (0, _) => Operation::NetworkCreate,
            (1, n) if n < 3 => Operation::Run,
            _ => Operation::Rm,
        };
        let name = format!("d{round}");
        let spare = format!("dspare{round}");
        let subnet = format!("10.2.{}.0/24", round % 250);
        let victim =
            if let Operation::Rm = operation { live.remove(rng.gen_range(0..live.len())) } else { String::new() };
        let command = match operation {
            Operation::NetworkCreate => spawn_docker(dockerd, &docker::network_create(&subnet, &spare))?,
            Operation::Run => spawn_docker(
                dockerd,
                &["run", "-d", "--name", &name, "--net", DOCKER_NETWORK, docker::IMAGE, "sleep", "3600"],
            )?,
            Operation::Rm => spawn_docker(dockerd, &["rm", "-f", &victim])?,
        };
        let delay = size.max_delay.mul_f64(rng.gen_range(0.0..1.0));
        std::thread::sleep(delay);
        let mut command = command;
        if command.try_wait()?.is_none() {
            figures.kills_mid_command += 1;
        }
        let killed_at = Instant::now();
        cluster.kill_agent(0)?;
        cluster.start_agent(0)?;
        let output = command.wait_with_output()?;
        let ok = output.status.success();
        match operation {
            Operation::NetworkCreate => figures.kills_during_network_create += 1,
            Operation::Run => figures.kills_during_run += 1,
            Operation::Rm => figures.kills_during_rm += 1,
        }
        if !ok {
            figures.commands_failed += 1;
            eprintln!(
                "round {round}: {operation:?} failed across the kill: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        // A container whose `docker run` failed may still exist, created and not started.
        if let Operation::Run = operation {
            let (found, state) = dockerd.docker_status(&["inspect", "-f", "{{.State.Running}}", &name])?;
            if found && state.trim() == "true" {
                live.push(name.clone());
            } else {
                let _ = dockerd.docker_status(&["rm", "-f", &name]);
            }
        }
        let check = cluster::wait_for(
            &format!("round {round} ({operation:?}, killed after {delay:?}) to converge"),
            Duration::from_secs(30),
            || {
                let problems = problems(cluster, dockerd, state_dir, &peer_ns, &live)?;
                Ok(if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) })
            },
        );
        match check {
            Ok(_) => recoveries.push(killed_at.elapsed()),
            Err(error) => {
                let left = problems(cluster, dockerd, state_dir, &peer_ns, &live)?;
                figures.leaks += left.len();
                let entries = cluster.snapshot()?;
                let state = std::fs::read(state_dir.join("docker-plugin.json")).unwrap_or_default();
                let state = serde_json::from_slice(&state).unwrap_or_default();
                figures.duplicates +=
                    audit(&by_allocation(&entries, &state), &docker_names(dockerd)?).duplicate_addresses;
                figures.problems.push(format!("{error:#}"));
                if let Some(agent) = &cluster.agents[0] {
                    eprintln!("{}", agent.log_tail());
                }
                break;
            }
        }
        // The spare network goes again (no kill), so that rounds do not pile them up.
        if let Operation::NetworkCreate = operation {
            let _ = dockerd.docker_status(&["network", "rm", &spare]);
        }
    }
    (figures.median_recovery_s, figures.max_recovery_s) = median_and_slowest(recoveries);
    Ok(figures)
}

/// The names of dockerd's containers.
fn docker_names(dockerd: &Dockerd) -> anyhow::Result<BTreeSet<String>> {
    Ok(dockerd.docker(&["ps", "-a", "--format", "{{.Names}}"])?.split_whitespace().map(str::to_owned).collect())
}

/// The listing with each Docker endpoint under the ID of its address's allocation
/// (`docker-…`, from the IPAM driver, which the plugin's state pairs with Docker's
/// endpoint ID), so that the audit pairs endpoints and allocations as for the agent's.
fn by_allocation(entries: &[overlay::store::Entry], state: &serde_json::Value) -> Vec<overlay::store::Entry> {
    let allocation_of = |id: &str| state["endpoints"][id]["allocation"].as_str().map(str::to_owned);
    entries
        .iter()
        .map(|entry| {
            let mut entry = entry.clone();
            if let Some((dir, id)) = entry.key.rsplit_once('/')
                && entry.key.starts_with(overlay::endpoint::ENDPOINTS)
                && let Some(allocation) = allocation_of(id)
                && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&entry.value)
            {
                value["id"] = allocation.clone().into();
                entry.key = format!("{dir}/{allocation}");
                entry.value = value.to_string().into_bytes();
            }
            entry
        })
        .collect()
}

/// Everything not as it should be after a round, in words.
fn problems(
    cluster: &mut Cluster,
    dockerd: &Dockerd,
    state_dir: &std::path::Path,
    peer_ns: &str,
    live: &[String],
) -> anyhow::Result<Vec<String>> {
    let path = state_dir.join("docker-plugin.json");
    let state: serde_json::Value = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| path.display().to_string())?,
        Err(_) => serde_json::json!({}),
    };
    let entries = cluster.snapshot()?;
    let mut problems = audit(&by_allocation(&entries, &state), &docker_names(dockerd)?).problems;
    problems.extend(host_leftovers(cluster, 0, &entries)?);
    if !cluster.dead_agents().is_empty() {
        problems.push("agt01's agent exited".into());
    }
    // dockerd's networks of the plugin and its endpoints, against the plugin's state.
    let ids =
        dockerd.docker(&["network", "ls", "--no-trunc", "-q", "--filter", &format!("driver={}", docker::PLUGIN)])?;
    let docker_networks: BTreeSet<String> = ids.split_whitespace().map(str::to_owned).collect();
    let mut docker_endpoints = BTreeSet::new();
    for id in &docker_networks {
        let format = "{{range $id, $c := .Containers}}{{$c.EndpointID}} {{end}}";
        // A network removed in between: nothing of it to compare.
        let (ok, out) = dockerd.docker_status(&["network", "inspect", "-f", format, id])?;
        if ok {
            docker_endpoints.extend(out.split_whitespace().map(str::to_owned));
        }
    }
    let keys = |field: &str| -> BTreeSet<String> {
        state[field].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    };
    let plugin_networks = keys("networks");
    if plugin_networks != docker_networks {
        problems.push(format!("the plugin has networks {plugin_networks:?}, dockerd {docker_networks:?}"));
    }
    let plugin_endpoints = keys("endpoints");
    if plugin_endpoints != docker_endpoints {
        problems.push(format!("the plugin has endpoints {plugin_endpoints:?}, dockerd {docker_endpoints:?}"));
    }
    for (id, network) in state["networks"].as_object().into_iter().flatten() {
        if network["binding"]["status"] != "bound" {
            problems.push(format!("Docker network {id:.12} is {}", network["binding"]));
        }
    }
    if problems.is_empty() {
        for name in live {
            let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}";
            let ip: Ipv4Addr = dockerd.docker(&["inspect", "-f", format, name])?.trim().parse()?;
            if traffic::ping(peer_ns, ip, 1, "0.2")?.received == 0 {
                problems.push(format!("{name} ({ip}) does not answer the peer"));
            }
        }
    }
    Ok(problems)
}
