//! Networks through the manager. `docker network create -d overlay` makes a cluster
//! network (the store's, as `overlay network create` does) and marks it as made through
//! Docker, so every agent with `--docker` creates it in its dockerd (the plugin's
//! mirror). `network ls` lists each cluster network once, with its cluster ID and driver
//! `overlay`, and each node's local networks as `node/name`; the plugin's networks in
//! the nodes' dockerds are the cluster's and are not listed again. `network rm` removes
//! a cluster network only while no container is attached to it anywhere.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, Engine,
    format::rfc3339,
    node_client::{Target, node_error},
    nodes::{FAN_OUT_DEADLINE, Nodes},
    query::{self, Query},
};
use crate::{
    docker::{
        bindings::{MARKERS, Marker},
        client::NetworkCreate,
    },
    endpoint::{self, EndpointRecord},
    network::{self, CreateRequest, DRIVER, NetworkError, NetworkRecord, NetworkSpec, SubnetPool},
    store::{Store, Transact},
};

/// How long a node may take to create a cluster network in its dockerd.
const CREATE_ON_NODE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// A cluster network as Docker describes a network (`Containers` only in `inspect`).
pub fn describe(record: &NetworkRecord, containers: Option<Value>) -> Value {
    let mut config = json!({ "Subnet": record.subnet.to_string(), "Gateway": record.gateway.to_string() });
    if let Some(range) = record.ip_range {
        config["IPRange"] = Value::String(range.to_string());
    }
    json!({
        "Name": record.name,
        "Id": record.id,
        "Created": rfc3339(record.created_at),
        "Scope": record.scope(),
        "Driver": record.driver,
        "EnableIPv6": false,
        "IPAM": { "Driver": "default", "Options": null, "Config": [config] },
        "Internal": record.internal,
        "Attachable": true,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers.unwrap_or_else(|| json!({})),
        "Options": {},
        "Labels": record.labels,
    })
}

/// Whether a cluster network passes `docker network ls --filter`'s filters (name: a
/// part of it; id: a prefix; driver; scope; type: always custom).
fn passes(record: &NetworkRecord, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(key, values)| {
        values.iter().any(|v| match key.as_str() {
            "name" => record.name.contains(v.as_str()),
            "id" => record.id.starts_with(v.as_str()),
            "driver" => record.driver == *v,
            "scope" => record.scope() == v || v == "swarm",
            "type" => v == "custom",
            "label" => match v.split_once('=') {
                Some((k, value)) => record.labels.get(k).is_some_and(|l| l == value),
                None => record.labels.contains_key(v.as_str()),
            },
            _ => false,
        })
    })
}

/// `GET /networks`.
pub async fn list<S: Store>(engine: &Engine<S>, query: &Query) -> Result<Value, ApiError> {
    let filters = query.filters().map_err(ApiError::BadRequest)?;
    let mut out: Vec<Value> =
        network::list(&engine.store).await?.iter().filter(|r| passes(r, &filters)).map(|r| describe(r, None)).collect();
    let nodes = Nodes::read(&engine.store).await?;
    let path = match query.get("filters").filter(|f| !f.is_empty()) {
        Some(raw) => format!("/networks?filters={}", query::encode(raw)),
        None => "/networks".to_owned(),
    };
    let asks = nodes.targets().into_iter().map(|target| {
        let path = path.clone();
        async move {
            let answer = engine.client.call_json(&target, Method::GET, &path, None, FAN_OUT_DEADLINE).await;
            (target, answer)
        }
    });
    for (target, answer) in join_all(asks).await {
        let Ok(Value::Array(networks)) = answer else {
            if let Err(error) = answer {
                tracing::info!("docker network ls: {error}");
            }
            continue;
        };
        for mut n in networks {
            // The plugin's networks are the cluster's, listed above.
            if n["Driver"] == target.network_driver.as_str() {
                continue;
            }
            let name = n["Name"].as_str().unwrap_or_default().to_owned();
            n["Name"] = Value::String(format!("{}/{name}", target.node));
            out.push(n);
        }
    }
    Ok(Value::Array(out))
}

