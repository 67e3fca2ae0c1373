//! The one dispatcher: a request's route ([`route`]) to the code that answers it, and
//! the headers every Docker answer carries. Failures become Docker's error shape here.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{
    HeaderMap, Method, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
};
use serde_json::Value;

use super::{
    ApiError, Engine, aggregate,
    body::{self, Body},
    create, native, networks,
    node_client::Target,
    nodes::{self, FAN_OUT_DEADLINE, Found, Nodes},
    proxy,
    query::{self, Query},
    route::{self, API_VERSION, Route},
};
use crate::{
    network::{self, NetworkError},
    store::{Store, Transact},
};

/// The largest request body the manager reads itself (container and network
/// configurations); bodies passed through to a node are streamed, whatever their size.
const BODY_LIMIT: usize = 4 << 20;

/// Answers one request; never fails (a failure is Docker's error answer).
pub async fn handle<S: Store + Transact>(engine: Arc<Engine<S>>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = match answer(&engine, request).await {
        Ok(response) => response,
        Err(error) => {
            let status = error.status();
            if status.is_server_error() {
                tracing::warn!(%method, %path, "Engine API: {error}");
            } else {
                tracing::info!(%method, %path, "Engine API: {error}");
            }
            error.into_response()
        }
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), "Engine API request");
    standard_headers(response.headers_mut());
    response
}

/// What dockerd puts on every answer; the CLI negotiates its API version from these.
fn standard_headers(headers: &mut HeaderMap) {
    headers.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    if let Ok(server) = HeaderValue::from_str(&format!("{} (linux)", aggregate::server_version())) {
        headers.insert(header::SERVER, server);
    }
}

