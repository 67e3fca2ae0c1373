//! The nodes as the Engine API sees them: the live nodes of the store with the engine
//! their agent serves, every node's containers fetched at once (each within
//! [`FAN_OUT_DEADLINE`]), and which node holds a container the CLI names.
//!
//! What each node last listed is remembered: when a node does not answer (or has left
//! the store), `docker ps` shows those containers as on a down host, as classic Swarm did.

use std::{collections::BTreeMap, time::Duration};

use futures_util::future::join_all;
use hyper::Method;
use serde_json::Value;

use super::{ApiError, Engine, native, node_client::Target, query};
use crate::{
    cluster::{ClusterView, view},
    store::Store,
};

/// How long one node may take to list its containers or describe itself, for the
/// commands that ask every node at once (`ps`, `info`, `network ls`, finding a
/// container): the answer comes within this even when a node is down.
pub const FAN_OUT_DEADLINE: Duration = Duration::from_millis(2500);
/// Routes remembered (container and exec IDs → node) before the oldest are dropped; a
/// dropped one is found again by asking every node.
const ROUTES_KEPT: usize = 10_000;

/// The live nodes and their engines.
pub struct Nodes {
    pub view: ClusterView,
}

impl Nodes {
    pub async fn read<S: Store>(store: &S) -> Result<Nodes, ApiError> {
        let view = view::read(store).await.map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Nodes { view })
    }

    /// The engines of the live nodes that serve one.
    pub fn targets(&self) -> Vec<Target> {
        self.view.nodes.iter().filter_map(|n| Target::of(&n.record)).collect()
    }

    pub fn target(&self, node_id: &str) -> Option<Target> {
        self.view.nodes.iter().find(|n| n.record.id == node_id).and_then(|n| Target::of(&n.record))
    }

    pub fn by_name(&self, name: &str) -> Option<&crate::cluster::NodeView> {
        self.view.nodes.iter().find(|n| n.record.name == name || n.record.id == name)
    }
}

/// What the manager remembers between requests.
#[derive(Debug, Default)]
pub struct Routes {
    /// Container ID → node ID.
    containers: BTreeMap<String, String>,
    /// Exec instance ID → node ID.
    execs: BTreeMap<String, String>,
    /// Node ID → its name and containers as it last listed them (all of them).
    seen: BTreeMap<String, Seen>,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub node: String,
    pub containers: Vec<Value>,
}

impl Routes {
    pub fn container_node(&self, id: &str) -> Option<&str> {
        self.containers.get(id).map(String::as_str)
    }

    pub fn exec_node(&self, id: &str) -> Option<&str> {
        self.execs.get(id).map(String::as_str)
    }

    pub fn learn_container(&mut self, id: &str, node_id: &str) {
        if self.containers.len() >= ROUTES_KEPT {
            self.containers.clear();
        }
        self.containers.insert(id.to_owned(), node_id.to_owned());
    }

    pub fn learn_exec(&mut self, id: &str, node_id: &str) {
        if self.execs.len() >= ROUTES_KEPT {
            self.execs.clear();
        }
        self.execs.insert(id.to_owned(), node_id.to_owned());
    }

    pub fn forget_container(&mut self, id: &str) {
        self.containers.remove(id);
    }

    pub fn seen(&self) -> &BTreeMap<String, Seen> {
        &self.seen
    }
}

/// One node's answer to a fan-out.
pub struct Listing {
    pub target: Target,
    pub containers: Result<Vec<Value>, ApiError>,
}

/// Every engine's containers (`GET /containers/json?all=1`, with `filters` passed on),
/// asked at once. Complete unfiltered listings are remembered for [`Routes::seen`].
pub async fn list_everywhere<S: Store>(engine: &Engine<S>, nodes: &Nodes, filters: Option<&str>) -> Vec<Listing> {
    let mut path = "/containers/json?all=1".to_owned();
    if let Some(filters) = filters {
        path.push_str(&format!("&filters={}", query::encode(filters)));
    }
    let asks = nodes.targets().into_iter().map(|target| {
        let path = path.clone();
        async move {
            let answer = engine.client.call_json(&target, Method::GET, &path, None, FAN_OUT_DEADLINE).await;
            let containers = answer.and_then(|v| match v {
                Value::Array(list) => Ok(list),
                _ => Err(ApiError::Internal(format!("{}: the container list is not a JSON array", target.node))),
            });
            Listing { target, containers }
        }
    });
    let listings = join_all(asks).await;
    if filters.is_none() {
        let mut routes = engine.routes();
        for listing in &listings {
            if let Ok(containers) = &listing.containers {
                for id in containers.iter().filter_map(|c| c["Id"].as_str()) {
                    routes.learn_container(id, &listing.target.node_id);
                }
                routes.seen.insert(
                    listing.target.node_id.clone(),
                    Seen { node: listing.target.node.clone(), containers: containers.clone() },
                );
            }
        }
    }
    listings
}

