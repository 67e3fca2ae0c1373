//! Serving one container: UDP and TCP sockets at 127.0.0.11:53 inside its namespace,
//! served by tasks on the agent's runtime.
//!
//! The sockets are made by a thread that enters the container's namespace and are then
//! handed back: a socket stays in the namespace it was made in, so the tasks serving it
//! run anywhere. Which socket a query arrives on says which container asked, hence
//! which networks it sees ([`Querier::Fixed`]). A resolver that many containers reach
//! (the one for Docker containers, behind the datapath) tells them apart by the query's
//! source address instead ([`Querier::BySource`]). Upstream queries leave from the
//! runtime's own namespace (see [`super::upstream`]).

use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::{JoinHandle, JoinSet},
};

use super::{
    DnsError, RESOLVER_IP,
    query::{self, Outcome, Transport},
    upstream::Upstreams,
    view::NameView,
};
use crate::netns;

/// Forwarded UDP queries waiting for an upstream, per container; past this, SERVFAIL.
pub const MAX_PENDING_FORWARDS: usize = 128;
/// TCP connections served at once, per container; past this, new ones are closed.
pub const MAX_TCP_CONNECTIONS: usize = 32;
/// A TCP connection that sends nothing for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer UDP queries are cut to this and get FORMERR.
const UDP_RECEIVE_BUFFER: usize = 4096;

/// A container's resolver sockets, bound in its namespace, not yet served.
#[derive(Debug)]
pub struct Sockets {
    pub netns: String,
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// Binds UDP and TCP `127.0.0.11:53` inside namespace `netns` (what a process started
/// with `ip netns exec NETNS` would bind). No address is added: every 127.0.0.0/8
/// address is local once `lo` is up (`ip -n NETNS link set lo up`), which the
/// namespace's creator does.
pub fn bind_in_netns(netns: &str) -> Result<Sockets, DnsError> {
    bind_in_netns_at(netns, SocketAddr::from((RESOLVER_IP, 53)))
}

/// [`bind_in_netns`] at another address (tests, or a resolver on another port).
pub fn bind_in_netns_at(netns: &str, addr: SocketAddr) -> Result<Sockets, DnsError> {
    let bound = netns::run_in(netns, || -> std::io::Result<(UdpSocket, TcpListener)> {
        let udp = UdpSocket::bind(addr)?;
        udp.set_nonblocking(true)?;
        let tcp = TcpListener::bind(addr)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })?;
    let (udp, tcp) = bound.map_err(|source| DnsError::Bind { netns: netns.to_owned(), addr, source })?;
    Ok(Sockets { netns: netns.to_owned(), udp, tcp })
}

/// [`bind_in_netns`] then [`serve`]: the resolver of container `querier` (its id in
/// `view`), whose namespace is `netns`, served until the returned [`Resolver`] is
/// stopped or dropped. Must be called inside a tokio runtime.
pub fn serve_container(
    netns: &str,
    querier: &str,
    view: NameView,
    upstreams: Arc<Upstreams>,
) -> Result<Resolver, DnsError> {
    serve(bind_in_netns(netns)?, querier, view, upstreams)
}

/// Whose names a query is answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Querier {
    /// Every query on these sockets comes from this container (its id in the view).
    Fixed(String),
    /// A query comes from the container that holds its source address; any other
    /// source asks as `others` (a querier of the view that sees no container names).
    /// Only for sockets that nothing but the datapath, which checks containers' source
    /// addresses, and this host reach.
    BySource { others: String },
}

impl Querier {
    fn of(&self, view: &NameView, client: SocketAddr) -> std::borrow::Cow<'_, str> {
        match self {
            Querier::Fixed(id) => id.as_str().into(),
            Querier::BySource { others } => match client.ip() {
                std::net::IpAddr::V4(ip) => view.container_at(ip).map_or_else(|| others.as_str().into(), Into::into),
                std::net::IpAddr::V6(_) => others.as_str().into(),
            },
        }
    }

    fn label(&self) -> &str {
        match self {
            Querier::Fixed(id) => id,
            Querier::BySource { others } => others,
        }
    }
}

