//! Store clients on simulated hosts, for the network and IPAM tests and the IPAM
//! benchmark: each client is a thread that entered a host's namespace, runs its own
//! single-threaded runtime and opens its own store connection from there (the etcd of
//! the lab is reachable only through the lab's underlay).

use std::{
    future::Future,
    net::Ipv4Addr,
    sync::Barrier,
    time::{Duration, Instant},
};

use anyhow::Context;
use overlay::{
    network::{self, CreateRequest, NetworkRecord, NetworkSpec, SubnetPool, ipam::Ipam},
    shutdown::Shutdown,
    store::{self, AnyStore, LeaseId, Store, StoreConfig, TlsFiles},
};

use crate::lab::Host;

/// Runs `f` with a store connection made from `host`'s namespace, on a thread of its
/// own, and returns what it returns.
pub fn on_host<T, F, Fut>(host: &Host, url: &str, f: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce(AnyStore) -> Fut + Send,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let config = StoreConfig::new(url, &TlsFiles::default(), None, None)?;
    overlay::netns::run_in(&host.ns, move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let store = store::connect(&config, Some(Duration::from_secs(10)), &Shutdown::never())
                .await
                .with_context(|| format!("connecting to {url} from {}", host.name))?;
            f(store).await
        })
    })?
}

/// Creates a network from `host` (`overlay network create` with these options).
pub fn create_network(host: &Host, url: &str, request: &CreateRequest) -> anyhow::Result<NetworkRecord> {
    let spec = NetworkSpec::parse(request)?;
    on_host(host, url, |store| async move { Ok(network::create(&store, &spec, &SubnetPool::default()).await?) })
}

/// The request of `overlay network create --subnet SUBNET NAME`.
pub fn request(name: &str, subnet: Option<&str>) -> CreateRequest {
    CreateRequest { name: name.to_owned(), subnet: subnet.map(str::to_owned), ..CreateRequest::default() }
}

/// One allocation as a client saw it.
#[derive(Clone, Debug)]
pub struct Allocated {
    pub host: String,
    pub endpoint: String,
    pub address: Ipv4Addr,
    pub latency: Duration,
}

/// What [`allocate_concurrently`] measured.
pub struct Run {
    pub allocated: Vec<Allocated>,
    /// From the moment every client was connected to the last allocation.
    pub elapsed: Duration,
    /// Each client's lease, in the order of the hosts.
    pub leases: Vec<LeaseId>,
}

/// One client per host, all connected before any starts: each grants itself a lease
/// (as a node would) and makes `per_client` allocations in `network`, `in_flight` at a
/// time, with endpoint IDs `TAG-HOST-N`. Fails on the first error of any client.
pub fn allocate_concurrently(
    hosts: &[&Host],
    url: &str,
    network: &str,
    tag: &str,
    per_client: usize,
    in_flight: usize,
) -> anyhow::Result<Run> {
    let (results, elapsed) = at_once(
        hosts,
        url,
        |_, store| async move {
            let lease = store.grant_lease(Duration::from_secs(60)).await?;
            let ipam = Ipam::new(store);
            // Warm the network cache so that every client starts alike.
            ipam.network(network, false).await?;
            Ok((ipam, lease))
        },
        |i, (ipam, lease)| client(ipam, lease, hosts[i], network, tag, per_client, in_flight),
    )?;
    let mut run = Run { allocated: Vec::new(), elapsed, leases: Vec::new() };
    for (host, result) in hosts.iter().zip(results) {
        let (allocated, lease) = result.with_context(|| format!("client on {}", host.name))?;
        run.allocated.extend(allocated);
        run.leases.push(lease);
    }
    Ok(run)
}

