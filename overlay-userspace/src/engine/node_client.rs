//! Requests to a node's Docker engine: TCP to the endpoint its agent registered, mutual
//! TLS (the manager's certificate; the node's must name its address), HTTP/1.1. One
//! connection per request. Every step is bounded, and a failure names the node: a dead
//! host costs a request [`CONNECT_TIMEOUT`], never a hang. A stream that outlives its
//! request (`logs -f`, attach, exec) ends within [`DEAD_PEER`](keepalive::DEAD_PEER) of
//! its host dying ([`keepalive`]), rather than when the kernel gives up (minutes).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, client::conn::http1, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, rustls::ClientConfig};

use super::{
    ApiError,
    body::{self, Body},
    keepalive,
    route::API_VERSION,
    tls::server_name,
};
use crate::cluster::NodeRecord;

/// Connecting, TLS included. A host that is down drops the SYN: this is what a request
/// to it costs before it fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The head of an answer to a forwarded request (a stop may take the container's own
/// stop timeout first; its body may then stream for as long as it lasts).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A node's engine, as the manager reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub node_id: String,
    pub node: String,
    pub address: SocketAddr,
    /// The node's Docker network driver (its plugin): cluster networks are that in its dockerd.
    pub network_driver: String,
}

impl Target {
    /// The node's engine, if its agent serves one.
    pub fn of(record: &NodeRecord) -> Option<Target> {
        let engine = record.engine.as_ref()?;
        Some(Target {
            node_id: record.id.clone(),
            node: record.name.clone(),
            address: engine.address,
            network_driver: engine.network_driver.clone(),
        })
    }
}

/// Talks to every node's engine with the manager's certificate.
#[derive(Clone)]
pub struct NodeClient {
    connector: TlsConnector,
}

impl NodeClient {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        NodeClient { connector: TlsConnector::from(config) }
    }

    /// Opens a connection to `target` (upgrades allowed), within [`CONNECT_TIMEOUT`].
    pub async fn connect(&self, target: &Target) -> Result<http1::SendRequest<Body>, ApiError> {
        let unreachable = |reason: String| ApiError::unreachable(&target.node, target.address, reason);
        let attempt = async {
            let tcp = TcpStream::connect(target.address).await.map_err(|e| unreachable(format!("connecting: {e}")))?;
            let _ = tcp.set_nodelay(true);
            keepalive::detect_dead_peer(&tcp).map_err(|e| unreachable(format!("setting TCP keepalive: {e}")))?;
            let tls = self
                .connector
                .connect(server_name(target.address.ip()), tcp)
                .await
                .map_err(|e| unreachable(format!("TLS: {e}")))?;
            let (sender, connection) =
                http1::handshake(TokioIo::new(tls)).await.map_err(|e| unreachable(format!("HTTP handshake: {e}")))?;
            let node = target.node.clone();
            tokio::spawn(async move {
                if let Err(error) = connection.with_upgrades().await {
                    tracing::debug!("connection to {node}'s engine: {error}");
                }
            });
            Ok(sender)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt).await.unwrap_or_else(|_| {
            Err(ApiError::NodeTimeout { node: target.node.clone(), address: target.address, after: CONNECT_TIMEOUT })
        })
    }

    /// Sends `request` (its URI a path) and returns the answer as soon as its head has
    /// come, within `answer_timeout`; the body streams on.
    pub async fn send(
        &self,
        target: &Target,
        mut request: Request<Body>,
        answer_timeout: Duration,
    ) -> Result<Response<Incoming>, ApiError> {
        let mut sender = self.connect(target).await?;
        request.headers_mut().insert(header::HOST, header::HeaderValue::from_static("docker"));
        let what = format!("{} {}", request.method(), request.uri().path());
        match tokio::time::timeout(answer_timeout, sender.send_request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(ApiError::unreachable(&target.node, target.address, format!("{what}: {error}"))),
            Err(_) => {
                Err(ApiError::NodeTimeout { node: target.node.clone(), address: target.address, after: answer_timeout })
            }
        }
    }

    /// `method path` with an optional JSON body; the status and the whole answer, within
    /// `deadline` all told.
    pub async fn call(
        &self,
        target: &Target,
        method: Method,
        path: &str,
        json: Option<&Value>,
        deadline: Duration,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let exchange = async {
            let mut request = Request::builder().method(method).uri(versioned(path));
            if json.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let request = request
                .body(json.map(body::json).unwrap_or_else(body::empty))
                .map_err(|e| ApiError::Internal(format!("building a request to {}: {e}", target.node)))?;
            let (parts, bytes) = read_all(target, self.send(target, request, deadline).await?).await?;
            Ok((parts.status, bytes))
        };
        tokio::time::timeout(deadline, exchange).await.unwrap_or_else(|_| {
            Err(ApiError::NodeTimeout { node: target.node.clone(), address: target.address, after: deadline })
        })
    }

    /// [`NodeClient::call`] for a JSON answer: a status that is not a success becomes the
    /// node's own error, with its name.
    pub async fn call_json(
        &self,
        target: &Target,
        method: Method,
        path: &str,
        json: Option<&Value>,
        deadline: Duration,
    ) -> Result<Value, ApiError> {
        let (status, bytes) = self.call(target, method, path, json, deadline).await?;
        if !status.is_success() {
            return Err(node_error(&target.node, status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Internal(format!("{}: the engine's answer to {path} is not JSON: {e}", target.node)))
    }
}

/// The head of a node's answer and its whole body.
pub async fn read_all(
    target: &Target,
    response: Response<Incoming>,
) -> Result<(hyper::http::response::Parts, Bytes), ApiError> {
    let (parts, incoming) = response.into_parts();
    let bytes = incoming
        .collect()
        .await
        .map_err(|e| ApiError::unreachable(&target.node, target.address, format!("reading the answer: {e}")))?
        .to_bytes();
    Ok((parts, bytes))
}

/// `path` under the API version the manager speaks to nodes.
pub fn versioned(path: &str) -> String {
    format!("/v{API_VERSION}{path}")
}

/// A node's error answer (`{"message": ...}`), with the node's name in front.
pub fn node_error(node: &str, status: StatusCode, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    ApiError::Node { node: node.to_owned(), status, message }
}
