//! The plugin socket: every call is a POST of JSON to `/Service.Method`. One dispatcher
//! decodes the body, calls [`driver`], and shapes the answer as the protocol says:
//! a request that does not decode gets HTTP 400; an operation that fails gets
//! `{"Err": ...}` (network driver) or `{"Error": ...}` (IPAM driver); an unknown
//! method gets 404, which libnetwork reads as "not implemented".

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

use super::{DockerError, Plugin, driver, protocol};
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
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| format!("the request body is not the expected JSON: {e}"))
}

async fn dispatch<S: Store + Transact>(State(plugin): State<Arc<Plugin<S>>>, uri: Uri, body: Bytes) -> Response {
    let method = uri.path().trim_start_matches('/');
    let Some(service) = Service::of(method) else {
        return answer(StatusCode::NOT_FOUND, &json!({ "Err": format!("unknown method {method:?}") }));
    };
    tracing::debug!(method, body = %String::from_utf8_lossy(&body), "Docker plugin call");
    // `Err(Ok(..))`: the request did not decode; `Err(Err(..))`: the operation failed.
    let result: Result<Value, Result<String, String>> = match call(&plugin, method, &body).await {
        Some(result) => result,
        None => return answer(StatusCode::NOT_FOUND, &service.error_body(&format!("unknown method {method:?}"))),
    };
    match result {
        Ok(value) => answer(StatusCode::OK, &value),
        Err(Ok(undecodable)) => {
            tracing::warn!(method, "Docker plugin call refused: {undecodable}");
            answer(StatusCode::BAD_REQUEST, &service.error_body(&undecodable))
        }
        Err(Err(failure)) => {
            tracing::warn!(method, "Docker plugin call failed: {failure}");
            answer(StatusCode::OK, &service.error_body(&failure))
        }
    }
}

/// Runs `method`; `None` if there is no such method.
async fn call<S: Store + Transact>(
    plugin: &Arc<Plugin<S>>,
    method: &str,
    body: &[u8],
) -> Option<Result<Value, Result<String, String>>> {
    // Decodes the body or returns the decoding error.
    macro_rules! request {
        () => {
            match decode(body) {
                Ok(request) => request,
                Err(e) => return Some(Err(Ok(e))),
            }
        };
    }
    let outcome = match method {
        "Plugin.Activate" => Ok(json!({ "Implements": ["NetworkDriver", "IpamDriver"] })),
        "NetworkDriver.GetCapabilities" => Ok(json!({ "Scope": "local", "ConnectivityScope": "global" })),
        "NetworkDriver.CreateNetwork" => driver::create_network(plugin, request!()).await,
        "NetworkDriver.DeleteNetwork" => driver::delete_network(plugin, request!()).await,
        "NetworkDriver.CreateEndpoint" => driver::create_endpoint(plugin, request!()).await,
        "NetworkDriver.EndpointOperInfo" => driver::endpoint_info(plugin, request!()).await,
        "NetworkDriver.DeleteEndpoint" => driver::delete_endpoint(plugin, request!()).await,
        "NetworkDriver.Join" => driver::join(plugin, request!()).await,
        "NetworkDriver.Leave" => driver::leave(plugin, request!()).await,
        "NetworkDriver.DiscoverNew"
        | "NetworkDriver.DiscoverDelete"
        | "NetworkDriver.ProgramExternalConnectivity"
        | "NetworkDriver.RevokeExternalConnectivity" => {
            let _: Value = request!();
            Ok(json!({}))
        }
        "IpamDriver.GetCapabilities" => Ok(json!({ "RequiresMACAddress": false, "RequiresRequestReplay": false })),
        "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
            "LocalDefaultAddressSpace": super::ADDRESS_SPACE,
            "GlobalDefaultAddressSpace": super::ADDRESS_SPACE,
        })),
        "IpamDriver.RequestPool" => driver::request_pool(plugin, request!()).await,
        "IpamDriver.ReleasePool" => {
            let _: protocol::ReleasePool = request!();
            Ok(json!({}))
        }
        "IpamDriver.RequestAddress" => driver::request_address(plugin, request!()).await,
        "IpamDriver.ReleaseAddress" => driver::release_address(plugin, request!()).await,
        _ => return None,
    };
    Some(outcome.map_err(Err))
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
        assert!(error.contains("not the expected JSON"), "{error}");
        assert!(decode::<protocol::Join>(br#"{"NetworkID": 7}"#).is_err());
    }
}
