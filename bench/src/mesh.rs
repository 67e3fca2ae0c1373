//! The mesh figure of `cargo xtask bench`: many simulated hosts, each with a real agent,
//! a few containers started on each with `overlay run`, and the time from the first run
//! until
//! - every agent's datapath holds every container of the other hosts (programmed), and
//! - every container answers an ICMP echo from every other container (all ordered pairs).

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{ErrorKind, Read},
    net::{Ipv4Addr, SocketAddrV4},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail, ensure};
use overlay::datapath::PinnedRemotes;
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use overlay_tests::{
    Host, Lab,
    cluster::{self, Daemon, Scratch},
    cmd,
    etcd::Etcd,
};

use crate::agents::rss_mib;

/// `overlay run` commands in flight at once: each one waits for its container to run,
/// so a few overlap the agents' work without burying a 2-core machine in processes.
const RUN_WORKERS: usize = 4;
/// Agents started together before waiting for them to join: 20 datapaths loading at
/// once would only make each join slower.
const AGENT_BATCH: usize = 5;
/// The agents' lease. While 20 agents start containers on 2 cores a keep-alive can be
/// late by seconds; a lapsed lease removes that host's containers from every peer,
/// which would be measured as slow convergence rather than a loaded machine.
const AGENT_TTL_SECS: u64 = 15;
/// Source containers probed at once, and how long each waits for its echo replies.
const PROBE_SOURCES: usize = 8;
const ECHO_WAIT: Duration = Duration::from_secs(1);
/// Containers per probe group: a tile of two groups makes at most 2 x 10 x 10 kernel
/// neighbour entries (see [`probe`]).
const PROBE_GROUP: usize = 10;
/// How long the datapaths may take to hold everything, and how long unanswered pairs
/// are probed again after the first pass.
const PROGRAM_LIMIT: Duration = Duration::from_secs(180);
const REPROBE_LIMIT: Duration = Duration::from_secs(30);
/// The largest mesh: its pairs grow with the square of the containers.
const MAX_HOSTS: usize = 100;
const MAX_CONTAINERS: usize = 250;
const NETWORK: &str = "mesh";
const SUBNET: &str = "10.40.0.0/16";

#[derive(Clone, Debug, Serialize)]
pub struct MeshConvergence {
    pub hosts: usize,
    pub containers: usize,
    /// First `overlay run` → the last one returned (its container runs).
    pub runs_seconds: f64,
    /// First `overlay run` → every agent's datapath holds every remote container.
    pub programmed_seconds: f64,
    /// First `overlay run` → every ordered pair has answered; `None` if some never did.
    pub reachable_seconds: Option<f64>,
    /// One pass over all pairs (part of `reachable_seconds`).
    pub first_pass_seconds: f64,
    pub pairs_checked: usize,
    /// Pairs that did not answer in the first pass over all pairs.
    pub pairs_failed_first_pass: usize,
    /// Pairs that never answered, also when probed again: 0 for a pass.
    pub pairs_failed: usize,
    /// The largest resident memory among the agents, once everything was reachable.
    pub agent_rss_max_mib: f64,
}

impl std::fmt::Display for MeshConvergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mesh: {} hosts x {} containers: all remote endpoints programmed everywhere {:.2} s after the first run \
             (the last run returned after {:.2} s), ",
            self.hosts,
            self.containers / self.hosts.max(1),
            self.programmed_seconds,
            self.runs_seconds
        )?;
        match self.reachable_seconds {
            Some(seconds) => write!(
                f,
                "all {} pairs reachable {seconds:.2} s after (one pass over the pairs takes {:.2} s)",
                self.pairs_checked, self.first_pass_seconds
            )?,
            None => write!(f, "{} of {} pairs NOT reachable", self.pairs_failed, self.pairs_checked)?,
        }
        write!(f, "; agents' RSS max {:.1} MiB", self.agent_rss_max_mib)
    }
}

/// A container the mesh started, as `overlay run` reported it.
#[derive(Clone, Debug)]
struct Placed {
    host: usize,
    ns: String,
    ip: Ipv4Addr,
    /// When its `overlay run` returned.
    returned: Instant,
}

fn host_name(index: usize) -> String {
    format!("h{:02}", index + 1)
}