fn json(status: StatusCode, value: &Value) -> Result<Response<Body>, ApiError> {
    let mut response = Response::new(body::json(value));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn no_content() -> Result<Response<Body>, ApiError> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

fn ping(method: &Method) -> Result<Response<Body>, ApiError> {
    let mut response = Response::new(if method == Method::HEAD { body::empty() } else { body::full("OK") });
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

async fn read_body(incoming: Incoming) -> Result<Bytes, ApiError> {
    Limited::new(incoming, BODY_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ApiError::BadRequest(format!("reading the request body (at most {BODY_LIMIT} bytes): {e}")))
}

/// `/v1.41/containers/ID/ACTION?query`.
fn node_path(version: &str, kind: &str, id: &str, action: Option<&str>, query: &Query) -> String {
    let mut path = format!("/v{version}/{kind}/{}", query::encode(id));
    if let Some(action) = action {
        path.push('/');
        path.push_str(action);
    }
    let query = query.encoded();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    path
}

async fn answer<S: Store + Transact>(
    engine: &Engine<S>,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_owned();
    let query = Query::parse(request.uri().query());
    let method = request.method().clone();
    let (version, rest) = route::split_version(&path)?;
    let version = version.unwrap_or(API_VERSION).to_owned();
    match route::route(&method, rest) {
        Route::Ping => ping(&method),
        Route::Version => json(StatusCode::OK, &aggregate::version(&engine.manager.kernel_version)),
        Route::Info => json(StatusCode::OK, &aggregate::info(engine).await?),
        Route::ContainerList => json(StatusCode::OK, &aggregate::containers(engine, &query).await?),
        Route::ContainerCreate => {
            let body = read_body(request.into_body()).await?;
            create::create(engine, &version, &query, body).await
        }
        Route::Container { name, action } => {
            container(engine, request, &version, &query, &name, action.as_deref()).await
        }
        Route::Exec { id, action } => exec(engine, request, &version, &query, &id, &action).await,
        Route::NetworkList => json(StatusCode::OK, &networks::list(engine, &query).await?),
        Route::NetworkCreate => {
            let body = read_body(request.into_body()).await?;
            json(StatusCode::CREATED, &networks::create(engine, &body).await?)
        }
        Route::Network { name, action: None } if method == Method::DELETE => {
            networks::remove(engine, &name).await?;
            no_content()
        }
        Route::Network { name, action: None } => json(StatusCode::OK, &networks::inspect(engine, &name).await?),
        Route::Network { name, action: Some(action) } => connect(engine, request, &version, &name, &action).await,
        Route::ImagePull => Err(ApiError::NotImplemented(
            "the manager does not pull images: pull or load the image on the node that is to run the container \
             (docker -H NODE pull IMAGE), or pin the container to a node that has it (-e constraint:node==NODE)"
                .into(),
        )),
        Route::NotServed => Err(ApiError::NotImplemented(format!(
            "{method} {rest} is not served by the cluster's manager; ask the node's engine itself \
             (docker --tlsverify -H tcp://NODE:2376)"
        ))),
    }
}

/// `/containers/NAME/ACTION`: passed to the container's node.
async fn container<S: Store + Transact>(
    engine: &Engine<S>,
    request: Request<Incoming>,
    version: &str,
    query: &Query,
    name: &str,
    action: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (target, id) = match nodes::find_container(engine, name).await? {
        Found::Docker { target, id } => (target, id),
        Found::Native(native) => return native_container(engine, request.method(), &native, action).await,
    };
    let path = node_path(version, "containers", &id, action, query);
    match action {
        Some("attach") => proxy::hijack(engine, &target, request, &path).await,
        Some("json") => inspect(engine, &target, request, &path).await,
        Some("exec") => {
            let (parts, incoming) = request.into_parts();
            let body = read_body(incoming).await?;
            let (status, headers, answer) = proxy::exchange(engine, &target, &parts, &path, body).await?;
            if status.is_success()
                && let Some(exec) =
                    serde_json::from_slice::<Value>(&answer).ok().and_then(|v| v["Id"].as_str().map(str::to_owned))
            {
                engine.routes().learn_exec(&exec, &target.node_id);
            }
            Ok(whole(status, &headers, answer))
        }
        Some("rename") => {
            if let Some(new) = query.get("name") {
                let nodes = Nodes::read(&engine.store).await?;
                let listings = nodes::list_everywhere(engine, &nodes, None).await;
                create::check_name_free(engine, &listings, new).await?;
            }
            proxy::forward(engine, &target, request, &path).await
        }
        None => {
            let response = proxy::forward(engine, &target, request, &path).await?;
            if response.status().is_success() {
                engine.routes().forget_container(&id);
            }
            Ok(response)
        }
        Some(_) => proxy::forward(engine, &target, request, &path).await,
    }
}

/// A whole answer from a node, passed back.
fn whole(status: StatusCode, headers: &HeaderMap, bytes: Bytes) -> Response<Body> {
    let mut response = Response::new(body::full(bytes));
    *response.status_mut() = status;
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        response.headers_mut().insert(header::CONTENT_TYPE, kind.clone());
    }
    response
}

/// `docker inspect`: the node's answer, named `/NODE/NAME` and with the node, as
/// classic Swarm added it.
async fn inspect<S: Store>(
    engine: &Engine<S>,
    target: &Target,
    request: Request<Incoming>,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let (parts, _) = request.into_parts();
    let (status, headers, bytes) = proxy::exchange(engine, target, &parts, path, Bytes::new()).await?;
    if !status.is_success() {
        return Ok(whole(status, &headers, bytes));
    }
    let mut container: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Internal(format!("{}: the container's description is not JSON: {e}", target.node)))?;
    if let Some(name) = container["Name"].as_str() {
        container["Name"] = Value::String(format!("/{}{name}", target.node));
    }
    container["Node"] = serde_json::json!({
        "ID": target.node_id,
        "Name": target.node,
        "Addr": target.address.to_string(),
        "IP": target.address.ip().to_string(),
    });
    json(StatusCode::OK, &container)
}