/// A container the CLI names: on a node's engine, or one of `overlay run`'s.
pub enum Found {
    Docker { target: Target, id: String },
    Native(Box<native::NativeContainer>),
}

/// Finds the container `name` names: a full ID, a unique ID prefix, a name, or
/// `node/name`. A container the manager made or saw before is found at once; others
/// by asking every node.
pub async fn find_container<S: Store>(engine: &Engine<S>, name: &str) -> Result<Found, ApiError> {
    let nodes = Nodes::read(&engine.store).await?;
    let known = engine.routes().container_node(name).map(str::to_owned);
    if let Some(node_id) = known {
        return match nodes.target(&node_id) {
            Some(target) => Ok(Found::Docker { target, id: name.to_owned() }),
            None => Err(down(&nodes, &engine.routes(), &node_id, name)),
        };
    }
    // `node/name` looks on that node only.
    let (only_node, wanted) = match name.split_once('/') {
        Some((node, rest)) if nodes.by_name(node).is_some() => (Some(node.to_owned()), rest.to_owned()),
        _ => (None, name.to_owned()),
    };
    let listings = list_everywhere(engine, &nodes, None).await;
    let mut exact = Vec::new();
    let mut prefixed = Vec::new();
    let mut silent = Vec::new();
    for listing in &listings {
        if only_node.as_deref().is_some_and(|n| n != listing.target.node && n != listing.target.node_id) {
            continue;
        }
        let containers = match &listing.containers {
            Ok(containers) => containers,
            Err(error) => {
                silent.push(error.to_string());
                continue;
            }
        };
        for c in containers {
            let Some(id) = c["Id"].as_str() else { continue };
            let named = c["Names"].as_array().is_some_and(|names| {
                names.iter().filter_map(Value::as_str).any(|n| n.trim_start_matches('/') == wanted)
            });
            if id == wanted || named {
                exact.push((listing.target.clone(), id.to_owned()));
            } else if id.starts_with(&wanted) {
                prefixed.push((listing.target.clone(), id.to_owned()));
            }
        }
    }
    let matches = if exact.is_empty() { prefixed } else { exact };
    match matches.len() {
        1 => {
            let (target, id) = matches.into_iter().next().expect("one match");
            Ok(Found::Docker { target, id })
        }
        0 => {
            if only_node.is_none()
                && let Some(native) = native::find(&engine.store, &wanted).await?
            {
                return Ok(Found::Native(Box::new(native)));
            }
            // A node that did not answer (or has left) may have it.
            let answered: Vec<&str> =
                listings.iter().filter(|l| l.containers.is_ok()).map(|l| l.target.node_id.as_str()).collect();
            let routes = engine.routes();
            let on_down = routes.seen.iter().filter(|(id, _)| !answered.contains(&id.as_str())).find(|(_, seen)| {
                seen.containers.iter().any(|c| {
                    c["Id"].as_str().is_some_and(|id| id.starts_with(&wanted))
                        || c["Names"].as_array().is_some_and(|names| {
                            names.iter().filter_map(Value::as_str).any(|n| n.trim_start_matches('/') == wanted)
                        })
                })
            });
            if let Some((_, seen)) = on_down {
                return Err(ApiError::Unavailable(format!(
                    "container {name} is on node {}, which does not answer (the host is down or cut off)",
                    seen.node
                )));
            }
            drop(routes);
            let mut message = format!("No such container: {name}");
            if !silent.is_empty() {
                message.push_str(&format!(" (not on the nodes that answered; {})", silent.join("; ")));
            }
            Err(ApiError::NotFound(message))
        }
        _ => {
            let places: Vec<String> =
                matches.iter().map(|(t, id)| format!("{}/{}", t.node, &id[..id.len().min(12)])).collect();
            Err(ApiError::Conflict(format!(
                "{name} names more than one container ({}): give node/name or more of the ID",
                places.join(", ")
            )))
        }
    }
}

/// The error for a container whose node is not live.
fn down(nodes: &Nodes, routes: &Routes, node_id: &str, name: &str) -> ApiError {
    let node = routes
        .seen
        .get(node_id)
        .map(|s| s.node.clone())
        .or_else(|| nodes.by_name(node_id).map(|n| n.record.name.clone()))
        .unwrap_or_else(|| node_id.to_owned());
    ApiError::NotFound(format!("container {name} is on node {node}, which is down (not in the cluster now)"))
}
