//! Errors: [`EngineError`] stops the server from starting; [`ApiError`] is one request's
//! failure, answered as the Engine API does (`{"message": ...}` with its status), which
//! the docker CLI prints as "Error response from daemon: MESSAGE".

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use hyper::{Response, StatusCode, header};
use serde_json::json;

use super::body::{self, Body};
use crate::{network::NetworkError, store::StoreError};

/// Why the Engine API (the manager's, or an agent's endpoint) cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid Engine API configuration: {0}")]
    Config(String),
    #[error("the TLS file {path}: {message}")]
    Tls { path: PathBuf, message: String },
    #[error("the TLS certificates do not make a valid configuration: {0}")]
    TlsConfig(String),
    #[error("cannot listen on {address}: {source}; is another process using it, and does this run as root?")]
    Listen { address: String, source: std::io::Error },
}

/// One request's failure, in the Engine API's shape.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// The node's engine could not be reached: refused, reset, or its TLS refused us.
    #[error("node {node} ({address}): {reason}; is its agent running with --docker-tls-*?")]
    NodeUnreachable { node: String, address: SocketAddr, reason: String },
    /// The node's engine did not answer in time (host down or cut off).
    #[error("node {node} ({address}) did not answer within {after:?}: the host may be down or cut off")]
    NodeTimeout { node: String, address: SocketAddr, after: Duration },
    /// The node's own answer to a request, passed on with the node's name.
    #[error("{node}: {message}")]
    Node { node: String, status: StatusCode, message: String },
    #[error("the cluster store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NodeUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ApiError::NodeTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Node { status, .. } => *status,
            ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Network(error) => network_status(error),
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The answer: the status and `{"message": ...}`.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let bytes = serde_json::to_vec(&json!({ "message": self.to_string() })).unwrap_or_default();
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body::full(bytes))
            .unwrap_or_else(|_| Response::new(body::empty()))
    }

    /// A request to a node that could not be sent, or no answer came.
    pub fn unreachable(node: &str, address: SocketAddr, reason: impl std::fmt::Display) -> Self {
        ApiError::NodeUnreachable { node: node.to_owned(), address, reason: reason.to_string() }
    }
}

/// Docker's statuses for what the cluster's networks refuse.
fn network_status(error: &NetworkError) -> StatusCode {
    match error {
        NetworkError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        NetworkError::NotFound { .. } => StatusCode::NOT_FOUND,
        NetworkError::AlreadyExists { .. } | NetworkError::IdTaken { .. } | NetworkError::Contention { .. } => {
            StatusCode::CONFLICT
        }
        NetworkError::InUse { .. } => StatusCode::FORBIDDEN,
        NetworkError::Netlink { .. } | NetworkError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_docker_statuses() {
        assert_eq!(ApiError::NotFound("x".into()).status(), StatusCode::NOT_FOUND);
        assert_eq!(ApiError::Network(NetworkError::NotFound { network: "n".into() }).status(), StatusCode::NOT_FOUND);
        let in_use = NetworkError::InUse { name: "n".into(), count: 1, endpoints: "e".into() };
        assert_eq!(ApiError::Network(in_use).status(), StatusCode::FORBIDDEN);
        let timeout = ApiError::NodeTimeout {
            node: "agt02".into(),
            address: "192.168.1.142:2376".parse().unwrap(),
            after: Duration::from_secs(2),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(timeout.to_string().starts_with("node agt02 (192.168.1.142:2376)"), "{timeout}");
    }
}