/// What the manager does for a native container: describe it, or remove it.
async fn native_container<S: Store>(
    engine: &Engine<S>,
    method: &Method,
    native: &native::NativeContainer,
    action: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    match action {
        None if method == Method::DELETE => {
            native::remove(&engine.store, native).await?;
            no_content()
        }
        Some("json") => json(StatusCode::OK, &native.inspect()),
        _ => Err(ApiError::NotImplemented(format!(
            "{} is a native container (overlay run) on {}: use `overlay exec {}` there; its logs are in the agent's \
             state directory",
            native.record.name,
            native.node(),
            native.record.name
        ))),
    }
}

/// The node that holds exec instance `id`: remembered when it was made through the
/// manager, else found by asking every node.
async fn exec_target<S: Store>(engine: &Engine<S>, id: &str) -> Result<Target, ApiError> {
    let nodes = Nodes::read(&engine.store).await?;
    let known = engine.routes().exec_node(id).map(str::to_owned);
    if let Some(target) = known.and_then(|node| nodes.target(&node)) {
        return Ok(target);
    }
    let path = format!("/exec/{}/json", query::encode(id));
    let asks = nodes.targets().into_iter().map(|target| {
        let path = path.clone();
        async move {
            let found = engine.client.call_json(&target, Method::GET, &path, None, FAN_OUT_DEADLINE).await.is_ok();
            (target, found)
        }
    });
    let found = futures_util::future::join_all(asks).await.into_iter().find(|(_, found)| *found);
    match found {
        Some((target, _)) => {
            engine.routes().learn_exec(id, &target.node_id);
            Ok(target)
        }
        None => Err(ApiError::NotFound(format!("No such exec instance: {id}"))),
    }
}

/// `/exec/ID/ACTION`: start (hijacked unless detached), resize, json.
async fn exec<S: Store>(
    engine: &Engine<S>,
    request: Request<Incoming>,
    version: &str,
    query: &Query,
    id: &str,
    action: &str,
) -> Result<Response<Body>, ApiError> {
    let target = exec_target(engine, id).await?;
    let path = node_path(version, "exec", id, Some(action), query);
    if action == "start" && proxy::wants_upgrade(request.headers()) {
        proxy::hijack(engine, &target, request, &path).await
    } else {
        proxy::forward(engine, &target, request, &path).await
    }
}

/// `docker network connect|disconnect NETWORK CONTAINER`: on the container's node, the
/// cluster network made present there first.
async fn connect<S: Store>(
    engine: &Engine<S>,
    request: Request<Incoming>,
    version: &str,
    network_name: &str,
    action: &str,
) -> Result<Response<Body>, ApiError> {
    let (parts, incoming) = request.into_parts();
    let mut body: Value = serde_json::from_slice(&read_body(incoming).await?)
        .map_err(|e| ApiError::BadRequest(format!("invalid {action} request: {e}")))?;
    let container = body["Container"].as_str().unwrap_or_default().to_owned();
    let (target, id) = match nodes::find_container(engine, &container).await? {
        Found::Docker { target, id } => (target, id),
        Found::Native(native) => {
            return Err(ApiError::NotImplemented(format!(
                "{} is a native container (overlay run): its networks are given to `overlay run --net`",
                native.record.name
            )));
        }
    };
    let on_node = match network::find(&engine.store, network_name).await {
        Ok(record) => {
            if action == "connect" {
                networks::ensure_on_node(engine, &target, &record.name).await?;
            }
            record.name
        }
        Err(NetworkError::NotFound { .. }) => match network_name.split_once('/') {
            Some((node, local)) if node == target.node => local.to_owned(),
            Some((node, _)) => {
                return Err(ApiError::BadRequest(format!(
                    "{network_name} is node {node}'s network, and {container} runs on {}",
                    target.node
                )));
            }
            None => network_name.to_owned(),
        },
        Err(error) => return Err(error.into()),
    };
    body["Container"] = Value::String(id);
    let path = node_path(version, "networks", &on_node, Some(action), &Query::default());
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let (status, headers, answer) = proxy::exchange(engine, &target, &parts, &path, bytes).await?;
    Ok(whole(status, &headers, answer))
}