/// A network the CLI names: the cluster's (by name, ID or ID prefix), or one node's
/// (`node/name`).
enum Named {
    Cluster(NetworkRecord),
    Node { target: Target, name: String },
}

async fn named<S: Store>(engine: &Engine<S>, name: &str) -> Result<Named, ApiError> {
    match network::find(&engine.store, name).await {
        Ok(record) => return Ok(Named::Cluster(record)),
        Err(NetworkError::NotFound { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    if let Some((node, local)) = name.split_once('/') {
        let nodes = Nodes::read(&engine.store).await?;
        if let Some(view) = nodes.by_name(node) {
            let target = Target::of(&view.record)
                .ok_or_else(|| ApiError::NotFound(format!("node {node} serves no Docker engine")))?;
            return Ok(Named::Node { target, name: local.to_owned() });
        }
    }
    Err(ApiError::NotFound(format!(
        "network {name} not found: name a cluster network, or a node's own as NODE/NAME (docker network ls)"
    )))
}

/// The node names of the live nodes, by ID.
async fn node_names<S: Store>(engine: &Engine<S>) -> Result<BTreeMap<String, String>, ApiError> {
    let nodes = Nodes::read(&engine.store).await?;
    Ok(nodes.view.nodes.iter().map(|n| (n.record.id.clone(), n.record.name.clone())).collect())
}

/// The containers attached to a cluster network, from its endpoint records (Docker's
/// and native ones, on every host).
async fn attached<S: Store>(engine: &Engine<S>, record: &NetworkRecord) -> Result<Vec<EndpointRecord>, ApiError> {
    let listing = engine.store.list(&endpoint::network_dir(&record.id)).await?;
    Ok(listing.entries.iter().filter_map(|e| EndpointRecord::parse(&e.key, &e.value)).collect())
}

/// `GET /networks/NAME`.
pub async fn inspect<S: Store>(engine: &Engine<S>, name: &str) -> Result<Value, ApiError> {
    match named(engine, name).await? {
        Named::Cluster(record) => {
            let names = node_names(engine).await?;
            let mut containers = serde_json::Map::new();
            for e in attached(engine, &record).await? {
                let node = names.get(&e.node_id).cloned().unwrap_or_else(|| e.node_id.clone());
                containers.insert(
                    e.id.clone(),
                    json!({
                        "Name": format!("{node}/{}", e.container),
                        "EndpointID": e.id,
                        "MacAddress": crate::container::format_mac(e.mac),
                        "IPv4Address": format!("{}/{}", e.ip, record.subnet.prefix_len()),
                        "IPv6Address": "",
                    }),
                );
            }
            Ok(describe(&record, Some(Value::Object(containers))))
        }
        Named::Node { target, name } => {
            let path = format!("/networks/{}", query::encode(&name));
            let mut network = engine.client.call_json(&target, Method::GET, &path, None, FAN_OUT_DEADLINE).await?;
            network["Name"] = Value::String(format!("{}/{name}", target.node));
            Ok(network)
        }
    }
}

/// What `POST /networks/create` carries that the manager reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    internal: bool,
    ingress: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: String,
    config: Vec<IpamConfig>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: String,
    #[serde(rename = "IPRange")]
    ip_range: String,
    gateway: String,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

/// The cluster network a `docker network create` asks for; what it cannot be is refused
/// with the reason.
fn create_request(body: &[u8]) -> Result<CreateRequest, ApiError> {
    let body: CreateBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid network create request: {e}")))?;
    if body.driver != DRIVER {
        return Err(ApiError::BadRequest(format!(
            "the manager creates cluster networks: use -d {DRIVER} (driver {:?} would make a network of one node; \
             create that on the node itself)",
            body.driver
        )));
    }
    if body.enable_ipv6 {
        return Err(ApiError::BadRequest("cluster networks are IPv4 only: leave out --ipv6".into()));
    }
    if body.ingress {
        return Err(ApiError::BadRequest(
            "cluster networks are not Swarm ingress networks: leave out --ingress".into(),
        ));
    }
    if body.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::BadRequest("cluster networks take no driver options (-o)".into()));
    }
    let ipam = body.ipam.unwrap_or_default();
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(ApiError::BadRequest(format!(
            "cluster networks take their addresses from the cluster IPAM: leave out --ipam-driver {}",
            ipam.driver
        )));
    }
    if ipam.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::BadRequest("cluster networks take no IPAM options (--ipam-opt)".into()));
    }
    if ipam.config.len() > 1 {
        return Err(ApiError::BadRequest("a cluster network has one subnet: give --subnet once".into()));
    }
    let config = ipam.config.into_iter().next().unwrap_or_default();
    if config.auxiliary_addresses.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(ApiError::BadRequest("cluster networks take no --aux-address".into()));
    }
    let some = |s: String| (!s.is_empty()).then_some(s);
    Ok(CreateRequest {
        name: body.name,
        driver: Some(body.driver),
        subnet: some(config.subnet),
        gateway: some(config.gateway),
        ip_range: some(config.ip_range),
        labels: body.labels.unwrap_or_default().into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        internal: body.internal,
        id: None,
    })
}

