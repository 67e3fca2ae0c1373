//! Helpers for the embedded resolver's tests: `dig` inside a container namespace, a
//! small upstream DNS server bound inside a lab namespace, and a container resolv.conf
//! that is removed with the test.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use anyhow::{Context, bail};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{RData, Record, RecordType, rdata},
};
use overlay::{dns, netns};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    task::JoinHandle,
};

use crate::cmd;

/// What `dig` printed, parsed.
#[derive(Clone, Debug)]
pub struct Dig {
    /// NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...
    pub status: String,
    /// The header flags: qr, aa, tc, rd, ra.
    pub flags: Vec<String>,
    /// The data of each answer record (an address, a name), in order.
    pub answers: Vec<String>,
    pub output: String,
}

impl Dig {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The answers as IPv4 addresses (fails on anything else).
    pub fn addresses(&self) -> anyhow::Result<Vec<Ipv4Addr>> {
        self.answers.iter().map(|a| a.parse().with_context(|| format!("{a:?} in {}", self.output))).collect()
    }

    pub fn sorted_addresses(&self) -> anyhow::Result<Vec<Ipv4Addr>> {
        let mut addresses = self.addresses()?;
        addresses.sort();
        Ok(addresses)
    }
}

/// `dig @127.0.0.11 ARGS` inside `ns`, one try of 2 seconds. Fails if no answer came.
pub fn dig(ns: &str, args: &[&str]) -> anyhow::Result<Dig> {
    let mut all = vec!["dig", "@127.0.0.11", "+tries=1", "+time=2"];
    all.extend_from_slice(args);
    let output = cmd::output_in(ns, &all)?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    parse_dig(&text).with_context(|| format!("`dig {}` in {ns} got no answer: {text}", args.join(" ")))
}

fn parse_dig(text: &str) -> anyhow::Result<Dig> {
    // Over TCP after a truncated UDP answer, dig prints both: the last one counts.
    let Some(header) = text.lines().rfind(|l| l.contains("->>HEADER<<-")) else { bail!("no header") };
    let status = header.split("status: ").nth(1).and_then(|s| s.split(',').next()).context("no status")?.to_owned();
    let last = text.rfind("->>HEADER<<-").unwrap_or(0);
    let tail = &text[last..];
    let flags = tail
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .map(|l| l.split(';').next().unwrap_or("").split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut answers = Vec::new();
    if let Some(section) = tail.split(";; ANSWER SECTION:\n").nth(1) {
        for line in section.lines().take_while(|l| !l.trim().is_empty()) {
            if let Some(data) = line.split_whitespace().nth(4) {
                answers.push(data.to_owned());
            }
        }
    }
    Ok(Dig { status, flags, answers, output: text.to_owned() })
}

/// `/etc/netns/NS/resolv.conf` pointing at the embedded resolver, for processes started
/// with `ip netns exec NS`; removed on drop.
pub struct NetnsResolvConf {
    ns: String,
}

impl NetnsResolvConf {
    pub fn write(ns: &str) -> anyhow::Result<Self> {
        dns::write_netns_resolv_conf(ns, &dns::container_resolv_conf(&[]))?;
        Ok(NetnsResolvConf { ns: ns.to_owned() })
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        if let Err(e) = dns::remove_netns_resolv_conf(&self.ns) {
            eprintln!("removing the resolv.conf of {}: {e}", self.ns);
        }
    }
}

/// A query the fake upstream received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub from: SocketAddr,
    pub name: String,
    pub tcp: bool,
}

/// A tiny authoritative server for the forwarding tests, bound inside a lab namespace:
/// it answers A queries from its table, never answers names under `silent.test.`, and
/// gives NXDOMAIN for the rest. Over UDP it sets TC when the answer exceeds the query's
/// EDNS size. Stops when dropped.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    tasks: Vec<JoinHandle<()>>,
}

type Table = Arc<HashMap<String, Vec<Ipv4Addr>>>;

impl FakeUpstream {
    /// Must be called inside a tokio runtime. `table` maps lower-case names with the
    /// trailing dot ("example.test.") to addresses.
    pub fn start(ns: &str, addr: SocketAddr, table: HashMap<String, Vec<Ipv4Addr>>) -> anyhow::Result<Self> {
        let sockets = dns::bind_in_netns_at(ns, addr)?;
        let udp = tokio::net::UdpSocket::from_std(sockets.udp)?;
        let tcp = tokio::net::TcpListener::from_std(sockets.tcp)?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let table: Table = Arc::new(table);
        let tasks = vec![
            tokio::spawn(serve_udp(udp, table.clone(), received.clone())),
            tokio::spawn(serve_tcp(tcp, table, received.clone())),
        ];
        Ok(FakeUpstream { addr, received, tasks })
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The answer to `packet`, with the largest size allowed, or `None` to stay silent.
fn answer(
    packet: &[u8],
    table: &Table,
    from: SocketAddr,
    tcp: bool,
    received: &Mutex<Vec<Received>>,
) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    let query = request.queries.first()?.clone();
    let name = query.name().to_lowercase().to_ascii();
    received.lock().unwrap().push(Received { from, name: name.clone(), tcp });
    if name.ends_with("silent.test.") {
        return None;
    }
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_query(query.clone());
    match table.get(&name) {
        Some(ips) if query.query_type() == RecordType::A => {
            for ip in ips {
                response.add_answer(Record::from_rdata(query.name().clone(), 60, RData::A(rdata::A(*ip))));
            }
        }
        Some(_) => {}
        None => response.metadata.response_code = ResponseCode::NXDomain,
    }
    let max = if tcp { usize::from(u16::MAX) } else { usize::from(request.max_payload()) };
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload());
        response.set_edns(ours);
    }
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= max { Some(bytes) } else { response.truncate().to_vec().ok() }
}

async fn serve_udp(socket: tokio::net::UdpSocket, table: Table, received: Arc<Mutex<Vec<Received>>>) {
    let mut buf = vec![0u8; 4096];
    while let Ok((len, from)) = socket.recv_from(&mut buf).await {
        if let Some(reply) = answer(&buf[..len], &table, from, false, &received) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, table: Table, received: Arc<Mutex<Vec<Received>>>) {
    while let Ok((mut stream, from)) = listener.accept().await {
        let (table, received) = (table.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok(len) = stream.read_u16().await {
                let mut packet = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut packet).await.is_err() {
                    return;
                }
                let Some(reply) = answer(&packet, &table, from, true, &received) else { continue };
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Sends `count` datagrams of `make(i)` to 127.0.0.11:53 from inside `ns`, without
/// waiting for answers (the garbage tests).
pub fn spray_udp(ns: &str, count: usize, mut make: impl FnMut(usize) -> Vec<u8> + Send) -> anyhow::Result<()> {
    netns::run_in(ns, move || -> anyhow::Result<()> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        for i in 0..count {
            socket.send_to(&make(i), (dns::RESOLVER_IP, 53))?;
        }
        Ok(())
    })?
}