/// Builds a lab of `hosts` agent hosts (h01, h02, ... at 192.168.1.11, .12, ...) plus a
/// store and a manager host, starts `per_host` containers on each and measures.
pub fn run(hosts: usize, per_host: usize) -> anyhow::Result<MeshConvergence> {
    ensure!((2..=MAX_HOSTS).contains(&hosts), "the mesh needs 2 to {MAX_HOSTS} hosts, not {hosts}");
    ensure!(
        per_host >= 1 && hosts * per_host <= MAX_CONTAINERS,
        "the mesh runs 1 to {MAX_CONTAINERS} containers in all, not {hosts} x {per_host}"
    );
    let names: Vec<String> = (0..hosts).map(host_name).collect();
    let mut builder = Lab::builder("mesh").host("store01", "192.168.1.140/24").host("mgr01", "192.168.1.121/24");
    for (i, name) in names.iter().enumerate() {
        builder = builder.host(name, &format!("192.168.1.{}/24", 11 + i));
    }
    let lab = builder.build()?;
    let scratch = Scratch::new("mesh")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let store = etcd.url("mesh");
    let manager = cluster::start_manager(&scratch, &store, lab.host("mgr01"))?;
    // Declared after the lab: dropped (killed) before the lab deletes their namespaces,
    // on every exit path.
    let mut agents: Vec<Daemon> = Vec::new();
    let mut figures = None;
    let outcome = (|| -> anyhow::Result<()> {
        for batch in names.chunks(AGENT_BATCH) {
            for name in batch {
                agents.push(cluster::start_container_agent_ttl(&scratch, &store, &lab, name, AGENT_TTL_SECS)?);
            }
            let up: Vec<&Host> = names[..agents.len()].iter().map(|n| lab.host(n)).collect();
            cluster::wait_for_list(lab.host("store01"), &store, &up, Duration::from_secs(60))?;
        }
        figures = Some(measure(&lab, &store, &names, per_host, &agents)?);
        Ok(())
    })();
    let mut daemons: Vec<&Daemon> = agents.iter().collect();
    daemons.push(&manager);
    cluster::report(outcome, &daemons, &etcd.logs())?;
    figures.context("the mesh measured nothing")
}

fn measure(
    lab: &Lab,
    store: &str,
    names: &[String],
    per_host: usize,
    agents: &[Daemon],
) -> anyhow::Result<MeshConvergence> {
    cluster::overlay_ok(lab, &names[0], store, &["network", "create", "--subnet", SUBNET, NETWORK])?;
    let inspect: serde_json::Value =
        serde_json::from_str(&cluster::overlay_ok(lab, &names[0], store, &["network", "inspect", NETWORK])?)?;
    let vni = inspect["vni"].as_u64().context("no VNI in network inspect")? as u32;
    let remotes = names.iter().map(|n| open_remotes(lab, n)).collect::<anyhow::Result<Vec<_>>>()?;

    // Round-robin over the hosts, so every host gets its first container early.
    let jobs: Vec<(usize, String)> =
        (1..=per_host).flat_map(|j| names.iter().enumerate().map(move |(h, n)| (h, format!("{n}-c{j}")))).collect();
    let expected = per_host * (names.len() - 1);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    let (placed, programmed) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..RUN_WORKERS)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<Vec<Placed>> {
                    let mut mine = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let Some((host, name)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        match cluster::run_container(lab, store, &names[*host], name, NETWORK, &["--timeout", "60s"]) {
                            Ok((ns, ip)) => mine.push(Placed { host: *host, ns, ip, returned: Instant::now() }),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(mine)
                })
            })
            .collect();
        let programmed = wait_programmed(&remotes, expected, &failed);
        if programmed.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        let mut placed = Vec::new();
        for worker in workers {
            placed.extend(worker.join().map_err(|_| anyhow!("an `overlay run` worker panicked"))??);
        }
        anyhow::Ok((placed, programmed?))
    })?;
    let runs_done = placed.iter().map(|p| p.returned).max().unwrap_or(started);

    // The counts matched; now check they are the right containers.
    for (h, table) in remotes.iter().enumerate() {
        let missing: Vec<Ipv4Addr> =
            placed.iter().filter(|p| p.host != h && !table.contains(vni, p.ip)).map(|p| p.ip).collect();
        ensure!(missing.is_empty(), "{}'s datapath lacks remote containers {missing:?}", names[h]);
    }

    // Every container pings every other one; pairs that got no reply are probed again for
    // a while.
    let mut pending: BTreeSet<Pair> =
        (0..placed.len()).flat_map(|s| (0..placed.len()).filter(move |d| *d != s).map(move |d| (s, d))).collect();
    let pairs_checked = pending.len();
    let pass = Instant::now();
    pending = probe(&placed, &pending)?;
    let first_pass_seconds = pass.elapsed().as_secs_f64();
    let pairs_failed_first_pass = pending.len();
    let reprobe_until = Instant::now() + REPROBE_LIMIT;
    while !pending.is_empty() && Instant::now() < reprobe_until {
        std::thread::sleep(Duration::from_millis(500));
        pending = probe(&placed, &pending)?;
    }
    let reachable = pending.is_empty().then(|| started.elapsed().as_secs_f64());
    for (source, destination) in pending.iter().take(20) {
        eprintln!("mesh: {} got no reply from {}", placed[*source].ns, placed[*destination].ip);
    }

    let mut agent_rss_max_mib = 0.0_f64;
    for agent in agents {
        let pid = agent.pid().with_context(|| format!("{}'s agent is not running", agent.name))?;
        agent_rss_max_mib = agent_rss_max_mib.max(rss_mib(pid)?);
    }
    Ok(MeshConvergence {
        hosts: names.len(),
        containers: placed.len(),
        runs_seconds: runs_done.duration_since(started).as_secs_f64(),
        programmed_seconds: programmed.duration_since(started).as_secs_f64(),
        reachable_seconds: reachable,
        first_pass_seconds,
        pairs_checked,
        pairs_failed_first_pass,
        pairs_failed: pending.len(),
        agent_rss_max_mib,
    })
}

