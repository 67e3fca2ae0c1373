//! Request/response over UDP and TCP, as netperf's UDP_RR and TCP_RR measure it: a
//! 1-byte request, a 1-byte response, one transaction in flight, for a fixed time. The
//! client times every transaction with the monotonic clock, so the mean and the p99
//! have sub-microsecond resolution (ping reports whole microseconds). Client and server
//! are threads of this process that entered the two namespaces, pinned to two different
//! CPUs when there are two, as iperf3 is (`-A 0,1`). Only ever aimed at a lab's server.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use overlay::netns;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Udp,
    Tcp,
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct RrReport {
    pub transactions: u64,
    pub seconds: f64,
    pub transactions_per_second: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// UDP requests with no response within [`LOST_AFTER`] (not counted in the latencies).
    pub lost: u64,
}

/// A UDP request unanswered after this long is lost; the next one is sent.
const LOST_AFTER: Duration = Duration::from_millis(200);
/// How long the client keeps trying to reach a server that is still starting.
const CONNECT_FOR: Duration = Duration::from_secs(3);
/// How often a server waiting for data looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// Runs `duration` of transactions from `client_ns` to a server in `server_ns` on
/// `server_ip:port`.
pub fn run(
    protocol: Protocol,
    client_ns: &str,
    server_ns: &str,
    server_ip: Ipv4Addr,
    port: u16,
    duration: Duration,
) -> anyhow::Result<RrReport> {
    let address = SocketAddrV4::new(server_ip, port);
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = {
        let (ns, stop) = (server_ns.to_owned(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            netns::run_in(&ns, || {
                pin_to_cpu(1);
                serve(protocol, address, &stop, ready_tx)
            })?
        })
    };
    // The server binds before the client starts; a failure to bind ends the wait.
    let _ = ready_rx.recv_timeout(CONNECT_FOR);
    let client = netns::run_in(client_ns, || {
        pin_to_cpu(0);
        match protocol {
            Protocol::Udp => udp_client(address, duration),
            Protocol::Tcp => tcp_client(address, duration),
        }
    });
    stop.store(true, Ordering::Relaxed);
    let served = server.join().map_err(|_| anyhow::anyhow!("the {protocol:?} RR server panicked"))?;
    let report = client?.with_context(|| format!("{protocol:?} RR client to {address}"))?;
    served.with_context(|| format!("{protocol:?} RR server on {address}"))?;
    Ok(report)
}

/// Pins the calling thread to `cpu` when the machine has more than one.
fn pin_to_cpu(cpu: usize) {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return;
    }
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        // Unpinned is only noisier, not wrong.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn serve(
    protocol: Protocol,
    address: SocketAddrV4,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let mut byte = [0u8; 1];
    match protocol {
        Protocol::Udp => {
            let socket = UdpSocket::bind(address)?;
            socket.set_read_timeout(Some(POLL))?;
            let _ = ready.send(());
            while !stop.load(Ordering::Relaxed) {
                match socket.recv_from(&mut byte) {
                    Ok((_, from)) => {
                        socket.send_to(&byte, from)?;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Protocol::Tcp => {
            let listener = TcpListener::bind(address)?;
            listener.set_nonblocking(true)?;
            let _ = ready.send(());
            let mut stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            stream.set_nonblocking(false)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(POLL))?;
            while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut byte) {
                    Ok(0) => break,
                    Ok(_) => stream.write_all(&byte)?,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

fn udp_client(server: SocketAddrV4, duration: Duration) -> anyhow::Result<RrReport> {
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(LOST_AFTER))?;
    let mut byte = [0u8; 1];
    // First exchange: ARP and the server's bind are behind us before timing starts.
    let deadline = Instant::now() + CONNECT_FOR;
    loop {
        socket.send(&[0])?;
        match socket.recv(&mut byte) {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {}
            Err(e) => bail!("no response from {server}: {e}"),
        }
    }
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut lost = 0;
    let start = Instant::now();
    while start.elapsed() < duration {
        let sent = Instant::now();
        socket.send(&[1])?;
        match socket.recv(&mut byte) {
            Ok(_) => latencies.push(sent.elapsed().as_nanos() as u64),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => lost += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report(latencies, start.elapsed(), lost))
}

fn tcp_client(server: SocketAddrV4, duration: Duration) -> anyhow::Result<RrReport> {
    let deadline = Instant::now() + CONNECT_FOR;
    let mut stream = loop {
        match TcpStream::connect_timeout(&server.into(), CONNECT_FOR) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => bail!("cannot connect to {server}: {e}"),
        }
    };
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut byte = [0u8; 1];
    stream.write_all(&[0])?;
    stream.read_exact(&mut byte)?;
    let mut latencies = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    while start.elapsed() < duration {
        let sent = Instant::now();
        stream.write_all(&[1])?;
        stream.read_exact(&mut byte)?;
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    Ok(report(latencies, start.elapsed(), 0))
}

fn report(mut latencies_ns: Vec<u64>, elapsed: Duration, lost: u64) -> RrReport {
    latencies_ns.sort_unstable();
    let n = latencies_ns.len();
    let quantile = |q: f64| {
        if n == 0 { f64::NAN } else { latencies_ns[((n as f64 * q) as usize).min(n - 1)] as f64 / 1e3 }
    };
    let mean_us = if n == 0 { f64::NAN } else { latencies_ns.iter().sum::<u64>() as f64 / n as f64 / 1e3 };
    let seconds = elapsed.as_secs_f64();
    RrReport {
        transactions: n as u64,
        seconds,
        transactions_per_second: n as f64 / seconds,
        mean_us,
        p50_us: quantile(0.5),
        p99_us: quantile(0.99),
        lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_mean_of_latencies() {
        let r = report((1..=100).map(|i| i * 1000).collect(), Duration::from_secs(1), 2);
        assert_eq!(r.transactions, 100);
        assert_eq!(r.mean_us, 50.5);
        assert_eq!(r.p50_us, 51.0);
        assert_eq!(r.p99_us, 100.0);
        assert_eq!(r.lost, 2);
        assert!(report(Vec::new(), Duration::from_secs(1), 0).mean_us.is_nan());
    }
}
