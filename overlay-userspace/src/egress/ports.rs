//! Published ports: what `-p HOSTPORT:PORT[/tcp|/udp]` asks for, and the host ports the
//! agent holds for them.
//!
//! A published port is reachable on every address of the container's host, as with
//! `docker run -p`. While it is published the agent keeps the host port bound (not
//! listening), so no process of the host can take it afterwards; a port the host
//! already uses is refused when the container starts.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::OwnedFd,
    str::FromStr,
};

use serde::{Deserialize, Serialize};

use super::EgressError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// `HOSTPORT:PORT[/PROTO]`: the host's port `host_port` leads to the container's `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    /// As `docker ps` shows it: `8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}/{}", self.host_port, self.port, self.protocol.as_str())
    }
}

impl FromStr for PortMapping {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("-p {text:?}: use HOSTPORT:PORT, HOSTPORT:PORT/tcp or HOSTPORT:PORT/udp (e.g. 8080:80)");
        let (ports, protocol) = match text.split_once('/') {
            None => (text, Protocol::Tcp),
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(usage()),
        };
        let (host, container) = ports.split_once(':').ok_or_else(usage)?;
        let port = |value: &str| match value.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("-p {text:?}: {value:?} is not a port (1 to 65535)")),
            Ok(port) => Ok(port),
        };
        Ok(PortMapping { host_port: port(host)?, port: port(container)?, protocol })
    }
}

/// Refuses a list that publishes one host port twice.
pub fn check_unique(ports: &[PortMapping]) -> Result<(), String> {
    for (i, a) in ports.iter().enumerate() {
        if let Some(b) = ports[..i].iter().find(|b| (b.host_port, b.protocol) == (a.host_port, a.protocol)) {
            return Err(format!("-p {a} and -p {b} both publish host port {}/{}", a.host_port, a.protocol.as_str()));
        }
    }
    Ok(())
}

/// A host port held for a published port: bound on all addresses, never listening, so
/// it receives nothing (the DNAT rule takes the traffic first) and no other process of
/// the host can bind it. Dropping it frees the port.
#[derive(Debug)]
pub struct HeldPort {
    _socket: OwnedFd,
}

/// Binds `protocol` port `port` on 0.0.0.0 in the agent's (the host's) namespace, like
/// a server about to listen would. A port in use is refused, naming it.
pub fn hold(protocol: Protocol, port: u16) -> Result<HeldPort, EgressError> {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let socket: std::io::Result<OwnedFd> = match protocol {
        // std's TcpListener listens: a connection from the host itself would then sit
        // in its backlog. Binding without listening needs the socket calls themselves.
        Protocol::Tcp => bind_tcp(addr),
        Protocol::Udp => UdpSocket::bind(addr).map(OwnedFd::from),
    };
    match socket {
        Ok(socket) => Ok(HeldPort { _socket: socket }),
        Err(source) => Err(EgressError::PortInUse { protocol, port, source }),
    }
}

fn bind_tcp(addr: SocketAddrV4) -> std::io::Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, socket};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(addr))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_docker_run_p_takes() {
        let p: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(p, PortMapping { host_port: 8080, port: 80, protocol: Protocol::Tcp });
        assert_eq!("5353:53/udp".parse::<PortMapping>().unwrap().protocol, Protocol::Udp);
        assert_eq!("1:65535/tcp".parse::<PortMapping>().unwrap().to_string(), "1->65535/tcp");
        for bad in ["80", "0:80", "80:0", "x:80", "80:70000", "80:80/sctp", ":80", "80:"] {
            assert!(bad.parse::<PortMapping>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_host_port_is_published_once() {
        let a: PortMapping = "8080:80".parse().unwrap();
        let b: PortMapping = "8080:81".parse().unwrap();
        let udp: PortMapping = "8080:80/udp".parse().unwrap();
        assert!(check_unique(&[a, udp]).is_ok());
        assert!(check_unique(&[a, b]).unwrap_err().contains("8080/tcp"));
    }
}