/// The remote endpoint table `host`'s agent pinned; it appears when the agent has
/// loaded its datapath, which may come after it joined.
fn open_remotes(lab: &Lab, host: &str) -> anyhow::Result<PinnedRemotes> {
    let (remotes, _) = cluster::wait_for(&format!("{host}'s pinned datapath"), Duration::from_secs(30), || {
        Ok(PinnedRemotes::open(&lab.host(host).pin_dir).map_err(|e| e.to_string()))
    })?;
    Ok(remotes)
}

/// Polls the datapaths' remote tables until each holds `expected` entries (it starts
/// empty: the lab's pin directories are new), and returns that moment. Gives up when a
/// run failed or after [`PROGRAM_LIMIT`].
fn wait_programmed(remotes: &[PinnedRemotes], expected: usize, failed: &AtomicBool) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + PROGRAM_LIMIT;
    loop {
        let counts: Vec<usize> = remotes.iter().map(PinnedRemotes::len).collect();
        if counts.iter().all(|c| *c >= expected) {
            return Ok(Instant::now());
        }
        if failed.load(Ordering::Relaxed) {
            bail!("an `overlay run` failed; the datapaths held {counts:?} of {expected} remote endpoints each");
        }
        if Instant::now() > deadline {
            bail!("after {PROGRAM_LIMIT:?} the datapaths hold {counts:?} of {expected} remote endpoints each");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A source and a destination, as indexes into the placed containers.
type Pair = (usize, usize);

/// Sends one echo request for every pair and returns the pairs that got no reply.
///
/// The kernel keeps one neighbour (ARP) table for all namespaces of the machine, and
/// refuses new entries beyond `gc_thresh3` (1024 by default) until older ones are five
/// seconds old: 100 containers that each resolve their 99 peers would hold 9,900 (and
/// starve every other lab on the machine). Real hosts each have their own table; here
/// the pairs are probed by tiles of two groups of [`PROBE_GROUP`] containers, both
/// directions at once (the entries one direction makes serve the other), and the
/// tile's entries are flushed before the next tile. Flushing only empties a cache: the
/// datapath answers ARP.
fn probe(placed: &[Placed], pairs: &BTreeSet<Pair>) -> anyhow::Result<BTreeSet<Pair>> {
    let group = |i: usize| i / PROBE_GROUP;
    let mut tiles: BTreeMap<(usize, usize), BTreeMap<usize, Vec<usize>>> = BTreeMap::new();
    for &(source, destination) in pairs {
        let (a, b) = (group(source), group(destination));
        tiles.entry((a.min(b), a.max(b))).or_default().entry(source).or_default().push(destination);
    }
    let mut failed = BTreeSet::new();
    for sources in tiles.values() {
        let sources: Vec<(&usize, &Vec<usize>)> = sources.iter().collect();
        let lost = parallel(&sources, PROBE_SOURCES, |(source, destinations)| {
            let ips: Vec<Ipv4Addr> = destinations.iter().map(|d| placed[*d].ip).collect();
            let lost = echo_each(&placed[**source].ns, &ips)?;
            Ok(destinations
                .iter()
                .filter(|d| lost.contains(&placed[**d].ip))
                .map(|d| (**source, *d))
                .collect::<Vec<Pair>>())
        });
        let involved: BTreeSet<usize> =
            sources.iter().flat_map(|(source, destinations)| destinations.iter().chain([*source])).copied().collect();
        let involved: Vec<usize> = involved.into_iter().collect();
        parallel(&involved, PROBE_SOURCES, |i| cmd::ip(&placed[*i].ns, &["neigh", "flush", "dev", "eth0"]))?;
        failed.extend(lost?.into_iter().flatten());
    }
    Ok(failed)
}

/// `work` on each item, by `workers` threads; the results in the items' order, or the
/// first error.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> anyhow::Result<R> + Sync,
) -> anyhow::Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let results = std::thread::scope(|s| {
        let threads: Vec<_> = (0..workers.min(items.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { return mine };
                        mine.push((i, work(item)));
                    }
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().map_err(|_| anyhow!("a worker thread panicked"))).collect::<Vec<_>>()
    });
    let mut all = Vec::new();
    for thread in results {
        all.extend(thread?);
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, result)| result).collect()
}

