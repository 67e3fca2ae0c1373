//! A small client of the local dockerd's Engine API (HTTP/1.1 over its unix socket),
//! for what the plugin protocol does not tell: a network's name, the container behind
//! an endpoint, and creating or removing the networks other hosts created.
//!
//! Built on hyper's connection-level client (already in the build through axum and
//! tonic): one connection per request, no pool, each call bounded by a timeout.

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::UnixStream;

use super::DockerError;

/// The Engine API version asked for: Docker 20.10's, which later releases still serve.
const API_VERSION: &str = "v1.41";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct DockerClient {
    socket: PathBuf,
}

/// A network as `GET /networks` lists it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub driver: String,
}

/// What the plugin reads of a network's containers (`GET /networks/ID`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkContainers {
    containers: std::collections::BTreeMap<String, EndpointSettings>,
}

/// What the plugin reads of a container (`GET /containers/json`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerSummary {
    names: Vec<String>,
    network_settings: Option<NetworkSettings>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkSettings {
    networks: std::collections::BTreeMap<String, EndpointSettings>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct EndpointSettings {
    #[serde(rename = "EndpointID")]
    endpoint_id: String,
    #[serde(rename = "Aliases")]
    aliases: Option<Vec<String>>,
}

/// A container's name and its aliases on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerNames {
    pub name: String,
    pub aliases: Vec<String>,
}

/// What the mirror gives `POST /networks/create`.
#[derive(Clone, Debug)]
pub struct NetworkCreate<'a> {
    pub name: &'a str,
    pub driver: &'a str,
    pub subnet: String,
    pub gateway: String,
    pub internal: bool,
    /// The cluster network it is made for (see [`super::protocol::CLUSTER_NETWORK_OPTION`]).
    pub cluster_id: &'a str,
}

impl NetworkCreate<'_> {
    /// The body of `POST /networks/create`: the plugin is the driver and the IPAM driver,
    /// so the network binds to the cluster network of that subnet.
    pub fn body(&self) -> Value {
        json!({
            "Name": self.name,
            "CheckDuplicate": true,
            "Driver": self.driver,
            "Internal": self.internal,
            "Options": { super::protocol::CLUSTER_NETWORK_OPTION: self.cluster_id },
            "IPAM": {
                "Driver": self.driver,
                "Config": [{ "Subnet": self.subnet, "Gateway": self.gateway }],
            },
        })
    }
}

impl DockerClient {
    pub fn new(socket: PathBuf) -> Self {
        DockerClient { socket }
    }

    fn error(&self, message: impl Into<String>) -> DockerError {
        DockerError::Api { socket: self.socket.clone(), message: message.into() }
    }

    /// One request; the status and the body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Bytes), DockerError> {
        let exchange = async {
            let stream = UnixStream::connect(&self.socket).await.map_err(|e| self.error(format!("connecting: {e}")))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| self.error(format!("HTTP handshake: {e}")))?;
            tokio::spawn(connection);
            let bytes = body.map(|b| serde_json::to_vec(&b).unwrap_or_default()).unwrap_or_default();
            let request = Request::builder()
                .method(method.clone())
                .uri(format!("/{API_VERSION}{path}"))
                .header(header::HOST, "docker")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(bytes)))
                .map_err(|e| self.error(format!("building {method} {path}: {e}")))?;
            let response =
                sender.send_request(request).await.map_err(|e| self.error(format!("{method} {path}: {e}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.error(format!("reading the answer to {method} {path}: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(self.error(format!("{method} {path}: no answer within {TIMEOUT:?}"))))
    }

    fn failure(&self, what: &str, status: StatusCode, body: &[u8]) -> DockerError {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        self.error(format!("{what}: {status}: {message}"))
    }

    /// The network's name, `None` if dockerd does not know the ID (yet).
    pub async fn network_name(&self, id: &str) -> Result<Option<String>, DockerError> {
        let (status, body) = self.call(Method::GET, &format!("/networks/{id}"), None).await?;
        match status {
            StatusCode::OK => {
                let network: NetworkSummary =
                    serde_json::from_slice(&body).map_err(|e| self.error(format!("network {id}: {e}")))?;
                Ok(Some(network.name))
            }
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(self.failure(&format!("inspecting network {id}"), other, &body)),
        }
    }

    /// The IDs of the endpoints dockerd has attached to containers on network `id`;
    /// `None` if it does not know the network.
    pub async fn network_endpoints(&self, id: &str) -> Result<Option<BTreeSet<String>>, DockerError> {
        let (status, body) = self.call(Method::GET, &format!("/networks/{id}"), None).await?;
        match status {
            StatusCode::OK => {
                let network: NetworkContainers =
                    serde_json::from_slice(&body).map_err(|e| self.error(format!("network {id}: {e}")))?;
                Ok(Some(network.containers.into_values().map(|c| c.endpoint_id).collect()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(self.failure(&format!("inspecting network {id}"), other, &body)),
        }
    }

    /// The networks of driver `driver`.
    pub async fn networks(&self, driver: &str) -> Result<Vec<NetworkSummary>, DockerError> {
        let filters = json!({ "driver": [driver] }).to_string();
        let (status, body) = self.call(Method::GET, &format!("/networks?filters={}", encode(&filters)), None).await?;
        if status != StatusCode::OK {
            return Err(self.failure("listing networks", status, &body));
        }
        let networks: Vec<NetworkSummary> =
            serde_json::from_slice(&body).map_err(|e| self.error(format!("listing networks: {e}")))?;
        // Older daemons ignore unknown filters: filter again.
        Ok(networks.into_iter().filter(|n| n.driver == driver).collect())
    }

    /// `docker network create -d DRIVER --ipam-driver DRIVER --subnet S --gateway G NAME`.
    pub async fn create_network(&self, create: &NetworkCreate<'_>) -> Result<(), DockerError> {
        let (status, body) = self.call(Method::POST, "/networks/create", Some(create.body())).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.failure(&format!("creating network {}", create.name), status, &body))
        }
    }

    /// `docker network rm ID`; a network already gone is not an error.
    pub async fn remove_network(&self, id: &str) -> Result<(), DockerError> {
        let (status, body) = self.call(Method::DELETE, &format!("/networks/{id}"), None).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.failure(&format!("removing network {id}"), status, &body))
        }
    }

    /// The running container that holds endpoint `endpoint_id` of network `network_id`.
    pub async fn container_of(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<ContainerNames>, DockerError> {
        let filters = json!({ "network": [network_id] }).to_string();
        let (status, body) =
            self.call(Method::GET, &format!("/containers/json?filters={}", encode(&filters)), None).await?;
        if status != StatusCode::OK {
            return Err(self.failure("listing containers", status, &body));
        }
        let containers: Vec<ContainerSummary> =
            serde_json::from_slice(&body).map_err(|e| self.error(format!("listing containers: {e}")))?;
        Ok(containers.into_iter().find_map(|c| {
            let settings = c.network_settings?;
            let endpoint = settings.networks.into_values().find(|e| e.endpoint_id == endpoint_id)?;
            let name = c.names.first()?.trim_start_matches('/').to_owned();
            Some(ContainerNames { name, aliases: endpoint.aliases.unwrap_or_default() })
        }))
    }
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode(r#"{"driver":["overlay"]}"#), "%7B%22driver%22%3A%5B%22overlay%22%5D%7D");
        assert_eq!(encode("a-b_c.d~"), "a-b_c.d~");
    }
}
