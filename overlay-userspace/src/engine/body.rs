//! The one body type of the Engine API's requests and answers: whole JSON documents the
//! manager builds, and bodies streamed through from a node (logs, wait) or to it.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use hyper::body::Incoming;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body received from one side, streamed to the other as it arrives.
pub fn stream(incoming: Incoming) -> Body {
    incoming.map_err(BoxError::from).boxed()
}

pub fn json(value: &serde_json::Value) -> Body {
    full(serde_json::to_vec(value).unwrap_or_default())
}