/// A running resolver for one container. Dropping it stops serving (the tasks are
/// aborted); [`Resolver::stop`] also waits until the sockets are closed.
#[derive(Debug)]
pub struct Resolver {
    querier: String,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// What every task of one resolver shares.
struct Context {
    querier: Querier,
    view: NameView,
    upstreams: Arc<Upstreams>,
    rotation: AtomicUsize,
}

impl Context {
    fn respond(&self, packet: &[u8], transport: Transport, client: SocketAddr) -> Outcome {
        let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
        let querier = self.querier.of(&self.view, client);
        query::respond(packet, &querier, &self.view, transport, rotation)
    }
}

/// Serves `sockets` for container `querier` (its id in `view`), forwarding other names
/// to `upstreams`. Must be called inside a tokio runtime; the tasks run on it until the
/// returned [`Resolver`] is stopped or dropped.
pub fn serve(sockets: Sockets, querier: &str, view: NameView, upstreams: Arc<Upstreams>) -> Result<Resolver, DnsError> {
    serve_as(sockets, Querier::Fixed(querier.to_owned()), view, upstreams)
}

/// [`serve`] with queriers told apart as `querier` says.
pub fn serve_as(
    sockets: Sockets,
    querier: Querier,
    view: NameView,
    upstreams: Arc<Upstreams>,
) -> Result<Resolver, DnsError> {
    let Sockets { netns, udp, tcp } = sockets;
    let register = |source| DnsError::Register { netns: netns.clone(), source };
    let local_addr = udp.local_addr().map_err(register)?;
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(register)?;
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(register)?;
    let label = querier.label().to_owned();
    let context = Arc::new(Context { querier, view, upstreams, rotation: AtomicUsize::new(0) });
    tracing::debug!("serving DNS for {label} at {local_addr} in namespace {netns}");
    let tasks = vec![tokio::spawn(serve_udp(Arc::new(udp), context.clone())), tokio::spawn(serve_tcp(tcp, context))];
    Ok(Resolver { querier: label, local_addr, tasks })
}

impl Resolver {
    pub fn querier(&self) -> &str {
        &self.querier
    }

    /// The address served inside the container's namespace.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving and returns once the sockets are closed: queries then get
    /// "connection refused".
    pub async fn stop(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve_udp(socket: Arc<tokio::net::UdpSocket>, context: Arc<Context>) {
    // Owned here: aborting this task aborts the forwards in flight.
    let mut forwards = JoinSet::new();
    let mut buf = vec![0u8; UDP_RECEIVE_BUFFER];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::warn!("DNS for {}: receiving: {e}", context.querier.label());
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                match context.respond(&buf[..len], Transport::Udp, client) {
                    Outcome::Reply(reply) => send(&socket, &reply, client).await,
                    Outcome::Forward(forward) if forwards.len() >= MAX_PENDING_FORWARDS => {
                        send(&socket, &forward.failure(), client).await;
                    }
                    Outcome::Forward(forward) => {
                        let (socket, context) = (socket.clone(), context.clone());
                        forwards.spawn(async move {
                            let reply = context.upstreams.resolve(&forward).await;
                            send(&socket, &reply, client).await;
                        });
                    }
                    Outcome::Drop => {}
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
}

async fn send(socket: &tokio::net::UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(e) = socket.send_to(reply, client).await {
        tracing::debug!("DNS answer to {client}: {e}");
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, context: Arc<Context>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) if connections.len() < MAX_TCP_CONNECTIONS => {
                    connections.spawn(serve_connection(stream, client, context.clone()));
                }
                Ok((stream, client)) => {
                    tracing::debug!("DNS for {}: too many TCP connections, closing {client}", context.querier.label());
                    drop(stream);
                }
                Err(e) => {
                    tracing::warn!("DNS for {}: accepting: {e}", context.querier.label());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Length-prefixed queries, answered in order, until the client closes, sends garbage
/// or stays idle for [`TCP_IDLE_TIMEOUT`].
async fn serve_connection(mut stream: TcpStream, client: SocketAddr, context: Arc<Context>) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await else { return };
        let mut packet = vec![0u8; usize::from(len)];
        let Ok(Ok(_)) = tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut packet)).await else { return };
        let reply = match context.respond(&packet, Transport::Tcp, client) {
            Outcome::Reply(reply) => reply,
            Outcome::Forward(forward) => context.upstreams.resolve(&forward).await,
            Outcome::Drop => return,
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else { return };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        let Ok(Ok(())) = tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.write_all(&framed)).await else { return };
    }
}
