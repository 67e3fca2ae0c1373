//! `cargo xtask demo [--store etcd|zk]`: the reference scenario (../shared/SCENARIO.md,
//! steps 1–12) on simulated hosts, with the product's own commands and Docker's, printed
//! as a user would type them and see them; the cluster store is etcd, or ZooKeeper with
//! `--store zk`. Everything it starts is stopped and removed when it
//! ends, on success or failure.
//!
//! Each step is one function in [`STEPS`]; what later steps need from earlier ones
//! (the store's URL, the daemons, where a container was placed) is in [`Demo`].

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context, bail};
use overlay_tests::{
    Lab,
    cluster::{self, Daemon, Scratch, wait_for},
    cmd,
    docker::{self, Dockerd},
    engine::{self, DockerCli, EnginePki},
    outside::PeerLog,
    stores::{Backend, StoreServer},
};

/// The host of step 10's Docker commands (every agent runs a dockerd beside it).
const DOCKER_HOST: &str = "agt01";
const AGENTS: [&str; 3] = ["agt01", "agt02", "agt03"];
/// Step 12's outside world: a host with a TEST-NET address that only the lab's router
/// reaches (it has no route to the overlay's subnets).
const OUTSIDE: &str = "outside";
const OUTSIDE_CIDR: &str = "203.0.113.10/24";

type Step = fn(&mut Demo) -> anyhow::Result<()>;

/// The walkthrough: (number, title, what it does), in order.
const STEPS: &[(&str, &str, Step)] = &[
    ("1", "Store: etcd (or ZooKeeper) on store01, listening on 192.168.1.140", store),
    ("2", "Manager on mgr01, serving Docker's Engine API too (one CA for the cluster)", manager),
    ("3", "Agents join: the host daemon beside a dockerd on agt01, agt02, agt03", agents_join),
    ("4", "Duplicate identity: agt03 cloned from agt01 (same identity file) is refused", duplicate_identity),
    ("5", "List nodes (from any host)", list_nodes),
    ("6", "Cluster info (manager's view), right after the joins", cluster_info),
    ("7", "Create the overlay network once, from any host", create_network),
    ("8", "Run two containers from the manager: spread over the agents", run_containers),
    ("9", "Inside busybox02, ping busybox01 by name, across hosts", ping_by_name),
    ("10", "Docker: the plugin on agt01; a Docker container and native ones on one overlay", docker_step),
    ("11", "The seed's commands, through the manager: the stock docker CLI drives the cluster", seed_commands),
    ("12", "The outside world: containers get out through their host, and a published port", outside_world),
];

/// What the steps share. Dropped in order: Docker containers (while the plugin still
/// answers), dockerd, the overlay daemons, the store; the lab then deletes the namespaces.
struct Demo<'a> {
    lab: &'a Lab,
    scratch: &'a Scratch,
    backend: Backend,
    server: Option<StoreServer>,
    /// The cluster's store URL (`etcd://…/my_cluster` or `zk://…/my_cluster`).
    store: String,
    daemons: Vec<Daemon>,
    /// Each agent's dockerd, by host.
    dockerds: BTreeMap<String, Dockerd>,
    /// The cluster's certificates (step 2).
    pki: Option<EnginePki>,
    /// The docker CLI pointed at the manager's unix socket (step 2).
    cli: Option<DockerCli>,
    /// Container name → the agent it was placed on (step 8).
    placed: BTreeMap<String, String>,
}

impl Drop for Demo<'_> {
    fn drop(&mut self) {
        for dockerd in self.dockerds.values() {
            dockerd.remove_all_containers();
        }
        self.dockerds.clear();
        self.daemons.clear();
        self.server = None;
    }
}

/// `--store etcd` (the default) or `--store zk`.
fn backend() -> anyhow::Result<Backend> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] | ["--store", "etcd"] => Ok(Backend::Etcd),
        ["--store", "zk" | "zookeeper"] => Ok(Backend::ZooKeeper),
        _ => bail!("usage: overlay-demo [--store etcd|zk] (got {args:?})"),
    }
}