/// `POST /networks/create`: a cluster network, marked so that every Docker host binds it.
pub async fn create<S: Store + Transact>(engine: &Engine<S>, body: &[u8]) -> Result<Value, ApiError> {
    let request = create_request(body)?;
    let spec = NetworkSpec::parse(&request)?;
    let record = network::create(&engine.store, &spec, &SubnetPool::default()).await?;
    let marker = Marker {
        name: record.name.clone(),
        subnet: record.subnet,
        gateway: record.gateway,
        internal: record.internal,
        created_on: engine.manager.name.clone(),
    };
    let value = serde_json::to_vec(&marker).map_err(|e| ApiError::Internal(e.to_string()))?;
    engine.store.put(&format!("{MARKERS}{}", record.id), value, None).await?;
    tracing::info!(network = %record.name, id = %record.id, subnet = %record.subnet, "cluster network created through the Engine API");
    Ok(json!({ "Id": record.id, "Warning": "" }))
}

/// `DELETE /networks/NAME`: a cluster network goes only if nothing is attached to it on
/// any host; a node's own network is removed on that node.
pub async fn remove<S: Store + Transact>(engine: &Engine<S>, name: &str) -> Result<(), ApiError> {
    match named(engine, name).await? {
        Named::Cluster(record) => {
            let endpoints = attached(engine, &record).await?;
            if !endpoints.is_empty() {
                let names = node_names(engine).await?;
                let listed: Vec<String> = endpoints
                    .iter()
                    .map(|e| {
                        let node = names.get(&e.node_id).map(String::as_str).unwrap_or(&e.node_id);
                        format!("{node}/{} ({})", e.container, e.ip)
                    })
                    .collect();
                return Err(ApiError::Forbidden(format!(
                    "error while removing network: network {} id {} has active endpoints: {}",
                    record.name,
                    record.id,
                    listed.join(", ")
                )));
            }
            network::remove(&engine.store, &record.id).await?;
            engine.store.delete(&format!("{MARKERS}{}", record.id)).await?;
            Ok(())
        }
        Named::Node { target, name } => {
            let path = format!("/networks/{}", query::encode(&name));
            let (status, body) = engine.client.call(&target, Method::DELETE, &path, None, FAN_OUT_DEADLINE).await?;
            if status.is_success() { Ok(()) } else { Err(node_error(&target.node, status, &body)) }
        }
    }
}

