//! A bounded DNS load generator for the resolver benchmark: UDP queries for one name to
//! 127.0.0.11:53 from inside a container namespace, a window of queries in flight per
//! thread, stopped by a query count or a duration, whichever comes first.
//!
//! Only ever aimed at the embedded resolver inside a lab namespace.

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use hickory_proto::{
    op::{Header, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};
use overlay::{dns::RESOLVER_IP, netns};

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The name asked (A), e.g. a container's name.
    pub name: String,
    /// At most this many queries in all.
    pub max_queries: u64,
    /// And for at most this long.
    pub max_duration: Duration,
    /// Client threads, each with its own socket.
    pub threads: usize,
    /// Queries in flight per thread.
    pub window: usize,
}

impl LoadConfig {
    pub fn new(name: &str) -> Self {
        LoadConfig {
            name: name.to_owned(),
            max_queries: 200_000,
            max_duration: Duration::from_secs(10),
            threads: 2,
            window: 16,
        }
    }
}

/// What was measured.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub sent: u64,
    /// Answers with NOERROR and at least one record.
    pub answered: u64,
    /// Other answers (errors, empty) and queries with no answer within a second.
    pub failed: u64,
    pub elapsed: Duration,
    pub queries_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// A query gets no answer within this: counted as failed, its slot reused.
const LOST_AFTER: Duration = Duration::from_secs(1);

/// Runs `config` against the resolver of container namespace `ns`.
pub fn run(ns: &str, config: &LoadConfig) -> anyhow::Result<LoadReport> {
    ensure!(config.threads >= 1 && config.window >= 1, "at least one thread and one query in flight");
    let name = Name::from_ascii(format!("{}.", config.name.trim_end_matches('.')))?;
    let mut query = Message::new(0, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name, RecordType::A));
    let template = query.to_vec()?;
    let per_thread = config.max_queries.div_ceil(config.threads as u64);
    let started = Instant::now();
    let deadline = started + config.max_duration;
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..config.threads)
            .map(|_| {
                let template = &template;
                scope.spawn(move || netns::run_in(ns, || worker(template, per_thread, config.window, deadline)))
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
    });
    let elapsed = started.elapsed();
    let (mut sent, mut answered, mut failed, mut latencies) = (0, 0, 0, Vec::new());
    for result in results {
        let stats = result.map_err(|_| anyhow::anyhow!("a load thread panicked"))???;
        sent += stats.sent;
        answered += stats.answered;
        failed += stats.failed;
        latencies.extend(stats.latencies);
    }
    latencies.sort();
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((latencies.len() as f64) * p).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    Ok(LoadReport {
        sent,
        answered,
        failed,
        elapsed,
        queries_per_second: answered as f64 / elapsed.as_secs_f64(),
        p50: percentile(0.50),
        p99: percentile(0.99),
    })
}

struct Stats {
    sent: u64,
    answered: u64,
    failed: u64,
    latencies: Vec<Duration>,
}

/// One socket, `window` queries in flight, ids 0..window (the id says which slot).
fn worker(template: &[u8], max: u64, window: usize, deadline: Instant) -> anyhow::Result<Stats> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect((RESOLVER_IP, 53)).context("the resolver must be served in this namespace")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut stats = Stats { sent: 0, answered: 0, failed: 0, latencies: Vec::with_capacity(max.min(1 << 20) as usize) };
    let mut in_flight: Vec<Option<Instant>> = vec![None; window];
    let mut packet = template.to_vec();
    let send = |slot: usize, packet: &mut Vec<u8>, stats: &mut Stats, in_flight: &mut Vec<Option<Instant>>| {
        // The template's id, patched: the slot number, so answers find their send time.
        packet[..2].copy_from_slice(&(slot as u16).to_be_bytes());
        if socket.send(packet).is_ok() {
            in_flight[slot] = Some(Instant::now());
            stats.sent += 1;
        }
    };
    for slot in 0..window {
        if stats.sent < max {
            send(slot, &mut packet, &mut stats, &mut in_flight);
        }
    }
    let mut buf = [0u8; 1500];
    let mut stopping = false;
    while in_flight.iter().any(Option::is_some) {
        let now = Instant::now();
        if now >= deadline {
            stopping = true;
        }
        match socket.recv(&mut buf) {
            Ok(len) => {
                let mut decoder = BinDecoder::new(&buf[..len]);
                let Ok(header) = Header::read(&mut decoder) else { continue };
                let slot = usize::from(header.metadata.id);
                let Some(sent_at) = in_flight.get_mut(slot).and_then(Option::take) else { continue };
                if header.metadata.response_code == ResponseCode::NoError && header.counts.answers > 0 {
                    stats.answered += 1;
                    stats.latencies.push(sent_at.elapsed());
                } else {
                    stats.failed += 1;
                }
                if !stopping && stats.sent < max {
                    send(slot, &mut packet, &mut stats, &mut in_flight);
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("receiving answers"),
        }
        for slot in 0..window {
            if in_flight[slot].is_some_and(|at| at.elapsed() > LOST_AFTER) {
                in_flight[slot] = None;
                stats.failed += 1;
                if !stopping && stats.sent < max {
                    send(slot, &mut packet, &mut stats, &mut in_flight);
                }
            }
        }
        // Past the deadline by more than the loss timeout: give up on the rest.
        if now > deadline + LOST_AFTER {
            stats.failed += in_flight.iter().filter(|s| s.is_some()).count() as u64;
            break;
        }
    }
    Ok(stats)
}