fn main() -> anyhow::Result<()> {
    let backend = backend()?;
    let started = std::time::Instant::now();
    println!("Simulated hosts: network namespaces joined by an underlay bridge in its own namespace.");
    let lab = Lab::scenario_builder("demo").outside(OUTSIDE, OUTSIDE_CIDR).build()?;
    for host in &lab.hosts {
        println!("  {:<8} {:<15} (netns {})", host.name, host.ip, host.ns);
    }
    println!("  ({OUTSIDE} is behind a router namespace, the other hosts' default route: step 12's outside world)");
    let scratch = Scratch::new("demo")?;
    let mut demo = Demo {
        lab: &lab,
        scratch: &scratch,
        backend,
        server: None,
        store: String::new(),
        daemons: Vec::new(),
        dockerds: BTreeMap::new(),
        pki: None,
        cli: None,
        placed: BTreeMap::new(),
    };
    let mut result = Ok(());
    for (n, title, run) in STEPS {
        println!("\n=== {n}. {title}");
        result = run(&mut demo).with_context(|| format!("step {n}, {title}"));
        if result.is_err() {
            break;
        }
    }
    if result.is_err() {
        for d in &demo.daemons {
            eprintln!("--- log of {} ---\n{}", d.name, d.log_tail());
        }
        for dockerd in demo.dockerds.values() {
            eprintln!("{}", dockerd.log_tail());
        }
    }
    println!("\n=== Tearing down the simulated hosts");
    drop(demo);
    drop(lab);
    if result.is_ok() {
        println!("The whole scenario ran in {:.1} s.", started.elapsed().as_secs_f64());
    }
    result
}

/// A command line as a user would type it: arguments with spaces in single quotes.
fn typed(args: &[&str]) -> String {
    let word = |a: &&str| if a.contains(' ') { format!("'{a}'") } else { (*a).to_owned() };
    args.iter().map(word).collect::<Vec<_>>().join(" ")
}

impl Demo<'_> {
    /// Runs `overlay ARGS` on `host` (the store option before any `--`), prints the
    /// command line and its output, and fails if it fails.
    fn overlay(&self, host: &str, args: &[&str]) -> anyhow::Result<String> {
        println!("{host}$ overlay {}", typed(args));
        let out = cluster::overlay_ok(self.lab, host, &self.store, args)?;
        print!("{out}");
        Ok(out)
    }

    fn dockerd(&self) -> anyhow::Result<&Dockerd> {
        self.dockerds.get(DOCKER_HOST).context("no dockerd runs")
    }

    /// Runs `docker ARGS` through the manager (step 11), printing it as typed on mgr01
    /// with `DOCKER_HOST` set to the manager's socket.
    fn manager_docker(&self, args: &[&str]) -> anyhow::Result<String> {
        println!("mgr01$ docker {}", typed(args));
        let out = self.cli.as_ref().context("the manager serves no Engine API")?.run(args)?;
        print!("{out}");
        Ok(out)
    }

    /// Runs `docker ARGS` against the Docker host's dockerd, printing it as typed there.
    fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        println!("{DOCKER_HOST}$ docker {}", typed(args));
        let out = self.dockerd()?.docker(args)?;
        print!("{out}");
        Ok(out)
    }

    /// A container of step 8 that runs on another host than dockerd's: (name, host).
    fn native_elsewhere(&self) -> anyhow::Result<(String, String)> {
        self.placed
            .iter()
            .find(|(_, host)| *host != DOCKER_HOST)
            .map(|(name, host)| (name.clone(), host.clone()))
            .context("step 8 placed no container away from the Docker host")
    }
}

fn store(demo: &mut Demo) -> anyhow::Result<()> {
    let server = StoreServer::start(demo.backend, demo.lab.host("store01"))?;
    demo.store = server.url("my_cluster");
    match demo.backend {
        Backend::Etcd => println!("store01$ etcd --listen-client-urls http://192.168.1.140:2379 ..."),
        Backend::ZooKeeper => {
            println!("store01$ java ... org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg");
            println!("         (zoo.cfg: clientPortAddress=192.168.1.140, clientPort=2181)");
        }
    }
    println!("store URL: {}", demo.store);
    demo.server = Some(server);
    Ok(())
}

