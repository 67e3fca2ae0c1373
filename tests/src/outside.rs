//! Services of a lab's outside host ([`crate::lab::LabBuilder::outside`]) that note who
//! reached them, and clients that reach them from any namespace: what egress and
//! published-port tests check ("the outside sees the host's address").

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use overlay::netns;

use crate::cmd;

/// A TCP and a UDP server on one port of a namespace: each answers `hello PEER` to
/// whatever a client sends, and keeps the peers it saw. They stop when dropped (the
/// sockets close; the threads end at their next wake-up).
pub struct PeerLog {
    pub addr: SocketAddrV4,
    peers: Arc<Mutex<Vec<(&'static str, SocketAddr)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl PeerLog {
    /// Serves on `ip:port` inside `ns` (sockets belong to the namespace they are made in).
    pub fn start(ns: &str, ip: Ipv4Addr, port: u16) -> anyhow::Result<PeerLog> {
        let addr = SocketAddrV4::new(ip, port);
        let (tcp, udp) = netns::run_in(ns, move || -> std::io::Result<(TcpListener, UdpSocket)> {
            Ok((TcpListener::bind(addr)?, UdpSocket::bind(addr)?))
        })??;
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tcp.set_nonblocking(true)?;
        udp.set_read_timeout(Some(Duration::from_millis(100)))?;
        let (p, s) = (peers.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut stream, peer)) => {
                        p.lock().unwrap().push(("tcp", peer));
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut line = String::new();
                        let _ = BufReader::new(stream.try_clone().expect("clone")).read_line(&mut line);
                        let _ = writeln!(stream, "hello {peer}");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let (p, s) = (peers.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    p.lock().unwrap().push(("udp", peer));
                    let _ = udp.send_to(format!("hello {peer}\n").as_bytes(), peer);
                }
            }
        });
        Ok(PeerLog { addr, peers, stop })
    }

    /// The source addresses (without ports) the server saw over `protocol` ("tcp", "udp").
    pub fn peers(&self, protocol: &str) -> Vec<Ipv4Addr> {
        let peers = self.peers.lock().unwrap();
        peers
            .iter()
            .filter(|(p, _)| *p == protocol)
            .filter_map(|(_, a)| match a {
                SocketAddr::V4(a) => Some(*a.ip()),
                SocketAddr::V6(_) => None,
            })
            .collect()
    }
}

impl Drop for PeerLog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A TCP connection made from a namespace, kept open: each line sent is answered by a
/// [`PeerLog`]-style echo ([`echo_server`]).
pub struct Connection {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// Connects from namespace `ns` (the socket stays in it) to `to`.
    pub fn open(ns: &str, to: SocketAddrV4, limit: Duration) -> anyhow::Result<Connection> {
        let stream = netns::run_in(ns, move || TcpStream::connect_timeout(&SocketAddr::V4(to), limit))??;
        stream.set_read_timeout(Some(limit))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Connection { stream, reader })
    }

    /// Sends `line` and waits for its echo.
    pub fn round_trip(&mut self, line: &str) -> anyhow::Result<String> {
        writeln!(self.stream, "{line}")?;
        let mut answer = String::new();
        self.reader.read_line(&mut answer).context("no echo")?;
        anyhow::ensure!(!answer.is_empty(), "the connection was closed");
        Ok(answer.trim_end().to_owned())
    }
}

/// Serves TCP echo (line by line, for as long as each connection stays open) on
/// `ip:port` in namespace `ns`; it stops with the test process.
pub fn echo_server(ns: &str, ip: Ipv4Addr, port: u16) -> anyhow::Result<()> {
    let listener = netns::run_in(ns, move || TcpListener::bind(SocketAddrV4::new(ip, port)))??;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut writer) = stream.try_clone() else { return };
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if writeln!(writer, "{line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

/// Sends a line over TCP from namespace `ns` to `to` and returns the answer; fails if
/// no connection is made within `limit`.
pub fn tcp_request(ns: &str, to: SocketAddrV4, limit: Duration) -> anyhow::Result<String> {
    netns::run_in(ns, move || -> anyhow::Result<String> {
        let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(to), limit)
            .with_context(|| format!("TCP connection to {to}"))?;
        stream.set_read_timeout(Some(limit))?;
        stream.write_all(b"hi\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).with_context(|| format!("reading from {to}"))?;
        Ok(answer)
    })?
}

/// Sends one datagram from namespace `ns` to `to` and returns the answer; fails if
/// none comes within `limit`.
pub fn udp_request(ns: &str, to: SocketAddrV4, limit: Duration) -> anyhow::Result<String> {
    netns::run_in(ns, move || -> anyhow::Result<String> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_read_timeout(Some(limit))?;
        socket.send_to(b"hi\n", to)?;
        let mut buf = [0u8; 1500];
        let (n, _) = socket.recv_from(&mut buf).with_context(|| format!("no UDP answer from {to}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })?
}

/// Counts, in namespace `ns` (the outside host), the ICMP echo requests it receives by
/// source address: an nftables table of the test's own there.
pub struct EchoCounter {
    ns: String,
}

impl EchoCounter {
    pub fn start(ns: &str) -> anyhow::Result<EchoCounter> {
        let rules = "table ip probe {\n\
                     set sources { type ipv4_addr; flags dynamic; size 256; }\n\
                     chain input { type filter hook input priority 0; policy accept;\n\
                     icmp type echo-request add @sources { ip saddr counter }\n}\n}\n";
        run_nft(ns, rules)?;
        Ok(EchoCounter { ns: ns.to_owned() })
    }

    /// The addresses echo requests came from.
    pub fn sources(&self) -> anyhow::Result<Vec<Ipv4Addr>> {
        let out = cmd::run_in(&self.ns, &["nft", "-j", "list", "set", "ip", "probe", "sources"])?;
        let value: serde_json::Value = serde_json::from_str(&out)?;
        let mut sources = Vec::new();
        for object in value["nftables"].as_array().into_iter().flatten() {
            for elem in object["set"]["elem"].as_array().into_iter().flatten() {
                let ip = elem["elem"]["val"].as_str().or_else(|| elem.as_str());
                if let Some(ip) = ip.and_then(|s| s.parse().ok()) {
                    sources.push(ip);
                }
            }
        }
        Ok(sources)
    }
}

fn run_nft(ns: &str, rules: &str) -> anyhow::Result<()> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("nft stdin")?.write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "nft in {ns}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
