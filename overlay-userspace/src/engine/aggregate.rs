//! `docker info` and `docker ps` through the manager: every node asked at once, each
//! within [`FAN_OUT_DEADLINE`], so the answer comes in time even with a node down.
//!
//! `info` is laid out as classic Swarm's was: the cluster's totals in Docker's own
//! fields, and one block per node in `SystemStatus`, which the docker CLI prints line by
//! line (` agt01: 192.168.1.141`, `  └ Status: Healthy`, ...). Swarm showed reserved
//! CPUs and memory; nothing is reserved here, so each node shows its CPUs and memory.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use hyper::Method;
use serde_json::{Value, json};

use super::{
    ApiError, Engine,
    format::bytes_size,
    native,
    node_client::Target,
    nodes::{self, FAN_OUT_DEADLINE, Nodes},
    query::Query,
    route::{API_VERSION, MIN_API_VERSION},
};
use crate::{cluster::NodeView, store::Store};

/// `Server Version` and the engine version `docker version` shows.
pub fn server_version() -> String {
    format!("overlay/{}", env!("CARGO_PKG_VERSION"))
}

/// `GET /version`.
pub fn version(kernel_version: &str) -> Value {
    let details = json!({
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel_version,
        "BuildTime": "",
        "Experimental": "false",
    });
    json!({
        "Platform": { "Name": "overlay cluster manager" },
        "Components": [{ "Name": "Engine", "Version": server_version(), "Details": details }],
        "Version": server_version(),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel_version,
    })
}

/// Go's name of the architecture, as Docker reports it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Container counts: all, running, paused, stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    all: u64,
    running: u64,
    paused: u64,
    stopped: u64,
}

impl Counts {
    fn of_docker(info: &Value) -> Counts {
        let n = |k: &str| info[k].as_u64().unwrap_or(0);
        Counts {
            all: n("Containers"),
            running: n("ContainersRunning"),
            paused: n("ContainersPaused"),
            stopped: n("ContainersStopped"),
        }
    }

    fn add(&mut self, other: Counts) {
        self.all += other.all;
        self.running += other.running;
        self.paused += other.paused;
        self.stopped += other.stopped;
    }

    fn text(self) -> String {
        format!("{} ({} Running, {} Paused, {} Stopped)", self.all, self.running, self.paused, self.stopped)
    }
}

/// What the manager says about itself in `info`.
#[derive(Clone, Debug)]
pub struct ManagerFacts {
    pub name: String,
    pub hostname: String,
    pub kernel_version: String,
    pub os: String,
}

