//! The agent's metrics as Prometheus text on a loopback port: datapath counters (per
//! reason and direction, per network), egress and published ports (from the agent's
//! nftables table) and control-plane figures. Loopback only: the
//! endpoint has no authentication, so it refuses any other address.

use std::{fmt::Write as _, net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::sync::Mutex;

use crate::{
    datapath::{CounterSnapshot, Datapath},
    shutdown::Shutdown,
};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("the metrics address {0} is not a loopback address: it has no authentication, use 127.0.0.1:PORT")]
    NotLoopback(SocketAddr),
    #[error("listening on {addr}: {source}; pick another port with --metrics-addr")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Control-plane figures: the agent's datapath task keeps them, `GET /metrics` shows them.
#[derive(Clone, Debug, Default)]
pub struct ConvergenceStats {
    pub updates: u64,
    pub changes_applied: u64,
    pub change_errors: u64,
    pub last_reconcile_micros: u64,
    pub remote_endpoints: usize,
    pub members: usize,
    pub networks: usize,
}

/// How many containers this node runs: the agent's container task counts them, the
/// metrics and the node's record show them.
pub type ContainerCount = Arc<std::sync::atomic::AtomicUsize>;

/// What `GET /metrics` reads.
#[derive(Clone)]
pub struct Sources {
    pub datapath: Arc<Mutex<Datapath>>,
    pub convergence: Arc<std::sync::Mutex<ConvergenceStats>>,
    pub containers: ContainerCount,
}

pub fn check_address(addr: SocketAddr) -> Result<(), MetricsError> {
    if addr.ip().is_loopback() { Ok(()) } else { Err(MetricsError::NotLoopback(addr)) }
}

/// Serves `GET /metrics` on `addr` until `shutdown`.
pub async fn serve(addr: SocketAddr, sources: Sources, shutdown: Shutdown) -> Result<(), MetricsError> {
    check_address(addr)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
    let app = Router::new().route("/metrics", get(metrics)).with_state(sources);
    let stop = async move { shutdown.wait().await };
    axum::serve(listener, app).with_graceful_shutdown(stop).await.map_err(|source| MetricsError::Bind { addr, source })
}

