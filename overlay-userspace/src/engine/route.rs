//! Which endpoint of the Engine API a request is, from its method and path (pure). The
//! path may start with the API version (`/v1.41/containers/json`); a container or
//! network may be named `node/name`, as `docker ps` through the manager shows it.

use hyper::Method;

use super::ApiError;

/// The Engine API version served: Docker 20.10's. Clients negotiate down to it.
pub const API_VERSION: &str = "1.41";
/// The oldest version asked for that is served (the JSON shapes are 1.41's).
pub const MIN_API_VERSION: &str = "1.41";

/// What a container path can end with (`/containers/NAME/ACTION`).
const CONTAINER_ACTIONS: &[&str] = &[
    "json", "top", "logs", "changes", "export", "stats", "archive", "start", "stop", "restart", "kill", "update",
    "rename", "pause", "unpause", "attach", "wait", "resize", "exec",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Ping,
    Version,
    Info,
    ContainerList,
    ContainerCreate,
    /// `/containers/NAME[/ACTION]` (no action: `DELETE /containers/NAME`).
    Container {
        name: String,
        action: Option<String>,
    },
    /// `/exec/ID/ACTION` (start, resize, json).
    Exec {
        id: String,
        action: String,
    },
    NetworkList,
    NetworkCreate,
    /// `/networks/NAME[/ACTION]` (connect, disconnect; none: inspect or remove).
    Network {
        name: String,
        action: Option<String>,
    },
    /// `POST /images/create`: pulling, which the manager does not do for a node.
    ImagePull,
    /// Anything else: answered 501.
    NotServed,
}

/// Splits `/v1.41/rest` into the version and `/rest`; refuses versions not served.
pub fn split_version(path: &str) -> Result<(Option<&str>, &str), ApiError> {
    let Some(after) = path.strip_prefix("/v") else { return Ok((None, path)) };
    let end = after.find('/').unwrap_or(after.len());
    let (version, rest) = after.split_at(end);
    let Some(number) = parse_version(version) else { return Ok((None, path)) };
    if number > parse_version(API_VERSION).unwrap_or_default() {
        return Err(ApiError::BadRequest(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if number < parse_version(MIN_API_VERSION).unwrap_or_default() {
        return Err(ApiError::BadRequest(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok((Some(version), if rest.is_empty() { "/" } else { rest }))
}

/// `1.41` as (1, 41).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The route of `method path` (path without the version).
pub fn route(method: &Method, path: &str) -> Route {
    let path = path.trim_end_matches('/');
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    match path {
        "/_ping" if get => return Route::Ping,
        "/version" if get => return Route::Version,
        "/info" if get => return Route::Info,
        "/containers/json" if get => return Route::ContainerList,
        "/containers/create" if post => return Route::ContainerCreate,
        "/networks" if get => return Route::NetworkList,
        "/networks/create" if post => return Route::NetworkCreate,
        "/images/create" if post => return Route::ImagePull,
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/containers/") {
        return match rest.rsplit_once('/') {
            Some((name, action)) if CONTAINER_ACTIONS.contains(&action) && !name.is_empty() => {
                Route::Container { name: name.to_owned(), action: Some(action.to_owned()) }
            }
            _ if method == Method::DELETE && !rest.is_empty() => {
                Route::Container { name: rest.to_owned(), action: None }
            }
            _ => Route::NotServed,
        };
    }
    if let Some(rest) = path.strip_prefix("/exec/") {
        return match rest.split_once('/') {
            Some((id, action)) if !id.is_empty() && ["start", "resize", "json"].contains(&action) => {
                Route::Exec { id: id.to_owned(), action: action.to_owned() }
            }
            _ => Route::NotServed,
        };
    }
    if let Some(rest) = path.strip_prefix("/networks/") {
        return match rest.rsplit_once('/') {
            Some((name, action)) if post && ["connect", "disconnect"].contains(&action) && !name.is_empty() => {
                Route::Network { name: name.to_owned(), action: Some(action.to_owned()) }
            }
            _ if (get || method == Method::DELETE) && !rest.is_empty() && rest != "prune" => {
                Route::Network { name: rest.to_owned(), action: None }
            }
            _ => Route::NotServed,
        };
    }
    Route::NotServed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, path: &str) -> Route {
        route(&method, path)
    }

    #[test]
    fn versions() {
        assert_eq!(split_version("/v1.41/containers/json").unwrap(), (Some("1.41"), "/containers/json"));
        assert_eq!(split_version("/_ping").unwrap(), (None, "/_ping"));
        assert_eq!(split_version("/v1.41").unwrap(), (Some("1.41"), "/"));
        assert!(split_version("/v1.50/info").unwrap_err().to_string().contains("too new"));
        assert!(split_version("/v1.12/info").unwrap_err().to_string().contains("too old"));
        // Not a version: a path of its own.
        assert_eq!(split_version("/volumes").unwrap(), (None, "/volumes"));
    }

    #[test]
    fn routes() {
        assert_eq!(r(Method::HEAD, "/_ping"), Route::Ping);
        assert_eq!(r(Method::GET, "/info"), Route::Info);
        assert_eq!(r(Method::GET, "/containers/json"), Route::ContainerList);
        assert_eq!(r(Method::POST, "/containers/create"), Route::ContainerCreate);
        assert_eq!(
            r(Method::POST, "/containers/agt02/busybox01/attach"),
            Route::Container { name: "agt02/busybox01".into(), action: Some("attach".into()) }
        );
        assert_eq!(
            r(Method::GET, "/containers/abc/json"),
            Route::Container { name: "abc".into(), action: Some("json".into()) }
        );
        assert_eq!(
            r(Method::DELETE, "/containers/agt02/busybox01"),
            Route::Container { name: "agt02/busybox01".into(), action: None }
        );
        assert_eq!(r(Method::GET, "/containers/abc"), Route::NotServed);
        assert_eq!(r(Method::POST, "/exec/e1/start"), Route::Exec { id: "e1".into(), action: "start".into() });
        assert_eq!(r(Method::GET, "/networks"), Route::NetworkList);
        assert_eq!(r(Method::GET, "/networks/my_network"), Route::Network { name: "my_network".into(), action: None });
        assert_eq!(
            r(Method::POST, "/networks/agt01/bridge/connect"),
            Route::Network { name: "agt01/bridge".into(), action: Some("connect".into()) }
        );
        assert_eq!(r(Method::POST, "/networks/prune"), Route::NotServed);
        assert_eq!(r(Method::GET, "/volumes"), Route::NotServed);
        assert_eq!(r(Method::POST, "/images/create"), Route::ImagePull);
    }
}