/// `GET /info`: the cluster.
pub async fn info<S: Store>(engine: &Engine<S>) -> Result<Value, ApiError> {
    let nodes = Nodes::read(&engine.store).await?;
    let natives = native::list(&engine.store).await?;
    let asks = nodes.view.nodes.iter().map(|node| async move {
        match Target::of(&node.record) {
            Some(target) => Some(engine.client.call_json(&target, Method::GET, "/info", None, FAN_OUT_DEADLINE).await),
            None => None,
        }
    });
    let answers = join_all(asks).await;
    let mut total = Counts::default();
    let (mut images, mut cpus, mut memory) = (0u64, 0u64, 0u64);
    let mut warnings = Vec::new();
    let leader = nodes.view.manager.as_ref().map(|m| m.name.clone());
    let role = if leader.as_deref() == Some(engine.manager.name.as_str()) { "primary" } else { "replica" };
    let mut status = vec![
        pair("Role", role),
        pair("Strategy", "spread"),
        pair("Filters", "constraint (-e constraint:node==NAME, -e constraint:LABEL==VALUE)"),
        pair("Nodes", &nodes.view.nodes.len().to_string()),
    ];
    for (node, answer) in nodes.view.nodes.iter().zip(answers) {
        let record = &node.record;
        let native_running =
            natives.iter().filter(|c| c.running() && c.status.as_ref().is_some_and(|s| s.node_id == record.id)).count();
        let mut counts = Counts { all: native_running as u64, running: native_running as u64, ..Counts::default() };
        let mut labels = record.all_labels();
        let (engine_line, error) = match &answer {
            Some(Ok(docker)) => {
                counts.add(Counts::of_docker(docker));
                images += docker["Images"].as_u64().unwrap_or(0);
                if let Some(driver) = docker["Driver"].as_str().filter(|d| !d.is_empty()) {
                    labels.insert("storagedriver".into(), driver.to_owned());
                }
                (docker["ServerVersion"].as_str().map(str::to_owned), None)
            }
            Some(Err(error)) => (None, Some(error.to_string())),
            None => {
                (None, Some("its agent serves no Docker engine (overlay agent --docker --docker-tls-*)".to_owned()))
            }
        };
        total.add(counts);
        cpus += u64::from(record.cpus);
        memory += record.memory_bytes;
        if let Some(error) = &error {
            warnings.push(format!("WARNING: node {}: {error}", record.name));
        }
        status.extend(node_lines(node, counts, &labels, engine_line.as_deref(), error.as_deref()));
    }
    let mut info = json!({
        "ID": format!("overlay-manager-{}", engine.manager.name),
        "Containers": total.all,
        "ContainersRunning": total.running,
        "ContainersPaused": total.paused,
        "ContainersStopped": total.stopped,
        "Images": images,
        "Driver": "",
        "DriverStatus": [],
        "SystemStatus": status,
        "Plugins": { "Volume": [], "Network": ["overlay"], "Authorization": null, "Log": [] },
        "NCPU": cpus,
        "MemTotal": memory,
        "Name": engine.manager.hostname,
        "KernelVersion": engine.manager.kernel_version,
        "OperatingSystem": engine.manager.os,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "ServerVersion": server_version(),
        "Swarm": { "LocalNodeState": "inactive" },
        "Warnings": warnings,
    });
    // The nodes' kernels have what these say; left false, the CLI would warn of each.
    for capability in [
        "MemoryLimit",
        "SwapLimit",
        "KernelMemory",
        "CpuCfsPeriod",
        "CpuCfsQuota",
        "CPUShares",
        "CPUSet",
        "PidsLimit",
        "IPv4Forwarding",
        "BridgeNfIptables",
        "BridgeNfIp6tables",
    ] {
        info[capability] = Value::Bool(true);
    }
    Ok(info)
}

fn pair(key: &str, value: &str) -> Value {
    json!([key, value])
}

/// A node's block of `SystemStatus`.
fn node_lines(
    node: &NodeView,
    counts: Counts,
    labels: &BTreeMap<String, String>,
    server_version: Option<&str>,
    error: Option<&str>,
) -> Vec<Value> {
    let record = &node.record;
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut lines = vec![
        pair(&format!(" {}", record.name), &record.address.to_string()),
        pair("  └ ID", &record.id),
        pair("  └ Status", &node.status()),
        pair("  └ Containers", &counts.text()),
        pair("  └ CPUs", &record.cpus.to_string()),
        pair("  └ Memory", &bytes_size(record.memory_bytes)),
        pair("  └ Labels", &labels.join(", ")),
    ];
    if let Some(engine) = &record.engine {
        let version = server_version.map(|v| format!(" (Docker {v})")).unwrap_or_default();
        lines.push(pair("  └ Engine", &format!("tcp://{}{version}", engine.address)));
    }
    if let Some(error) = error {
        lines.push(pair("  └ Error", error));
    }
    lines
}

