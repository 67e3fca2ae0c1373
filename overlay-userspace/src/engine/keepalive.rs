//! Dead-peer detection on the TCP connections between the manager and the agents'
//! engine endpoints. A host that dies says nothing: without this, a stream to it
//! (`logs -f`, attach, exec) or from a manager that died stays open until the kernel
//! gives up, minutes later, and so does what it holds (a dockerd connection, a CLI).

use std::time::Duration;

use tokio::net::TcpStream;

/// How long a connection may go unanswered (no ACK of data sent, or of
/// keepalive probes while idle) before it is dropped as dead.
pub const DEAD_PEER: Duration = Duration::from_secs(11);
/// Idle time before the first keepalive probe, and between probes: with
/// [`KEEPALIVE_PROBES`] unanswered, [`DEAD_PEER`] has passed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_PROBES: u32 = 3;
const _: () =
    assert!(KEEPALIVE_IDLE.as_secs() + KEEPALIVE_PROBES as u64 * KEEPALIVE_INTERVAL.as_secs() <= DEAD_PEER.as_secs());

/// Drops `tcp` once its peer has not answered for [`DEAD_PEER`]: keepalive probes
/// while it is idle, and `TCP_USER_TIMEOUT` for data it sent (like `setsockopt`
/// `SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`, `TCP_USER_TIMEOUT`).
pub fn detect_dead_peer(tcp: &TcpStream) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    socket.set_tcp_keepalive(&keepalive)?;
    socket.set_tcp_user_timeout(Some(DEAD_PEER))
}