fn manager(demo: &mut Demo) -> anyhow::Result<()> {
    let agents: Vec<&overlay_tests::Host> = AGENTS.iter().map(|n| demo.lab.host(n)).collect();
    let mgr01 = demo.lab.host("mgr01");
    let pki = EnginePki::create(&demo.scratch.path("pki"), mgr01, &agents)?;
    println!(
        "mgr01$ openssl ...   # the cluster CA signs mgr01.pem, agt01.pem ... and the operator's cert (docs/docker.md)"
    );
    let socket = demo.scratch.path("docker.sock");
    let tcp = format!("tcp://{}:{}", mgr01.ip, engine::PORT);
    let mut extra = vec!["--docker-api".to_owned(), format!("unix://{}", socket.display()), "--docker-api".into(), tcp];
    extra.extend(pki.manager_args());
    demo.daemons.push(engine::start_manager(demo.scratch, &demo.store, mgr01, &extra)?);
    println!(
        "mgr01$ overlay manage --store {} --docker-api unix://{} --docker-api tcp://{}:{} \\\n         --tls-ca ca.pem --tls-cert mgr01.pem --tls-key mgr01.key",
        demo.store,
        socket.display(),
        mgr01.ip,
        engine::PORT
    );
    demo.cli = Some(DockerCli::unix(&socket, &demo.scratch.path("docker-config")));
    demo.pki = Some(pki);
    Ok(())
}

fn agents_join(demo: &mut Demo) -> anyhow::Result<()> {
    let resolver = docker::DNS_ADDRESS;
    for name in AGENTS {
        let ip = demo.lab.host(name).ip;
        // dockerd names only the agent's resolver, which answers the cluster's names
        // and forwards the rest (docs/docker.md).
        println!("{name}$ dockerd --iptables=false --bridge=none   # resolv.conf: nameserver {resolver}");
        let dockerd = Dockerd::start(demo.lab.host(name), resolver)?;
        // The image: `docker import` of Debian's busybox-static; nothing is pulled.
        dockerd.docker(&["tag", docker::IMAGE, "busybox"])?;
        let mut extra = dockerd.agent_args(&demo.scratch.path(&format!("{name}-docker")));
        extra.extend(demo.pki.as_ref().context("no certificates")?.agent_args(name)?);
        demo.dockerds.insert(name.to_owned(), dockerd);
        println!(
            "{name}$ overlay agent --store {} --advertise {ip} --docker \\\n         --docker-tls-ca ca.pem --docker-tls-cert {name}.pem --docker-tls-key {name}.key",
            demo.store
        );
        demo.daemons.push(cluster::start_container_agent_with(demo.scratch, &demo.store, demo.lab, name, &extra)?);
    }
    let agents: Vec<&overlay_tests::Host> = AGENTS.iter().map(|n| demo.lab.host(n)).collect();
    cluster::wait_for_list(demo.lab.host("mgr01"), &demo.store, &agents, Duration::from_secs(20))?;
    Ok(())
}

fn duplicate_identity(demo: &mut Demo) -> anyhow::Result<()> {
    let clone_state = demo.scratch.path("agt03-clone-state");
    std::fs::create_dir_all(&clone_state)?;
    let original = cluster::state_dir(demo.scratch, demo.lab.host("agt01")).join("node-id");
    std::fs::copy(original, clone_state.join("node-id"))?;
    let ip = demo.lab.host("agt03").ip.to_string();
    let clone = cluster::overlay(
        demo.lab.host("agt03"),
        &[
            "agent",
            "--store",
            &demo.store,
            "--advertise",
            &ip,
            "--state-dir",
            &clone_state.to_string_lossy(),
            "--pin-dir",
            "/run/overlay/bpffs/demo-clone",
            "--metrics-addr",
            "off",
        ],
    )?;
    println!("agt03$ overlay agent --state-dir <copy of agt01's> ...");
    let message = String::from_utf8_lossy(&clone.stderr);
    println!("{}", message.lines().filter(|l| !l.contains(" INFO ")).collect::<Vec<_>>().join("\n"));
    if clone.status.success() {
        bail!("the cloned agent was not refused");
    }
    Ok(())
}

