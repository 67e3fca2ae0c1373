//! `--docker-api`: where the Engine API listens, `unix:///PATH` or `tcp://IP:PORT`, and
//! the rule that keeps it from being the seed's open `0.0.0.0:2375`: a TCP address
//! beyond loopback is served only over TLS with client certificates.

use std::{net::SocketAddr, path::PathBuf};

use super::EngineError;

/// The Engine API's default socket (root-only).
pub const DEFAULT_SOCKET: &str = "/run/overlay/docker.sock";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiAddress {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl ApiAddress {
    /// Parses `unix:///run/overlay/docker.sock` or `tcp://192.168.1.121:2376`.
    pub fn parse(value: &str) -> Result<Self, EngineError> {
        let invalid = |reason: &str| EngineError::Config(format!("--docker-api {value:?}: {reason}"));
        if let Some(path) = value.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid("the socket path must be absolute (unix:///run/overlay/docker.sock)"));
            }
            return Ok(ApiAddress::Unix(PathBuf::from(path)));
        }
        if let Some(address) = value.strip_prefix("tcp://") {
            let address: SocketAddr = address
                .trim_end_matches('/')
                .parse()
                .map_err(|_| invalid("give an IP address and a port (tcp://192.168.1.121:2376); no host names"))?;
            if address.port() == 0 {
                return Err(invalid("port 0 is not a port a client can be told"));
            }
            return Ok(ApiAddress::Tcp(address));
        }
        Err(invalid("use unix:///PATH or tcp://IP:PORT"))
    }

    /// Whether serving here needs TLS with client certificates: every TCP address but a
    /// loopback one (which only this host's processes reach).
    pub fn needs_tls(&self) -> bool {
        matches!(self, ApiAddress::Tcp(address) if !address.ip().is_loopback())
    }
}

impl std::fmt::Display for ApiAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiAddress::Unix(path) => write!(f, "unix://{}", path.display()),
            ApiAddress::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            ApiAddress::parse("unix:///run/overlay/docker.sock").unwrap(),
            ApiAddress::Unix(DEFAULT_SOCKET.into())
        );
        let tcp = ApiAddress::parse("tcp://192.168.1.121:2376").unwrap();
        assert_eq!(tcp, ApiAddress::Tcp("192.168.1.121:2376".parse().unwrap()));
        assert!(tcp.needs_tls());
        assert!(ApiAddress::parse("tcp://0.0.0.0:2375").unwrap().needs_tls());
        assert!(!ApiAddress::parse("tcp://127.0.0.1:2375").unwrap().needs_tls());
        assert!(!ApiAddress::parse("tcp://[::1]:2375").unwrap().needs_tls());
        assert!(!ApiAddress::parse("unix:///x.sock").unwrap().needs_tls());
        for bad in ["", "unix://relative.sock", "tcp://manager:2376", "tcp://1.2.3.4", "tcp://1.2.3.4:0", "http://x"] {
            assert!(ApiAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