/// `GET /containers/json`: every node's containers named `/NODE/NAME`, the native ones
/// too; a node that does not answer shows what it last listed, as on a down host.
pub async fn containers<S: Store>(engine: &Engine<S>, query: &Query) -> Result<Value, ApiError> {
    let filters = query.filters().map_err(ApiError::BadRequest)?;
    let all = query.flag("all");
    let nodes = Nodes::read(&engine.store).await?;
    let raw_filters = query.get("filters").filter(|f| !f.is_empty() && !filters.is_empty());
    let listings = nodes::list_everywhere(engine, &nodes, raw_filters).await;
    let mut out = Vec::new();
    let mut answered = Vec::new();
    for listing in listings {
        match listing.containers {
            Ok(containers) => {
                answered.push(listing.target.node_id.clone());
                out.extend(containers.into_iter().map(|c| under_node(c, &listing.target.node, None)));
            }
            Err(error) => tracing::info!("docker ps: {error}"),
        }
    }
    // What nodes that did not answer (or have left) last listed.
    let seen: Vec<(String, nodes::Seen)> =
        engine.routes().seen().iter().map(|(id, seen)| (id.clone(), seen.clone())).collect();
    for (node_id, seen) in seen {
        if answered.contains(&node_id) {
            continue;
        }
        out.extend(
            seen.containers
                .into_iter()
                .filter(|c| matches(c, &filters))
                .map(|c| under_node(c, &seen.node, Some("Host Down"))),
        );
    }
    for native in native::list(&engine.store).await? {
        let summary = native.summary();
        if matches(&summary, &filters) {
            out.push(summary);
        }
    }
    if !all {
        out.retain(|c| c["State"] == "running");
    }
    out.sort_by(|a, b| b["Created"].as_i64().cmp(&a["Created"].as_i64()));
    if let Some(limit) = query.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0) {
        out.truncate(limit);
    }
    Ok(Value::Array(out))
}

/// A node's container as the cluster lists it: each name under the node's
/// (`/busybox01` → `/agt02/busybox01`), and the status of a down host if it is one.
pub fn under_node(mut container: Value, node: &str, status: Option<&str>) -> Value {
    if let Some(names) = container["Names"].as_array_mut() {
        for name in names.iter_mut() {
            if let Some(text) = name.as_str() {
                *name = Value::String(format!("/{node}{}", ensure_slash(text)));
            }
        }
    }
    if let Some(status) = status {
        container["Status"] = Value::String(status.to_owned());
    }
    container
}

fn ensure_slash(name: &str) -> String {
    if name.starts_with('/') { name.to_owned() } else { format!("/{name}") }
}

/// Whether a container summary passes the filters the manager applies itself (to
/// native containers and to what a down node last listed): `name` (a part of
/// `node/name`), `id` (a prefix) and `status`. Other filters are the nodes' to apply;
/// such containers are left out when one is given.
fn matches(container: &Value, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| {
        values.iter().any(|v| match key.as_str() {
            "name" => container["Names"]
                .as_array()
                .is_some_and(|names| names.iter().filter_map(Value::as_str).any(|n| n.contains(v.as_str()))),
            "id" => container["Id"].as_str().is_some_and(|id| id.starts_with(v.as_str())),
            "status" => container["State"] == v.as_str(),
            _ => false,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_named_under_their_node() {
        let c = json!({ "Id": "abc", "Names": ["/busybox01"], "State": "running", "Status": "Up 2 minutes" });
        let listed = under_node(c.clone(), "agt02", None);
        assert_eq!(listed["Names"][0], "/agt02/busybox01");
        assert_eq!(listed["Status"], "Up 2 minutes");
        assert_eq!(under_node(c, "agt02", Some("Host Down"))["Status"], "Host Down");
    }

    #[test]
    fn filters_the_manager_applies() {
        let c = json!({ "Id": "abc123", "Names": ["/agt02/busybox01"], "State": "running" });
        let f = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), vec![v.to_owned()])]);
        assert!(matches(&c, &BTreeMap::new()));
        assert!(matches(&c, &f("name", "busybox")));
        assert!(matches(&c, &f("name", "agt02/busybox01")));
        assert!(!matches(&c, &f("name", "web")));
        assert!(matches(&c, &f("id", "abc")));
        assert!(matches(&c, &f("status", "running")));
        assert!(!matches(&c, &f("label", "a=b")));
    }
}