/// Runs one client per host at the same moment: each connects to the store from its
/// host's namespace and runs `setup`; once every client is set up, all run `run` at
/// once. Returns each client's result, in the order of `hosts`, and the time from the
/// start to the end of the last client.
pub fn at_once<S, T, FS, FutS, FR, FutR>(
    hosts: &[&Host],
    url: &str,
    setup: FS,
    run: FR,
) -> anyhow::Result<(Vec<anyhow::Result<T>>, Duration)>
where
    T: Send,
    FS: Fn(usize, AnyStore) -> FutS + Sync,
    FutS: Future<Output = anyhow::Result<S>>,
    FR: Fn(usize, S) -> FutR + Sync,
    FutR: Future<Output = anyhow::Result<T>>,
{
    let config = StoreConfig::new(url, &TlsFiles::default(), None, None)?;
    let start = Barrier::new(hosts.len() + 1);
    let (start, config, setup, run) = (&start, &config, &setup, &run);
    let (results, elapsed) = std::thread::scope(|scope| {
        let workers: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                scope.spawn(move || {
                    overlay::netns::run_in(&host.ns, move || {
                        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                        let ready = runtime.map_err(anyhow::Error::from).and_then(|runtime| {
                            let state = runtime.block_on(async {
                                let store = store::connect(config, Some(Duration::from_secs(10)), &Shutdown::never())
                                    .await
                                    .with_context(|| format!("connecting to {url} from {}", host.name))?;
                                setup(i, store).await
                            })?;
                            Ok((runtime, state))
                        });
                        // Every client reaches the barrier, ready or not, so none waits forever.
                        start.wait();
                        let (runtime, state) = ready?;
                        runtime.block_on(run(i, state))
                    })?
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let results: Vec<anyhow::Result<T>> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a client panicked"))))
            .collect();
        (results, began.elapsed())
    });
    Ok((results, elapsed))
}

/// One client's allocations, `in_flight` at a time.
async fn client(
    ipam: Ipam<AnyStore>,
    lease: LeaseId,
    host: &Host,
    network: &str,
    tag: &str,
    per_client: usize,
    in_flight: usize,
) -> anyhow::Result<(Vec<Allocated>, LeaseId)> {
    let mut allocated = Vec::with_capacity(per_client);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..per_client {
        if tasks.len() >= in_flight.max(1)
            && let Some(done) = tasks.join_next().await
        {
            allocated.push(done??);
        }
        let ipam = ipam.clone();
        let (network, host) = (network.to_owned(), host.name.clone());
        let endpoint = format!("{tag}-{host}-{n}");
        let node = format!("node-{host}");
        tasks.spawn(async move {
            let began = Instant::now();
            let address = ipam.allocate(&network, &endpoint, &node, lease, None).await?;
            anyhow::Ok(Allocated { host, endpoint, address, latency: began.elapsed() })
        });
    }
    while let Some(done) = tasks.join_next().await {
        allocated.push(done??);
    }
    Ok((allocated, lease))
}

/// The `q`-quantile (0..=1) of the latencies, in milliseconds.
pub fn quantile_ms(allocated: &[Allocated], q: f64) -> f64 {
    let mut latencies: Vec<Duration> = allocated.iter().map(|a| a.latency).collect();
    latencies.sort();
    if latencies.is_empty() {
        return 0.0;
    }
    let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
    latencies[index].as_secs_f64() * 1000.0
}

/// Registers a node record named `name` under a new lease of `ttl` (as an agent's join
/// does, without keeping the lease alive) and returns the node ID and the lease.
pub async fn register_node(
    store: &AnyStore,
    name: &str,
    address: Ipv4Addr,
    ttl: Duration,
) -> anyhow::Result<(String, LeaseId)> {
    let id = format!("{:032x}", rand::random::<u128>());
    let lease = store.grant_lease(ttl).await?;
    let record = overlay::cluster::NodeRecord {
        id: id.clone(),
        name: name.to_owned(),
        address: address.into(),
        hostname: name.to_owned(),
        kernel_version: "test".into(),
        os: "test".into(),
        cpus: 1,
        memory_bytes: 1 << 30,
        labels: Default::default(),
        agent_version: "test".into(),
        containers: 0,
        heartbeat_ms: 1000,
        ttl_secs: ttl.as_secs(),
        started_at: 0,
        engine: None,
    };
    store.put(&overlay::cluster::keys::node(&id), serde_json::to_vec(&record)?, Some(lease)).await?;
    Ok((id, lease))
}