fn list_nodes(demo: &mut Demo) -> anyhow::Result<()> {
    demo.overlay("agt02", &["list"]).map(drop)
}

fn cluster_info(demo: &mut Demo) -> anyhow::Result<()> {
    let info = demo.overlay("mgr01", &["info"])?;
    let healthy = info.lines().filter(|l| l.trim_end().ends_with("Status: Healthy")).count();
    if healthy != AGENTS.len() {
        bail!("`overlay info` shows {healthy} of {} nodes Healthy", AGENTS.len());
    }
    Ok(())
}

fn create_network(demo: &mut Demo) -> anyhow::Result<()> {
    demo.overlay("mgr01", &["network", "create", "--driver", "overlay", "--subnet", "10.0.9.0/24", "my_network"])?;
    for host in ["agt01", "agt03"] {
        demo.overlay(host, &["network", "ls"])?;
    }
    Ok(())
}

fn run_containers(demo: &mut Demo) -> anyhow::Result<()> {
    for name in ["busybox01", "busybox02"] {
        demo.overlay("mgr01", &["run", "--name", name, "--net", "my_network", "--", "sleep", "3600"])?;
    }
    let ps = demo.overlay("mgr01", &["ps"])?;
    for name in ["busybox01", "busybox02"] {
        let node = ps
            .lines()
            .find_map(|l| l.split_whitespace().next()?.strip_suffix(&format!("/{name}")).map(str::to_owned))
            .with_context(|| format!("`overlay ps` does not show where {name} runs"))?;
        demo.placed.insert(name.to_owned(), node);
    }
    if demo.placed["busybox01"] == demo.placed["busybox02"] {
        bail!("both containers were placed on {}", demo.placed["busybox01"]);
    }
    Ok(())
}

fn ping_by_name(demo: &mut Demo) -> anyhow::Result<()> {
    let node2 = demo.placed["busybox02"].clone();
    demo.overlay(&node2, &["exec", "busybox02", "--", "ping", "-c", "3", "-i", "0.2", "busybox01"])?;
    println!("\nDatapath counters on {node2}:");
    let pin_dir = demo.lab.host(&node2).pin_dir.to_string_lossy().into_owned();
    let bin = overlay_tests::overlay_binary::path()?;
    let bin = bin.to_str().context("overlay path is not UTF-8")?;
    print!("{}", cmd::run_in(&demo.lab.host(&node2).ns, &[bin, "stats", "--pin-dir", &pin_dir])?);
    Ok(())
}

fn docker_step(demo: &mut Demo) -> anyhow::Result<()> {
    // The cluster network of step 7 has this subnet: the Docker network binds to it.
    demo.docker(&docker::network_create("10.0.9.0/24", "my_network"))?;
    let ls = demo.docker(&["network", "ls"])?;
    if !ls.lines().any(|l| l.split_whitespace().nth(1) == Some("my_network")) {
        bail!("`docker network ls` does not show my_network");
    }
    let networks = demo.overlay(DOCKER_HOST, &["network", "ls"])?;
    if networks.lines().filter(|l| l.contains("my_network")).count() != 1 {
        bail!("the Docker network did not bind to the cluster's my_network");
    }

    demo.docker(&["run", "-d", "--net=my_network", "--name", "busybox03", "busybox", "sleep", "3600"])?;
    let (native, native_host) = demo.native_elsewhere()?;
    println!("# {native} runs on {native_host}, a native container of step 8");
    let out = demo.docker(&["exec", "busybox03", "ping", "-c", "3", &native])?;
    if !out.contains("3 packets received") {
        bail!("busybox03 did not reach {native}");
    }

    // dockerd reports a container's name shortly after it started; the plugin then
    // publishes it. Wait (quietly) until the native container's resolver knows it.
    wait_for("busybox03's name in the cluster's DNS", Duration::from_secs(10), || {
        let answer = cluster::overlay_ok(
            demo.lab,
            &native_host,
            &demo.store,
            &["exec", &native, "--", "dig", "+short", "+tries=1", "+time=1", "busybox03"],
        )?;
        Ok(if answer.trim().is_empty() { Err("no answer yet".into()) } else { Ok(()) })
    })?;
    demo.overlay(&native_host, &["exec", &native, "--", "ping", "-c", "3", "-i", "0.2", "busybox03"])?;
    Ok(())
}

