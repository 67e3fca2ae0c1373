//! `docker run` / `docker create` through the manager: the scheduler of `overlay run`
//! picks the node (spread by default; every live, healthy node that serves its engine
//! is a candidate), classic Swarm's `-e constraint:node==NAME` and
//! `-e constraint:LABEL==VALUE` narrow the choice (`-e strategy:binpack` changes it),
//! and the container is created on that node's dockerd. Names are unique in the cluster.
//! Cluster networks the container joins are made present in the node's dockerd first.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::{Response, StatusCode, header};
use serde_json::Value;

use super::{
    ApiError, Engine,
    body::{self, Body},
    native,
    networks::ensure_on_node,
    node_client::{ANSWER_TIMEOUT, node_error, read_all},
    nodes::{self, Nodes},
    query::Query,
};
use crate::{
    cluster::{
        Health,
        scheduler::{self, Candidate},
    },
    container::record::Strategy,
    network,
    store::Store,
};

/// What the `constraint:` and `strategy:` entries of a container's environment ask.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub node: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub strategy: Strategy,
}

/// Takes classic Swarm's scheduling entries out of `env` (they are not the
/// container's): `constraint:node==NAME`, `constraint:LABEL==VALUE`, and this project's
/// `strategy:spread|binpack|random`.
pub fn placement(env: &mut Vec<String>) -> Result<Placement, ApiError> {
    let mut placement = Placement::default();
    let mut kept = Vec::with_capacity(env.len());
    for entry in env.drain(..) {
        if let Some(constraint) = entry.strip_prefix("constraint:") {
            let Some((key, value)) = constraint.split_once("==") else {
                return Err(ApiError::BadRequest(format!(
                    "-e {entry}: only equality constraints are supported (constraint:node==NAME, \
                     constraint:LABEL==VALUE)"
                )));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() || value.starts_with('/') || value.contains(['*', '!', '~']) {
                return Err(ApiError::BadRequest(format!(
                    "-e {entry}: give a name and an exact value (no patterns, no negation)"
                )));
            }
            if key == "node" {
                placement.node = Some(value.to_owned());
            } else {
                placement.labels.insert(key.to_owned(), value.to_owned());
            }
        } else if let Some(strategy) = entry.strip_prefix("strategy:") {
            placement.strategy = serde_json::from_value(Value::String(strategy.trim().to_owned())).map_err(|_| {
                ApiError::BadRequest(format!("-e {entry}: the strategies are spread, binpack and random"))
            })?;
        } else if entry.starts_with("affinity:") {
            return Err(ApiError::BadRequest(format!(
                "-e {entry}: affinities are not supported; use constraints (constraint:node==NAME)"
            )));
        } else {
            kept.push(entry);
        }
    }
    *env = kept;
    Ok(placement)
}

/// The networks a container's configuration names (`HostConfig.NetworkMode` and the
/// keys of `NetworkingConfig.EndpointsConfig`), Docker's own modes left out.
fn networks_named(config: &Value) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(mode) = config["HostConfig"]["NetworkMode"].as_str()
        && !matches!(mode, "" | "default" | "bridge" | "host" | "none")
        && !mode.starts_with("container:")
    {
        names.push(mode.to_owned());
    }
    if let Some(endpoints) = config["NetworkingConfig"]["EndpointsConfig"].as_object() {
        for name in endpoints.keys() {
            if !names.contains(name) && !matches!(name.as_str(), "bridge" | "host" | "none") {
                names.push(name.clone());
            }
        }
    }
    names
}

/// Names a cluster network by its name in `config` (a node's dockerd knows it by name,
/// not by the cluster's ID).
fn rename_network(config: &mut Value, from: &str, to: &str) {
    if from == to {
        return;
    }
    if config["HostConfig"]["NetworkMode"].as_str() == Some(from) {
        config["HostConfig"]["NetworkMode"] = Value::String(to.to_owned());
    }
    if let Some(endpoints) = config["NetworkingConfig"]["EndpointsConfig"].as_object_mut()
        && let Some(settings) = endpoints.remove(from)
    {
        endpoints.insert(to.to_owned(), settings);
    }
}

/// Refuses `name` if a container anywhere in the cluster has it (on a node that
/// answered, as a down node last listed, or as a native container).
pub async fn check_name_free<S: Store>(
    engine: &Engine<S>,
    listings: &[nodes::Listing],
    name: &str,
) -> Result<(), ApiError> {
    let wanted = format!("/{name}");
    let mut holders: Vec<(String, Value)> = Vec::new();
    let mut answered = Vec::new();
    for listing in listings {
        if let Ok(containers) = &listing.containers {
            answered.push(listing.target.node_id.clone());
            holders.extend(containers.iter().map(|c| (listing.target.node.clone(), c.clone())));
        }
    }
    for (node_id, seen) in engine.routes().seen() {
        if !answered.contains(node_id) {
            holders.extend(seen.containers.iter().map(|c| (seen.node.clone(), c.clone())));
        }
    }
    let taken = holders.iter().find(|(_, c)| {
        c["Names"].as_array().is_some_and(|names| names.iter().any(|n| n.as_str() == Some(wanted.as_str())))
    });
    if let Some((node, c)) = taken {
        let id = c["Id"].as_str().unwrap_or_default();
        return Err(ApiError::Conflict(format!(
            "Conflict. The container name \"{wanted}\" is already in use by container \"{id}\" on node {node}. \
             You have to remove (or rename) that container to be able to reuse that name."
        )));
    }
    if native::find(&engine.store, name).await?.is_some_and(|c| c.record.name == name) {
        return Err(ApiError::Conflict(format!(
            "Conflict. The container name \"{wanted}\" is already in use by a native container (overlay run); \
             remove it with `overlay rm {name}` or pick another name."
        )));
    }
    Ok(())
}

