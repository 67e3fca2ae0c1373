//! The plugin socket: every call is a POST of JSON to `/Service.Method`. One dispatcher
//! decodes the body, runs the operation (`network_driver`, `ipam_driver`), and writes
//! the answer as the protocol says. This is the one place where an error becomes the
//! protocol's message: a request that does not decode gets HTTP 400; an operation that
//! fails gets `{"Err": ...}` (network driver) or `{"Error": ...}` (IPAM driver); an
//! unknown method gets 404, which libnetwork reads as "not implemented".

use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::UnixListener;

use super::{
    error::{DockerError, DriverError},
    ipam_driver::{self, ADDRESS_SPACE},
    network_driver,
    plugin::Plugin,
    protocol,
};
use crate::{
    shutdown::Shutdown,
    store::{Store, Transact},
};

/// Which error field a method's answers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    Plugin,
    Network,
    Ipam,
}

impl Service {
    fn of(method: &str) -> Option<Service> {
        if method.starts_with("Plugin.") {
            Some(Service::Plugin)
        } else if method.starts_with("NetworkDriver.") {
            Some(Service::Network)
        } else if method.starts_with("IpamDriver.") {
            Some(Service::Ipam)
        } else {
            None
        }
    }

    fn error_body(self, message: &str) -> Value {
        match self {
            // Docker's plugin client reads "Err" from any answer that is not 200 OK;
            // the IPAM client reads "Error" from 200 OK ones.
            Service::Ipam => json!({ "Error": message, "Err": message }),
            Service::Plugin | Service::Network => json!({ "Err": message }),
        }
    }
}

/// Why a call got no answer of its own.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The method is not one of the protocol's (404).
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    /// The body is not the JSON the method takes (400).
    #[error("the request body is not the expected JSON: {0}")]
    Undecodable(serde_json::Error),
    /// The operation failed (200, with the message in the service's error field).
    #[error(transparent)]
    Failed(#[from] DriverError),
}

impl CallError {
    fn status(&self) -> StatusCode {
        match self {
            CallError::UnknownMethod(_) => StatusCode::NOT_FOUND,
            CallError::Undecodable(_) => StatusCode::BAD_REQUEST,
            CallError::Failed(_) => StatusCode::OK,
        }
    }
}

/// Binds the plugin socket (a stale one from a previous run is replaced), root-only.
pub fn listen(path: &Path) -> Result<UnixListener, DockerError> {
    let err = |source| DockerError::Listen { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    Ok(listener)
}

/// Serves `listener` until `shutdown`.
pub async fn run<S: Store + Transact>(
    plugin: Arc<Plugin<S>>,
    listener: UnixListener,
    shutdown: Shutdown,
) -> Result<(), DockerError> {
    let path = plugin.config.socket.clone();
    let app = Router::new().fallback(dispatch::<S>).with_state(plugin);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
        .map_err(|source| DockerError::Serve { path, source })
}

fn answer(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, protocol::CONTENT_TYPE)], bytes).into_response()
}

/// Decodes a request body; an empty body is an empty object (libnetwork sends none
/// for the handshake and capability calls).
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, CallError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(CallError::Undecodable)
}

async fn dispatch<S: Store + Transact>(State(plugin): State<Arc<Plugin<S>>>, uri: Uri, body: Bytes) -> Response {
    let method = uri.path().trim_start_matches('/');
    let Some(service) = Service::of(method) else {
        return answer(StatusCode::NOT_FOUND, &json!({ "Err": format!("unknown method {method:?}") }));
    };
    tracing::debug!(method, body = %String::from_utf8_lossy(&body), "Docker plugin call");
    match call(&plugin, method, &body).await {
        Ok(value) => answer(StatusCode::OK, &value),
        Err(error) => {
            match &error {
                CallError::UnknownMethod(_) => {}
                CallError::Undecodable(_) => tracing::warn!(method, "Docker plugin call refused: {error}"),
                CallError::Failed(_) => tracing::warn!(method, "Docker plugin call failed: {error}"),
            }
            answer(error.status(), &service.error_body(&error.to_string()))
        }
    }
}

/// Runs `method` on the body it came with.
async fn call<S: Store + Transact>(plugin: &Arc<Plugin<S>>, method: &str, body: &[u8]) -> Result<Value, CallError> {
    let value = match method {
        "Plugin.Activate" => json!({ "Implements": ["NetworkDriver", "IpamDriver"] }),
        "NetworkDriver.GetCapabilities" => json!({ "Scope": "local", "ConnectivityScope": "global" }),
        "NetworkDriver.CreateNetwork" => network_driver::create_network(plugin, decode(body)?).await?,
        "NetworkDriver.DeleteNetwork" => network_driver::delete_network(plugin, decode(body)?).await?,
        "NetworkDriver.CreateEndpoint" => network_driver::create_endpoint(plugin, decode(body)?).await?,
        "NetworkDriver.EndpointOperInfo" => network_driver::endpoint_info(plugin, decode(body)?).await?,
        "NetworkDriver.DeleteEndpoint" => network_driver::delete_endpoint(plugin, decode(body)?).await?,
        "NetworkDriver.Join" => network_driver::join(plugin, decode(body)?).await?,
        "NetworkDriver.Leave" => network_driver::leave(plugin, decode(body)?).await?,
        "NetworkDriver.DiscoverNew"
        | "NetworkDriver.DiscoverDelete"
        | "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity" => {
            let _: Value = decode(body)?;
            json!({})
        }
        "IpamDriver.GetCapabilities" => json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false }),
        "IpamDriver.GetDefaultAddressSpaces" => json!({
            "LocalDefaultAddressSpace": ADDRESS_SPACE,
            "GlobalDefaultAddressSpace": ADDRESS_SPACE,
        }),
        "IpamDriver.RequestPool" => ipam_driver::request_pool(plugin, decode(body)?).await?,
        "IpamDriver.ReleasePool" => {
            let _: protocol::ReleasePool = decode(body)?;
            json!({})
        }
        "IpamDriver.RequestAddress" => ipam_driver::request_address(plugin, decode(body)?).await?,
        "IpamDriver.ReleaseAddress" => ipam_driver::release_address(plugin, decode(body)?).await?,
        _ => return Err(CallError::UnknownMethod(method.to_owned())),
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_the_field_of_their_service() {
        assert_eq!(Service::of("IpamDriver.RequestPool"), Some(Service::Ipam));
        assert_eq!(Service::of("NetworkDriver.Join"), Some(Service::Network));
        assert_eq!(Service::of("VolumeDriver.Create"), None);
        assert_eq!(Service::Ipam.error_body("x")["Error"], "x");
        assert_eq!(Service::Network.error_body("x"), json!({ "Err": "x" }));
    }

    #[test]
    fn bodies_decode_or_say_why() {
        let empty: Value = decode(b"").unwrap();
        assert_eq!(empty, json!({}));
        let pool: protocol::RequestPool = decode(br#"{"Pool":"10.0.9.0/24","V6":false}"#).unwrap();
        assert_eq!(pool.pool, "10.0.9.0/24");
        let error = decode::<protocol::RequestPool>(b"{garbage").unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert!(error.to_string().contains("not the expected JSON"), "{error}");
        assert!(decode::<protocol::Join>(br#"{"NetworkID": 7}"#).is_err());
        let failed = CallError::from(DriverError::UnknownPool("pool-1".into()));
        assert_eq!(failed.status(), StatusCode::OK);
        assert!(failed.to_string().contains("unknown pool"), "{failed}");
    }
}
