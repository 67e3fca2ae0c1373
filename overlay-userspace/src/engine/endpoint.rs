//! The agent's side of the Engine API: its host's dockerd, served over mutual TLS on the
//! node's advertised address, so that the managers reach every node's engine. Only a
//! client whose certificate the cluster CA signed gets through; each connection is then
//! joined byte for byte to dockerd's unix socket (hijacked streams included).
//!
//! Why the agent serves it rather than dockerd's own `--tlsverify` listener: dockerd
//! keeps only its unix socket, so its root-equivalent API is never on the network by a
//! setting of its own; the cluster's certificates are configured in one program; and the
//! endpoint exists exactly while the node is in the cluster (the agent registers it in
//! the node record once it listens, and it goes with the agent).

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, UnixStream},
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

use super::{Credentials, EngineError, keepalive, listener::HANDSHAKE_TIMEOUT, splice::splice};
use crate::shutdown::Shutdown;

/// What `overlay agent --docker --docker-tls-*` serves.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// The advertised address and the engine port.
    pub listen: SocketAddr,
    /// dockerd's API socket.
    pub docker_socket: PathBuf,
    pub credentials: Credentials,
}

/// The endpoint's socket, bound (before the node registers it).
pub struct Bound {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    docker_socket: PathBuf,
}

/// Binds the endpoint. Must be called inside a tokio runtime.
pub async fn bind(config: &EndpointConfig) -> Result<Bound, EngineError> {
    let acceptor = TlsAcceptor::from(config.credentials.server_config()?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| EngineError::Listen { address: format!("tcp://{}", config.listen), source })?;
    Ok(Bound { listener, acceptor, docker_socket: config.docker_socket.clone() })
}

impl Bound {
    /// Serves until `shutdown`; connections still open then are closed.
    pub async fn serve(self, shutdown: Shutdown) {
        let address = self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%address, docker = %self.docker_socket.display(), "Docker engine served to the managers over mutual TLS");
        let socket = Arc::new(self.docker_socket);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        if let Err(error) = keepalive::detect_dead_peer(&stream) {
                            tracing::warn!(%peer, "engine endpoint: setting TCP keepalive: {error}");
                        }
                        connections.spawn(relay(self.acceptor.clone(), stream, peer, socket.clone()));
                    }
                    Err(error) => {
                        tracing::warn!(%address, "accepting a connection: {error}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        connections.shutdown().await;
    }
}

/// One manager connection: TLS (a client certificate from the cluster CA required),
/// then joined to dockerd.
async fn relay(acceptor: TlsAcceptor, stream: tokio::net::TcpStream, peer: SocketAddr, socket: Arc<PathBuf>) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::info!("engine endpoint: {peer} refused: TLS: {error}");
            return;
        }
        Err(_) => {
            tracing::info!("engine endpoint: {peer}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let mut tls = tls;
    let docker = match UnixStream::connect(socket.as_ref()).await {
        Ok(docker) => docker,
        Err(error) => {
            let message = format!("dockerd does not answer at {} ({error}): is it running?", socket.display());
            tracing::warn!("engine endpoint: {message}");
            // The manager passes this on to the CLI as the node's own error.
            let body = serde_json::json!({ "message": message }).to_string();
            let answer = format!(
                "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(answer.as_bytes()).await;
            let _ = tls.shutdown().await;
            return;
        }
    };
    tracing::debug!("engine endpoint: {peer} connected to dockerd");
    splice(tls, docker).await;
}
