//! Requests passed to the node that holds the container: the same method, headers and
//! body, the path naming the container by its ID there. The answer streams back as it
//! comes: the head at once (`POST /wait` must reach the CLI before the container exits,
//! or `docker run` never starts it), the body for as long as it lasts (`logs -f`).
//!
//! Attach and exec start hijack the connection: the CLI asks for `Upgrade: tcp`, the
//! node answers 101, and from then on the two connections are joined byte for byte
//! ([`splice`]), half-closes included.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{
    HeaderMap, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;

use super::{
    ApiError, Engine,
    body::{self, Body},
    node_client::{ANSWER_TIMEOUT, Target, read_all},
    splice::splice,
};
use crate::store::Store;

/// Headers that belong to one connection, never passed on (RFC 9110 §7.6.1), and the
/// body's framing, which hyper sets again from the body it sends (the manager may
/// replace a body, and a streamed one keeps its length).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

fn end_to_end(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    headers.iter().filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
}

/// The node's answer, passed back with its status, headers and streaming body.
pub fn pass_back(response: Response<Incoming>) -> Response<Body> {
    let (parts, incoming) = response.into_parts();
    let mut answer = Response::new(body::stream(incoming));
    *answer.status_mut() = parts.status;
    for (name, value) in end_to_end(&parts.headers) {
        answer.headers_mut().append(name, value.clone());
    }
    answer
}

/// A request for the node: the CLI's method, headers and `body`, for `path_and_query`.
fn for_node<B>(parts: &hyper::http::request::Parts, path_and_query: &str, body: B) -> Result<Request<B>, ApiError> {
    let mut request = Request::builder().method(parts.method.clone()).uri(path_and_query);
    for (name, value) in end_to_end(&parts.headers) {
        request = request.header(name, value);
    }
    request.body(body).map_err(|e| ApiError::Internal(format!("building the request for the node: {e}")))
}

/// Forwards `request` to `target` as `path_and_query`; the answer streams back.
pub async fn forward<S: Store>(
    engine: &Engine<S>,
    target: &Target,
    request: Request<Incoming>,
    path_and_query: &str,
) -> Result<Response<Body>, ApiError> {
    let (parts, incoming) = request.into_parts();
    let request = for_node(&parts, path_and_query, body::stream(incoming))?;
    let response = engine.client.send(target, request, ANSWER_TIMEOUT).await?;
    Ok(pass_back(response))
}

/// Forwards a request whose (small) body the manager has read already, and reads the
/// whole answer: for the calls whose answer the manager looks into.
pub async fn exchange<S: Store>(
    engine: &Engine<S>,
    target: &Target,
    parts: &hyper::http::request::Parts,
    path_and_query: &str,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), ApiError> {
    let request = for_node(parts, path_and_query, body::full(body))?;
    let (parts, bytes) = read_all(target, engine.client.send(target, request, ANSWER_TIMEOUT).await?).await?;
    Ok((parts.status, parts.headers, bytes))
}

/// Whether the client asked to take over the connection (`Connection: Upgrade`,
/// `Upgrade: tcp`), as the docker CLI does for attach and exec.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "tcp")
}

/// Attach or exec start: the request goes to the node with its upgrade; when the node
/// switches protocols, so does the manager, and the two connections are joined until
/// both sides have closed (or the manager stops). A node that refuses (the container
/// is not running, no such exec) answers the CLI itself.
pub async fn hijack<S: Store>(
    engine: &Engine<S>,
    target: &Target,
    mut request: Request<Incoming>,
    path_and_query: &str,
) -> Result<Response<Body>, ApiError> {
    if !wants_upgrade(request.headers()) {
        return Err(ApiError::BadRequest(
            "attach and exec take over the connection: send `Connection: Upgrade` and `Upgrade: tcp` (the docker CLI \
             does)"
                .into(),
        ));
    }
    let client_side = hyper::upgrade::on(&mut request);
    let (parts, incoming) = request.into_parts();
    let body = incoming
        .collect()
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?
        .to_bytes();
    let mut to_node = for_node(&parts, path_and_query, body::full(body))?;
    to_node.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    to_node.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    let mut response = engine.client.send(target, to_node, ANSWER_TIMEOUT).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(pass_back(response));
    }
    let node_side = hyper::upgrade::on(&mut response);
    let mut answer = Response::new(body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in end_to_end(response.headers()) {
        answer.headers_mut().append(name, value.clone());
    }
    answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    answer.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    let (node, shutdown) = (target.node.clone(), engine.shutdown.clone());
    tokio::spawn(async move {
        let joined = async {
            let node_side = node_side.await.map_err(|e| format!("the node's side: {e}"))?;
            let client_side = client_side.await.map_err(|e| format!("the client's side: {e}"))?;
            splice(TokioIo::new(client_side), TokioIo::new(node_side)).await;
            Ok::<(), String>(())
        };
        tokio::select! {
            result = joined => if let Err(error) = result {
                tracing::info!("hijacked stream to {node}: {error}");
            },
            _ = shutdown.wait() => {}
        }
    });
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_are_recognised_as_the_cli_asks_for_them() {
        let mut headers = HeaderMap::new();
        assert!(!wants_upgrade(&headers));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
        assert!(wants_upgrade(&headers));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, upgrade"));
        assert!(wants_upgrade(&headers));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!wants_upgrade(&headers));
    }
}