/// Makes sure `target`'s dockerd has the cluster network `name` (if it is one): a
/// container is about to join it there. Usually the plugin's mirror made it already; a
/// network made with `overlay network create`, or not mirrored yet, is created now
/// (it binds to the cluster network by its subnet). `Ok(false)`: not a cluster network.
pub async fn ensure_on_node<S: Store>(engine: &Engine<S>, target: &Target, name: &str) -> Result<bool, ApiError> {
    let record = match network::find(&engine.store, name).await {
        Ok(record) => record,
        Err(NetworkError::NotFound { .. }) => return Ok(false),
        Err(error) => return Err(error.into()),
    };
    let path = format!("/networks/{}", query::encode(&record.name));
    let (status, body) = engine.client.call(target, Method::GET, &path, None, FAN_OUT_DEADLINE).await?;
    match status {
        StatusCode::OK => {
            let present: Value = serde_json::from_slice(&body).unwrap_or_default();
            if present["Driver"] != target.network_driver.as_str() {
                return Err(ApiError::Conflict(format!(
                    "node {} has a network {} of its own (driver {}), not the cluster's: remove or rename it there",
                    target.node, record.name, present["Driver"]
                )));
            }
            Ok(true)
        }
        StatusCode::NOT_FOUND => {
            let create = NetworkCreate {
                name: &record.name,
                driver: &target.network_driver,
                subnet: record.subnet.to_string(),
                gateway: record.gateway.to_string(),
                internal: record.internal,
                cluster_id: &record.id,
            };
            let (status, body) = engine
                .client
                .call(target, Method::POST, "/networks/create", Some(&create.body()), CREATE_ON_NODE_DEADLINE)
                .await?;
            // A conflict: the mirror made it meanwhile.
            if status.is_success() || status == StatusCode::CONFLICT {
                tracing::info!(network = %record.name, node = %target.node, "cluster network created in the node's Docker");
                Ok(true)
            } else {
                Err(node_error(&target.node, status, &body))
            }
        }
        other => Err(node_error(&target.node, other, &body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_network_create_is_a_cluster_network() {
        let body = br#"{"Name":"my_network","CheckDuplicate":true,"Driver":"overlay","Scope":"","EnableIPv6":false,
            "IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"10.0.9.0/24"}]},"Internal":false,
            "Attachable":false,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{},"Labels":{}}"#;
        let request = create_request(body).unwrap();
        assert_eq!(request.name, "my_network");
        assert_eq!(request.subnet.as_deref(), Some("10.0.9.0/24"));
        assert_eq!(request.gateway, None);
        assert!(NetworkSpec::parse(&request).is_ok());
    }

    #[test]
    fn what_a_cluster_network_cannot_be_is_refused() {
        for (body, why) in [
            (r#"{"Name":"n","Driver":"bridge"}"#, "-d overlay"),
            (r#"{"Name":"n","Driver":"overlay","EnableIPv6":true}"#, "IPv4"),
            (r#"{"Name":"n","Driver":"overlay","Options":{"encrypted":""}}"#, "driver options"),
            (r#"{"Name":"n","Driver":"overlay","IPAM":{"Driver":"other"}}"#, "--ipam-driver"),
            (
                r#"{"Name":"n","Driver":"overlay","IPAM":{"Config":[{"Subnet":"10.0.1.0/24"},{"Subnet":"10.0.2.0/24"}]}}"#,
                "one subnet",
            ),
            ("{nope", "invalid"),
        ] {
            let error = create_request(body.as_bytes()).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{body}");
            assert!(error.to_string().contains(why), "{body}: {error}");
        }
    }

    #[test]
    fn networks_look_like_dockers() {
        let record = NetworkRecord {
            id: "a".repeat(64),
            name: "my_network".into(),
            driver: DRIVER.into(),
            subnet: "10.0.9.0/24".parse().unwrap(),
            gateway: "10.0.9.1".parse().unwrap(),
            ip_range: None,
            vni: 4096,
            internal: false,
            labels: BTreeMap::new(),
            created_at: 0,
        };
        let d = describe(&record, None);
        assert_eq!(d["Driver"], "overlay");
        assert_eq!(d["IPAM"]["Config"][0]["Subnet"], "10.0.9.0/24");
        assert_eq!(d["Created"], "1970-01-01T00:00:00Z");
        let f = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), vec![v.to_owned()])]);
        assert!(passes(&record, &f("name", "net")));
        assert!(passes(&record, &f("driver", "overlay")));
        assert!(!passes(&record, &f("driver", "bridge")));
        assert!(!passes(&record, &f("dangling", "true")));
    }
}