async fn metrics(State(sources): State<Sources>) -> impl IntoResponse {
    let counters = sources.datapath.lock().await.counters();
    let convergence = sources.convergence.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let containers = sources.containers.load(std::sync::atomic::Ordering::Relaxed);
    let mut body = match counters {
        Ok(snapshot) => render(&snapshot, &convergence, containers),
        Err(e) => format!("# datapath counters unavailable: {e}\n"),
    };
    match crate::egress::read_counters().await {
        Ok(egress) => body += &render_egress(&egress.unwrap_or_default()),
        Err(e) => body += &format!("# egress counters unavailable: {e}\n"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// The Prometheus text exposition of one snapshot.
pub fn render(snapshot: &CounterSnapshot, convergence: &ConvergenceStats, containers: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP overlay_datapath_packets_total Packets by outcome (reason) and program (direction).");
    let _ = writeln!(out, "# TYPE overlay_datapath_packets_total counter");
    for ((reason, direction), c) in &snapshot.by_reason {
        let _ = writeln!(
            out,
            "overlay_datapath_packets_total{{reason=\"{}\",direction=\"{}\"}} {}",
            reason.name(),
            direction.name(),
            c.packets
        );
    }
    let _ = writeln!(out, "# HELP overlay_datapath_bytes_total Bytes by outcome (reason) and program (direction).");
    let _ = writeln!(out, "# TYPE overlay_datapath_bytes_total counter");
    for ((reason, direction), c) in &snapshot.by_reason {
        let _ = writeln!(
            out,
            "overlay_datapath_bytes_total{{reason=\"{}\",direction=\"{}\"}} {}",
            reason.name(),
            direction.name(),
            c.bytes
        );
    }
    let _ = writeln!(out, "# HELP overlay_network_packets_total Packets forwarded per network (VNI).");
    let _ = writeln!(out, "# TYPE overlay_network_packets_total counter");
    for (vni, c) in &snapshot.by_network {
        let _ = writeln!(
            out,
            "overlay_network_packets_total{{vni=\"{vni}\",direction=\"from-container\"}} {}",
            c.from_container_packets
        );
        let _ = writeln!(
            out,
            "overlay_network_packets_total{{vni=\"{vni}\",direction=\"from-underlay\"}} {}",
            c.from_underlay_packets
        );
    }
    let gauges: [(&str, &str, u64); 7] = [
        ("overlay_store_updates_total", "Store watch events the agent processed.", convergence.updates),
        ("overlay_datapath_changes_total", "Datapath table changes applied.", convergence.changes_applied),
        ("overlay_datapath_change_errors_total", "Datapath table changes that failed.", convergence.change_errors),
        ("overlay_reconcile_last_microseconds", "Duration of the last reconcile.", convergence.last_reconcile_micros),
        ("overlay_remote_endpoints", "Remote endpoints programmed.", convergence.remote_endpoints as u64),
        ("overlay_members", "Member VTEPs programmed.", convergence.members as u64),
        ("overlay_containers", "Containers running on this node.", containers as u64),
    ];
    for (name, help, value) in gauges {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    out
}

/// Egress per network and published ports, from the agent's nftables table.
pub fn render_egress(counters: &crate::egress::EgressCounters) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP overlay_egress_packets_total Packets of containers' egress, by network (VNI): out, in (replies), blocked (anything else towards the network)."
    );
    let _ = writeln!(out, "# TYPE overlay_egress_packets_total counter");
    for (vni, c) in &counters.networks {
        for (direction, packets) in [("out", c.out_packets), ("in", c.in_packets), ("blocked", c.blocked_packets)] {
            let _ = writeln!(out, "overlay_egress_packets_total{{vni=\"{vni}\",direction=\"{direction}\"}} {packets}");
        }
    }
    let _ = writeln!(out, "# HELP overlay_egress_bytes_total Bytes of containers' egress, by network (VNI).");
    let _ = writeln!(out, "# TYPE overlay_egress_bytes_total counter");
    for (vni, c) in &counters.networks {
        for (direction, bytes) in [("out", c.out_bytes), ("in", c.in_bytes), ("blocked", c.blocked_bytes)] {
            let _ = writeln!(out, "overlay_egress_bytes_total{{vni=\"{vni}\",direction=\"{direction}\"}} {bytes}");
        }
    }
    let _ = writeln!(out, "# HELP overlay_published_ports Ports published on this host, by owner.");
    let _ = writeln!(out, "# TYPE overlay_published_ports gauge");
    let _ = writeln!(out, "overlay_published_ports {}", counters.ports.len());
    let _ = writeln!(
        out,
        "# HELP overlay_published_port_packets_total Packets of a published port: in (to the container), out (its replies)."
    );
    let _ = writeln!(out, "# TYPE overlay_published_port_packets_total counter");
    for p in &counters.ports {
        let labels = format!(
            "owner=\"{}\",host_port=\"{}\",protocol=\"{}\",target=\"{}:{}\"",
            p.owner,
            p.mapping.host_port,
            p.mapping.protocol.as_str(),
            p.ip,
            p.mapping.port
        );
        let _ = writeln!(out, "overlay_published_port_packets_total{{{labels},direction=\"in\"}} {}", p.in_packets);
        let _ = writeln!(out, "overlay_published_port_packets_total{{{labels},direction=\"out\"}} {}", p.out_packets);
    }
    out
}

#[cfg(test)]
mod tests {
    use overlay_common::{Counter, Direction, Reason};

    use super::*;

    #[test]
    fn renders_counters_and_refuses_public_addresses() {
        let mut snapshot = CounterSnapshot::default();
        snapshot.by_reason.insert((Reason::NotMember, Direction::FromUnderlay), Counter { packets: 3, bytes: 150 });
        let text = render(&snapshot, &ConvergenceStats { remote_endpoints: 7, ..Default::default() }, 2);
        assert!(
            text.contains("overlay_datapath_packets_total{reason=\"drop-not-member\",direction=\"from-underlay\"} 3")
        );
        assert!(text.contains("overlay_remote_endpoints 7"));
        assert!(text.contains("overlay_containers 2"));
        assert!(check_address("127.0.0.1:9469".parse().unwrap()).is_ok());
        let mut egress = crate::egress::EgressCounters::default();
        egress.ports.push(crate::egress::PortCounters {
            owner: "container/web".into(),
            ip: std::net::Ipv4Addr::new(10, 0, 9, 2),
            mapping: "8080:80".parse().unwrap(),
            in_packets: 4,
            in_bytes: 0,
            out_packets: 3,
            out_bytes: 0,
        });
        let text = render_egress(&egress);
        assert!(text.contains("overlay_published_ports 1"), "{text}");
        assert!(
            text.contains(
                "owner=\"container/web\",host_port=\"8080\",protocol=\"tcp\",target=\"10.0.9.2:80\",direction=\"in\"} 4"
            ),
            "{text}"
        );
        assert!(check_address("0.0.0.0:9469".parse().unwrap()).is_err());
    }
}