/// Where `docker ps` says `name` runs (`NODE/NAME` in the last column).
fn node_of(ps: &str, name: &str) -> Option<String> {
    ps.lines().find_map(|line| line.split_whitespace().last()?.strip_suffix(&format!("/{name}")).map(str::to_owned))
}

fn seed_commands(demo: &mut Demo) -> anyhow::Result<()> {
    println!("mgr01$ export DOCKER_HOST=unix://{}", demo.scratch.path("docker.sock").display());
    let info = demo.manager_docker(&["info"])?;
    let healthy = info.lines().filter(|l| l.trim() == "└ Status: Healthy").count();
    if healthy != AGENTS.len() {
        bail!("docker info through the manager shows {healthy} of {} nodes Healthy", AGENTS.len());
    }
    println!("# A clean slate for the seed's names: the containers and the network of steps 7-10 go,");
    println!("# native ones included, through the manager too.");
    demo.manager_docker(&["rm", "-f", "busybox01", "busybox02", "busybox03"])?;
    // The native containers' agents withdraw their endpoints a moment later.
    wait_for("my_network to be free", Duration::from_secs(15), || {
        let out = demo.cli.as_ref().context("no CLI")?.output(&["network", "rm", "my_network"], None)?;
        Ok(if out.success { Ok(()) } else { Err(out.stderr) })
    })?;
    println!("mgr01$ docker network rm my_network\nmy_network");
    // Every host's Docker drops its binding of the old network (the plugin's mirror).
    wait_for("my_network to leave the hosts' Docker", Duration::from_secs(15), || {
        for (host, dockerd) in &demo.dockerds {
            if dockerd.docker(&["network", "ls", "--format", "{{.Name}}"])?.lines().any(|l| l == "my_network") {
                return Ok(Err(format!("still on {host}")));
            }
        }
        Ok(Ok(()))
    })?;

    demo.manager_docker(&["network", "create", "-d", "overlay", "--subnet", "10.0.9.0/24", "my_network"])?;
    let ls = demo.manager_docker(&["network", "ls"])?;
    if ls.lines().filter(|l| l.split_whitespace().nth(1) == Some("my_network")).count() != 1 {
        bail!("docker network ls through the manager does not show my_network once");
    }
    for name in ["busybox01", "busybox02"] {
        demo.manager_docker(&["run", "-d", "--name", name, "--net=my_network", "busybox", "sleep", "3600"])?;
    }
    let ps = demo.manager_docker(&["ps"])?;
    let (one, two) = (node_of(&ps, "busybox01"), node_of(&ps, "busybox02"));
    let (Some(one), Some(two)) = (one, two) else { bail!("`docker ps` does not show where busybox01/02 run") };
    if one == two {
        bail!("busybox01 and busybox02 both on {one}: not spread over the agents");
    }
    demo.placed = BTreeMap::from([("busybox01".to_owned(), one), ("busybox02".to_owned(), two)]);
    let out = demo.manager_docker(&["exec", "busybox02", "ping", "-c", "3", "busybox01"])?;
    if !out.contains("3 packets received") {
        bail!("busybox02 did not reach busybox01 by name through docker exec");
    }
    println!("mgr01$ echo hi | docker run -i --rm --net=my_network busybox cat");
    let cli = demo.cli.as_ref().context("no CLI")?;
    let out = cli.output(&["run", "-i", "--rm", "--net=my_network", "busybox", "cat"], Some(b"hi\n"))?;
    print!("{}", out.stdout);
    if out.stdout != "hi\n" {
        bail!("docker run -i through the manager did not round-trip stdin: {out:?}");
    }

    // The same from another host, over TCP with the operator's client certificate.
    let pki = demo.pki.as_ref().context("no certificates")?;
    let certs = pki.ca.docker_cert_path(&pki.client, &demo.scratch.path("operator-certs"))?;
    let address = std::net::SocketAddr::from((demo.lab.host("mgr01").ip, engine::PORT));
    let remote = DockerCli::tls(address, &certs, &demo.lab.host("store01").ns, &demo.scratch.path("docker-config"));
    println!("store01$ DOCKER_CERT_PATH=~/.docker/cluster docker --tlsverify -H tcp://{address} ps");
    print!("{}", remote.run(&["ps"])?);
    Ok(())
}

