//! Parsing the store URL: `etcd://HOST[:PORT][,HOST[:PORT]…]/PREFIX` or
//! `zk://HOST[:PORT][,HOST[:PORT]…]/PREFIX`.

use super::StoreError;

/// The port etcd clients use when the URL names none.
pub const ETCD_DEFAULT_PORT: u16 = 2379;

/// ZooKeeper's client port when the URL names none.
pub const ZOOKEEPER_DEFAULT_PORT: u16 = 2181;

/// The cluster prefix when the URL has no path.
pub const DEFAULT_PREFIX: &str = "overlay";

/// Which store a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Etcd,
    ZooKeeper,
}

impl Backend {
    /// The URL scheme, and the store's name in messages.
    pub fn scheme(self) -> &'static str {
        match self {
            Backend::Etcd => "etcd",
            Backend::ZooKeeper => "zk",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Etcd => "etcd",
            Backend::ZooKeeper => "ZooKeeper",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Backend::Etcd => ETCD_DEFAULT_PORT,
            Backend::ZooKeeper => ZOOKEEPER_DEFAULT_PORT,
        }
    }
}

/// A parsed and validated store URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreUrl {
    pub backend: Backend,
    /// `host:port` of each endpoint, in the order given; IPv6 hosts keep their brackets.
    pub endpoints: Vec<String>,
    /// The cluster's prefix: every key of the cluster lives under `/PREFIX/`.
    pub prefix: String,
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}/{}", self.backend.scheme(), self.endpoints.join(","), self.prefix)
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        parse(url)
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidUrl { url: url.to_owned(), reason: reason.into() }
}

/// Parses `url`; see [`StoreUrl`]. `consul://` is recognised and refused.
pub fn parse(url: &str) -> Result<StoreUrl, StoreError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid(url, "it has no scheme"));
    };
    let backend = match scheme.to_ascii_lowercase().as_str() {
        "etcd" => Backend::Etcd,
        "zk" | "zookeeper" => Backend::ZooKeeper,
        "consul" => return Err(StoreError::UnsupportedBackend { scheme: scheme.to_owned() }),
        _ => return Err(invalid(url, format!("unknown scheme {scheme:?}"))),
    };
    let (hosts, path) = match rest.split_once('/') {
        Some((hosts, path)) => (hosts, path),
        None => (rest, ""),
    };
    if hosts.is_empty() {
        return Err(invalid(url, "it names no host"));
    }
    let endpoints =
        hosts.split(',').map(|h| endpoint(url, h, backend.default_port())).collect::<Result<Vec<_>, _>>()?;
    let prefix = path.trim_end_matches('/');
    let prefix = if prefix.is_empty() { DEFAULT_PREFIX } else { prefix };
    validate_prefix(url, prefix)?;
    Ok(StoreUrl { backend, endpoints, prefix: prefix.to_owned() })
}

fn endpoint(url: &str, hostport: &str, default_port: u16) -> Result<String, StoreError> {
    if hostport.is_empty() {
        return Err(invalid(url, "an endpoint between commas is empty"));
    }
    if hostport.contains(['@', '?', '#']) {
        return Err(invalid(
            url,
            "user names, passwords and options do not go in the URL; use --store-user and the other --store-* options",
        ));
    }
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(invalid(url, format!("{hostport:?} opens an IPv6 bracket it does not close")));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(invalid(url, format!("{host:?} is not an IPv6 address")));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| invalid(url, format!("junk after ] in {hostport:?}")))?),
        };
        (format!("[{host}]"), port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (hostport.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(invalid(url, format!("{hostport:?} has no host")));
    }
    if !host.starts_with('[') && !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return Err(invalid(url, format!("{host:?} is not a host name or IPv4 address")));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(invalid(url, format!("{p:?} is not a port number (1-65535)"))),
            Ok(p) => p,
        },
    };
    Ok(format!("{host}:{port}"))
}

fn validate_prefix(url: &str, prefix: &str) -> Result<(), StoreError> {
    for segment in prefix.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(invalid(url, format!("the prefix {prefix:?} has an empty, \".\" or \"..\" segment")));
        }
        if !segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(invalid(
                url,
                format!("the prefix {prefix:?} may only hold letters, digits, '_', '-', '.' and '/'"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_endpoint_with_prefix() {
        let url = parse("etcd://192.168.1.140:2379/my_cluster").unwrap();
        assert_eq!(url.backend, Backend::Etcd);
        assert_eq!(url.endpoints, vec!["192.168.1.140:2379"]);
        assert_eq!(url.prefix, "my_cluster");
        assert_eq!(url.to_string(), "etcd://192.168.1.140:2379/my_cluster");
    }

    #[test]
    fn several_endpoints_default_port_and_nested_prefix() {
        let url = parse("etcd://a.example:2379,10.0.0.2,[fd00::1]:3379/team/prod/").unwrap();
        assert_eq!(url.endpoints, vec!["a.example:2379", "10.0.0.2:2379", "[fd00::1]:3379"]);
        assert_eq!(url.prefix, "team/prod");
    }

    #[test]
    fn missing_prefix_uses_the_default() {
        assert_eq!(parse("etcd://h:1").unwrap().prefix, DEFAULT_PREFIX);
        assert_eq!(parse("etcd://h:1/").unwrap().prefix, DEFAULT_PREFIX);
    }

    #[test]
    fn zookeeper_endpoints_default_to_its_client_port() {
        let url = parse("zk://192.168.1.140,zk2.example:2182,[fd00::1]/team/prod").unwrap();
        assert_eq!(url.backend, Backend::ZooKeeper);
        assert_eq!(url.endpoints, vec!["192.168.1.140:2181", "zk2.example:2182", "[fd00::1]:2181"]);
        assert_eq!(url.prefix, "team/prod");
        assert_eq!(url.to_string(), "zk://192.168.1.140:2181,zk2.example:2182,[fd00::1]:2181/team/prod");
        assert_eq!(parse("ZooKeeper://h").unwrap().to_string(), "zk://h:2181/overlay");
    }

    #[test]
    fn consul_is_refused_as_unsupported() {
        for url in ["consul://10.0.0.1:8500/x", "CONSUL://h/x"] {
            let err = parse(url).unwrap_err();
            assert!(matches!(err, StoreError::UnsupportedBackend { .. }), "{url}: {err}");
            assert!(err.to_string().contains("no Consul server"), "{err}");
            assert!(err.to_string().contains("zk://HOST:PORT"), "{err}");
        }
    }

    #[test]
    fn other_urls_name_the_accepted_forms() {
        for url in [
            "http://h:2379/x",
            "192.168.1.140:2379",
            "etcd:///x",
            "etcd://h:0/x",
            "etcd://h:99999/x",
            "etcd://h:abc/x",
            "etcd://h,,g/x",
            "etcd://user:pw@h/x",
            "etcd://h/../x",
            "etcd://h/a//b",
            "etcd://h/a b",
            "etcd://[fd00::1/x",
            "etcd://[nothex]:1/x",
            "etcd://h_x:1/x",
            "zk://user:pw@h/x",
            "zk://h:0/x",
            "zk:///x",
        ] {
            let err = parse(url).unwrap_err();
            assert!(matches!(err, StoreError::InvalidUrl { .. }), "{url}: {err}");
            assert!(err.to_string().contains("etcd://HOST:PORT"), "{url}: {err}");
            assert!(err.to_string().contains("zk://HOST:PORT"), "{url}: {err}");
        }
    }
}
