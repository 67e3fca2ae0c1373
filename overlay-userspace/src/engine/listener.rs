//! The Engine API's sockets: a root-only unix socket, or TCP (with TLS and client
//! certificates beyond loopback). Each connection is served by its own task, HTTP/1.1
//! with upgrades (attach and exec hijack the connection).

use std::{
    convert::Infallible, future::Future, os::unix::fs::PermissionsExt, path::Path, pin::Pin, sync::Arc, time::Duration,
};

use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
    task::JoinSet,
};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

use super::{ApiAddress, EngineError, body::Body};
use crate::shutdown::Shutdown;

/// A client has this long to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, connections in flight (a `logs -f`, an attach) get this long to finish.
const DRAIN: Duration = Duration::from_secs(2);

/// What answers each request.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync>;

/// A bound socket, not yet served.
pub enum Listener {
    Unix { address: ApiAddress, listener: UnixListener },
    Tcp { address: ApiAddress, listener: TcpListener, tls: Option<TlsAcceptor> },
}

/// A connection's byte stream, whatever carries it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Binds `address` (`tls`: the server configuration for TCP; required beyond loopback,
/// which the caller has checked). A stale unix socket from a previous run is replaced;
/// the new one is root-only (0600). Must be called inside a tokio runtime.
pub async fn bind(address: &ApiAddress, tls: Option<Arc<ServerConfig>>) -> Result<Listener, EngineError> {
    let failed = |source| EngineError::Listen { address: address.to_string(), source };
    match address {
        ApiAddress::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(failed)?;
            }
            remove_stale(path).map_err(failed)?;
            let listener = UnixListener::bind(path).map_err(failed)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
            Ok(Listener::Unix { address: address.clone(), listener })
        }
        ApiAddress::Tcp(socket) => {
            if address.needs_tls() && tls.is_none() {
                return Err(EngineError::Config(format!("{address} needs TLS with client certificates")));
            }
            let listener = TcpListener::bind(socket).await.map_err(failed)?;
            Ok(Listener::Tcp { address: address.clone(), listener, tls: tls.map(TlsAcceptor::from) })
        }
    }
}

fn remove_stale(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Listener {
    pub fn address(&self) -> &ApiAddress {
        match self {
            Listener::Unix { address, .. } | Listener::Tcp { address, .. } => address,
        }
    }

    /// Serves connections until `shutdown`, then lets those in flight finish for a
    /// moment and closes the rest. A unix socket is removed on return.
    pub async fn serve(self, handler: Handler, shutdown: Shutdown) {
        let address = self.address().clone();
        tracing::info!(%address, "Docker Engine API serving");
        let mut connections = JoinSet::new();
        loop {
            let stream: Box<dyn Stream> = tokio::select! {
                _ = shutdown.wait() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = self.accept() => match accepted {
                    Ok(Accepted::Plain(stream)) => stream,
                    Ok(Accepted::Tls(acceptor, stream, peer)) => {
                        // The handshake runs in the connection's task, not the accept loop.
                        let (handler, shutdown) = (handler.clone(), shutdown.clone());
                        connections.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => serve_connection(Box::new(tls), handler, shutdown).await,
                                Ok(Err(error)) => tracing::info!("Engine API client {peer} refused: TLS: {error}"),
                                Err(_) => tracing::info!("Engine API client {peer}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
                            }
                        });
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%address, "accepting a connection: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            connections.spawn(serve_connection(stream, handler.clone(), shutdown.clone()));
        }
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN, drained).await.is_err() {
            connections.shutdown().await;
        }
        if let ApiAddress::Unix(path) = &address {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            Listener::Unix { listener, .. } => Ok(Accepted::Plain(Box::new(listener.accept().await?.0))),
            Listener::Tcp { listener, tls, .. } => {
                let (stream, peer) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(match tls {
                    Some(acceptor) => Accepted::Tls(acceptor.clone(), stream, peer),
                    None => Accepted::Plain(Box::new(stream)),
                })
            }
        }
    }
}

enum Accepted {
    Plain(Box<dyn Stream>),
    Tls(TlsAcceptor, tokio::net::TcpStream, std::net::SocketAddr),
}

/// One client connection: requests until it closes; on shutdown, the request in flight
/// finishes and the connection closes.
async fn serve_connection(stream: Box<dyn Stream>, handler: Handler, shutdown: Shutdown) {
    let service = service_fn(move |request| {
        let answer = handler(request);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.wait() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!("Engine API connection: {error}");
    }
}