fn outside_world(demo: &mut Demo) -> anyhow::Result<()> {
    let outside = demo.lab.host(OUTSIDE).clone();
    let _log = PeerLog::start(&outside.ns, outside.ip, 7000)?;
    println!("{OUTSIDE}$ # a TCP server on {}:7000 answers `hello ADDRESS:PORT`, the address it sees", outside.ip);

    // A Docker container of step 11 gets out through its host, masqueraded.
    let node = demo.placed.get("busybox01").context("step 11 placed no busybox01")?.clone();
    let node_ip = demo.lab.host(&node).ip;
    println!("# busybox01 (10.0.9.x) runs on {node} ({node_ip})");
    let nc = format!("echo hi | nc -w 3 {} 7000", outside.ip);
    let out = demo.manager_docker(&["exec", "busybox01", "sh", "-c", &nc])?;
    if !out.starts_with(&format!("hello {node_ip}:")) {
        bail!("the outside host did not see busybox01 as {node}'s address {node_ip}: {out:?}");
    }
    let out = demo.manager_docker(&["exec", "busybox01", "ping", "-c", "2", &outside.ip.to_string()])?;
    if !out.contains("2 packets received") {
        bail!("busybox01 did not get ping replies from the outside host");
    }

    // A published port: the outside reaches it at the host's address, and nothing else.
    let www = demo.scratch.path("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("index.html"), "hello from web, a container on my_network\n")?;
    let www = www.to_string_lossy().into_owned();
    let run = ["run", "--name", "web", "--net", "my_network", "-p", "8080:80", "--"];
    demo.overlay("mgr01", &[&run[..], &["/bin/busybox", "httpd", "-f", "-p", "80", "-h", www.as_str()]].concat())?;
    let ps = demo.overlay("mgr01", &["ps"])?;
    let line = ps.lines().find(|l| l.split_whitespace().next().is_some_and(|c| c.ends_with("/web")));
    let line = line.context("`overlay ps` does not show web")?;
    if !line.contains("8080->80/tcp") {
        bail!("`overlay ps` does not show web's published port: {line}");
    }
    let web_node = line.split('/').next().unwrap_or_default().to_owned();
    let web_ip = demo.lab.host(&web_node).ip;
    let get = |port: u16| {
        let url = format!("http://{web_ip}:{port}/");
        cmd::output_in(&outside.ns, &["curl", "-sS", "-m", "3", &url])
    };
    // httpd listens a moment after the container starts.
    wait_for("web's httpd", Duration::from_secs(10), || {
        let out = get(8080)?;
        Ok(if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) })
    })?;
    println!("{OUTSIDE}$ curl -sS -m 3 http://{web_ip}:8080/");
    let page = String::from_utf8_lossy(&get(8080)?.stdout).into_owned();
    print!("{page}");
    if !page.starts_with("hello from web") {
        bail!("the published port answered {page:?}");
    }
    println!("{OUTSIDE}$ curl -sS -m 3 http://{web_ip}:80/   # web's own port, not published");
    let out = get(80)?;
    print!("{}", String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        bail!("web's unpublished port 80 answered at {web_ip}");
    }

    println!("{web_node}$ overlay stats   # (its egress and published-port part)");
    let pin_dir = demo.lab.host(&web_node).pin_dir.to_string_lossy().into_owned();
    let bin = overlay_tests::overlay_binary::path()?;
    let bin = bin.to_str().context("overlay path is not UTF-8")?;
    let stats = cmd::run_in(&demo.lab.host(&web_node).ns, &[bin, "stats", "--pin-dir", &pin_dir])?;
    let egress = stats.find("EGRESS VNI").context("`overlay stats` shows no egress counters")?;
    print!("{}", &stats[egress..]);
    Ok(())
}
