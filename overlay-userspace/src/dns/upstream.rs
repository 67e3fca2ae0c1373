//! Forwarding names that are not containers to the host's resolvers.
//!
//! Upstream queries leave from the namespace of the thread that runs the resolver's
//! tasks: the agent's tokio runtime, in the host namespace. So the host's own resolvers
//! are reachable as the host reaches them, loopback ones (127.0.0.53) included, and a
//! container needs no route out for its names to resolve.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use hickory_proto::op::{Message, MessageType};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use super::{DnsError, query::Forward, resolv_conf};

/// How long one upstream gets to answer, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Where the host's resolvers are listed.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Like glibc, at most three upstreams are asked, in order.
pub const MAX_UPSTREAMS: usize = 3;

/// The resolvers that get the names that are not containers.
#[derive(Clone, Debug)]
pub struct Upstreams {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl Upstreams {
    /// Asks `servers` in order (the first [`MAX_UPSTREAMS`]), each for at most `timeout`.
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        let mut servers = servers;
        servers.truncate(MAX_UPSTREAMS);
        Upstreams { servers, timeout }
    }

    /// No upstream: every name that is not a container gets SERVFAIL.
    pub fn none() -> Self {
        Upstreams { servers: Vec::new(), timeout: DEFAULT_TIMEOUT }
    }

    /// The host's resolvers: the `nameserver` lines of [`HOST_RESOLV_CONF`], each asked
    /// for at most [`DEFAULT_TIMEOUT`].
    pub fn from_host() -> Result<Self, DnsError> {
        Self::from_resolv_conf(Path::new(HOST_RESOLV_CONF), DEFAULT_TIMEOUT)
    }

    /// The `nameserver` lines of a resolv.conf (normally the host's `/etc/resolv.conf`),
    /// port 53.
    pub fn from_resolv_conf(path: &Path, timeout: Duration) -> Result<Self, DnsError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf { path: path.to_owned(), source })?;
        let servers = resolv_conf::nameservers(&text).into_iter().map(|ip| SocketAddr::new(ip, 53)).collect();
        Ok(Upstreams::new(servers, timeout))
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Asks each upstream in turn until one answers; SERVFAIL if none does. A truncated
    /// UDP answer is asked again over TCP; a client that asked over TCP is forwarded
    /// over TCP.
    pub(super) async fn resolve(&self, forward: &Forward) -> Vec<u8> {
        for server in &self.servers {
            match self.exchange(*server, forward).await {
                Ok(upstream) => return forward.reply(upstream),
                Err(e) => tracing::debug!("upstream {server} for {}: {e}", forward.question()),
            }
        }
        forward.failure()
    }

    async fn exchange(&self, server: SocketAddr, forward: &Forward) -> io::Result<Message> {
        let id: u16 = rand::random();
        let query = forward.upstream_query(id);
        let bytes = query.to_vec().map_err(io::Error::other)?;
        if !forward.wants_tcp() {
            let answer = timed(self.timeout, udp_exchange(server, &bytes, &query)).await?;
            if !answer.metadata.truncation {
                return Ok(answer);
            }
        }
        timed(self.timeout, tcp_exchange(server, &bytes, &query)).await
    }
}

async fn timed(timeout: Duration, exchange: impl Future<Output = io::Result<Message>>) -> io::Result<Message> {
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {timeout:?}"))))
}

/// Whether `answer` answers `query` (same id and question): anything else on the socket
/// is ignored, so a stray or spoofed datagram cannot end the exchange.
fn matches(answer: &Message, query: &Message) -> bool {
    answer.metadata.message_type == MessageType::Response
        && answer.metadata.id == query.metadata.id
        && answer.queries == query.queries
}

async fn udp_exchange(server: SocketAddr, bytes: &[u8], query: &Message) -> io::Result<Message> {
    let local: IpAddr = if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let socket = UdpSocket::bind((local, 0)).await?;
    socket.connect(server).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buf).await?;
        if let Ok(answer) = Message::from_vec(&buf[..len])
            && matches(&answer, query)
        {
            return Ok(answer);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8], query: &Message) -> io::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(bytes.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    loop {
        let len = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(len)];
        stream.read_exact(&mut buf).await?;
        if let Ok(answer) = Message::from_vec(&buf)
            && matches(&answer, query)
        {
            return Ok(answer);
        }
    }
}