/// What `ping -c 1 -W 1` does for each of `ips`, from one raw ICMP socket in `ns`: one
/// echo request each (through the kernel's routing and ARP, as ping's), then up to
/// [`ECHO_WAIT`] for the replies. Returns the addresses that did not answer. Thousands
/// of ping processes would make the probe, not the mesh, what is measured.
fn echo_each(ns: &str, ips: &[Ipv4Addr]) -> anyhow::Result<Vec<Ipv4Addr>> {
    overlay::netns::run_in(ns, || -> anyhow::Result<Vec<Ipv4Addr>> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
        let id: u16 = rand::random();
        for (seq, ip) in ips.iter().enumerate() {
            socket.send_to(&echo_request(id, seq as u16), &SocketAddrV4::new(*ip, 0).into())?;
        }
        let mut waiting: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
        let deadline = Instant::now() + ECHO_WAIT;
        let mut packet = [0u8; 1500];
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let len = match (&socket).read(&mut packet) {
                Ok(len) => len,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(e.into()),
            };
            if let Some(from) = echo_reply_from(&packet[..len], id) {
                waiting.remove(&from);
            }
        }
        Ok(waiting.into_iter().collect())
    })?
    .with_context(|| format!("probing from {ns}"))
}

/// An ICMP echo request (type 8) with 8 bytes of payload; the kernel adds the IP header.
fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(b"ovt-mesh");
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    icmp
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The sender of `packet` (IPv4 header and ICMP, as a raw socket reads it) if it is an
/// echo reply (type 0) to our identifier.
fn echo_reply_from(packet: &[u8], id: u16) -> Option<Ipv4Addr> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    let icmp = packet.get(header_len..)?;
    let source: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    (icmp.first() == Some(&0) && icmp.get(4..6)? == id.to_be_bytes()).then_some(Ipv4Addr::from(source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let request = echo_request(0x1234, 7);
        assert_eq!(checksum(&request), 0);
        assert_eq!(&request[..2], &[8, 0]);
    }

    #[test]
    fn parses_an_echo_reply() {
        let mut packet = vec![0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 10, 40, 1, 2, 10, 40, 1, 3];
        packet.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 7]);
        assert_eq!(echo_reply_from(&packet, 0x1234), Some(Ipv4Addr::new(10, 40, 1, 2)));
        assert_eq!(echo_reply_from(&packet, 0x4321), None);
        packet[20] = 8;
        assert_eq!(echo_reply_from(&packet, 0x1234), None);
    }
}