/// `POST /containers/create`.
pub async fn create<S: Store>(
    engine: &Engine<S>,
    version: &str,
    query: &Query,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let mut config: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid container configuration: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::BadRequest("invalid container configuration: not a JSON object".into()));
    }
    let mut env: Vec<String> = match &config["Env"] {
        Value::Array(list) => list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let placement = placement(&mut env)?;
    config["Env"] = Value::from(env);

    // One creation at a time: the name check and the placement count what is there.
    let _creating = engine.creating.lock().await;
    let nodes = Nodes::read(&engine.store).await?;
    let listings = nodes::list_everywhere(engine, &nodes, None).await;
    if let Some(name) = query.get("name").filter(|n| !n.is_empty()) {
        check_name_free(engine, &listings, name.trim_start_matches('/')).await?;
    }
    let natives = native::list(&engine.store).await?;
    let candidates: Vec<Candidate> = listings
        .iter()
        .filter(|l| l.containers.is_ok())
        .filter_map(|l| nodes.view.nodes.iter().find(|n| n.record.id == l.target.node_id).map(|n| (l, n)))
        .filter(|(_, n)| n.status() == Health::Healthy.to_string())
        .map(|(listing, node)| {
            let docker =
                listing.containers.as_ref().map_or(0, |c| c.iter().filter(|c| c["State"] == "running").count());
            let own = natives.iter().filter(|c| c.running() && c.node() == node.record.name).count();
            Candidate {
                id: node.record.id.clone(),
                name: node.record.name.clone(),
                labels: node.record.all_labels(),
                containers: docker + own,
            }
        })
        .collect();
    if candidates.is_empty() {
        let silent: Vec<String> =
            listings.iter().filter_map(|l| l.containers.as_ref().err().map(|e| e.to_string())).collect();
        return Err(ApiError::Unavailable(format!(
            "no node can run the container: none is healthy, reachable and serving its Docker engine{}",
            if silent.is_empty() { String::new() } else { format!(" ({})", silent.join("; ")) }
        )));
    }
    let chosen =
        scheduler::place(&candidates, placement.node.as_deref(), &placement.labels, placement.strategy, rand::random())
            .map_err(|e| ApiError::Conflict(format!("cannot place the container: {e}")))?;
    let target = listings.iter().find(|l| l.target.node_id == chosen).map(|l| l.target.clone()).expect("a candidate");

    for name in networks_named(&config) {
        if ensure_on_node(engine, &target, &name).await? {
            let record = network::find(&engine.store, &name).await?;
            rename_network(&mut config, &name, &record.name);
        }
    }
    let path = match query.encoded() {
        q if q.is_empty() => format!("/v{version}/containers/create"),
        q => format!("/v{version}/containers/create?{q}"),
    };
    let request = hyper::Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::json(&config))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (parts, bytes) = read_all(&target, engine.client.send(&target, request, ANSWER_TIMEOUT).await?).await?;
    let status = parts.status;
    if !status.is_success() {
        // The node's own error, named. A missing image is not answered 404: the CLI
        // would try to pull it through the manager, which does not pull for a node.
        let status = if status == StatusCode::NOT_FOUND { StatusCode::BAD_REQUEST } else { status };
        return Err(node_error(&target.node, status, &bytes));
    }
    let created: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if let Some(id) = created["Id"].as_str() {
        engine.routes().learn_container(id, &target.node_id);
        tracing::info!(
            container = query.get("name").unwrap_or(id),
            node = %target.node,
            strategy = ?placement.strategy,
            "Docker container created"
        );
    }
    let mut answer = Response::new(body::full(bytes));
    *answer.status_mut() = status;
    answer.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn swarm_constraints_come_out_of_the_environment() {
        let mut e = env(&["A=1", "constraint:node==agt02", "constraint:zone==east", "strategy:binpack", "B=2"]);
        let p = placement(&mut e).unwrap();
        assert_eq!(e, env(&["A=1", "B=2"]));
        assert_eq!(p.node.as_deref(), Some("agt02"));
        assert_eq!(p.labels["zone"], "east");
        assert_eq!(p.strategy, Strategy::Binpack);
        assert_eq!(placement(&mut env(&["X=constraint:node==a"])).unwrap(), Placement::default());
        for bad in ["constraint:node!=agt01", "constraint:zone==/ea.*/", "strategy:fastest", "affinity:container==a"] {
            let error = placement(&mut env(&[bad])).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn networks_are_found_and_renamed() {
        let mut config = serde_json::json!({
            "HostConfig": { "NetworkMode": "5c0f3b9e" },
            "NetworkingConfig": { "EndpointsConfig": { "5c0f3b9e": { "Aliases": ["web"] }, "other": {} } },
        });
        assert_eq!(networks_named(&config), ["5c0f3b9e", "other"]);
        rename_network(&mut config, "5c0f3b9e", "my_network");
        assert_eq!(config["HostConfig"]["NetworkMode"], "my_network");
        assert_eq!(config["NetworkingConfig"]["EndpointsConfig"]["my_network"]["Aliases"][0], "web");
        let plain = serde_json::json!({ "HostConfig": { "NetworkMode": "default" } });
        assert!(networks_named(&plain).is_empty());
    }
}
