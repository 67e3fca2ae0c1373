//! Scenario step 11: the stock docker CLI (Debian's 20.10) pointed at the manager drives
//! the whole cluster. Two Docker hosts (each a real dockerd, `overlay agent --docker`
//! serving it over mutual TLS), a third host with a native container, and the manager
//! on its own host serving the Engine API on a unix socket and on TCP with TLS.
//!
//! One lab for all the CLI checks (a dockerd costs seconds to start); each check is its
//! own function, named in the failure.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use overlay_tests::{
    Lab,
    cluster::{self, Daemon, Scratch, wait_for},
    cmd,
    docker::{self, Dockerd},
    engine::{self, DockerCli, EnginePki},
    etcd::Etcd,
};

const DOCKER_HOSTS: [&str; 2] = ["agt01", "agt02"];
const NATIVE_HOST: &str = "agt03";
/// The Docker host whose agent has the label `zone=east`.
const EAST_HOST: &str = "agt02";

struct Cluster<'a> {
    lab: &'a Lab,
    scratch: &'a Scratch,
    store: String,
    pki: EnginePki,
    /// Through the manager's unix socket.
    cli: DockerCli,
    socket: PathBuf,
    dockerds: Vec<Dockerd>,
    /// The agents' arguments, to start one again.
    agent_args: Vec<Vec<String>>,
    agents: Vec<Daemon>,
    manager: Option<Daemon>,
    _etcd: Etcd,
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        let started = Instant::now();
        // Containers go while the plugins still answer (addresses are released).
        for dockerd in &self.dockerds {
            dockerd.remove_all_containers();
        }
        println!("teardown: containers removed after {:.1?}", started.elapsed());
        self.manager = None;
        self.agents.clear();
        self.dockerds.clear();
        println!("teardown: daemons stopped after {:.1?}", started.elapsed());
    }
}

impl Cluster<'_> {
    fn start<'a>(lab: &'a Lab, scratch: &'a Scratch) -> anyhow::Result<Cluster<'a>> {
        let started = Instant::now();
        let etcd = Etcd::start(lab.host("store01"))?;
        let store = etcd.url("engine");
        let docker_hosts: Vec<&overlay_tests::Host> = DOCKER_HOSTS.iter().map(|h| lab.host(h)).collect();
        let pki = EnginePki::create(&scratch.path("pki"), lab.host("mgr01"), &docker_hosts)?;
        let resolver = docker::DNS_ADDRESS;
        let mut dockerds = Vec::new();
        let mut agents = Vec::new();
        let mut agent_args = Vec::new();
        for host in DOCKER_HOSTS {
            let dockerd = Dockerd::start(lab.host(host), resolver)?;
            let mut extra = dockerd.agent_args(&scratch.path(&format!("{host}-docker")));
            extra.extend(pki.agent_args(host)?);
            if host == EAST_HOST {
                extra.extend(["--label".to_owned(), "zone=east".to_owned()]);
            }
            agents.push(cluster::start_container_agent_with(scratch, &store, lab, host, &extra)?);
            agent_args.push(extra);
            dockerds.push(dockerd);
        }
        // A Docker resolver's namespace that an earlier run left on the host whose agent
        // now runs without --docker: the agent removes it.
        let stale = stale_resolver(lab);
        cmd::run(&["ip", "netns", "add", &stale])?;
        agents.push(cluster::start_container_agent(scratch, &store, lab, NATIVE_HOST)?);
        println!("start: dockerds and agents after {:.1?}", started.elapsed());
        let socket = scratch.path("docker.sock");
        let mut extra = vec![
            "--docker-api".to_owned(),
            format!("unix://{}", socket.display()),
            "--docker-api".to_owned(),
            format!("tcp://{}:{}", lab.host("mgr01").ip, engine::PORT),
        ];
        extra.extend(pki.manager_args());
        let manager = engine::start_manager(scratch, &store, lab.host("mgr01"), &extra)?;
        let cli = DockerCli::unix(&socket, &scratch.path("docker-config"));
        let all: Vec<&overlay_tests::Host> = ["agt01", "agt02", "agt03"].iter().map(|h| lab.host(h)).collect();
        let cluster = Cluster {
            lab,
            scratch,
            store,
            pki,
            cli,
            socket,
            dockerds,
            agent_args,
            agents,
            manager: Some(manager),
            _etcd: etcd,
        };
        let up =
            cluster::wait_for_list(lab.host("mgr01"), &cluster.store, &all, Duration::from_secs(30)).and_then(|_| {
                wait_for("the manager's Engine API socket", Duration::from_secs(20), || {
                    Ok(if cluster.socket.exists() { Ok(()) } else { Err("no socket yet".into()) })
                })
            });
        cluster.report(up.map(drop))?;
        println!("start: the cluster is up after {:.1?}", started.elapsed());
        Ok(cluster)
    }

    fn report(&self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        if result.is_err() {
            for daemon in self.agents.iter().chain(&self.manager) {
                eprintln!("{}", daemon.log_tail());
            }
            for dockerd in &self.dockerds {
                eprintln!("{}", dockerd.log_tail());
            }
        }
        result
    }

    fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        self.cli.run(args)
    }
}

/// The namespace of a Docker resolver on NATIVE_HOST, as its agent would name it.
fn stale_resolver(lab: &Lab) -> String {
    let prefix = cluster::container_netns_prefix(lab, lab.host(NATIVE_HOST));
    format!("{prefix}{}", overlay::docker::resolver_namespace::NETNS_SUFFIX)
}

/// Where `docker ps` says the container runs (`NODE/NAME`).
fn node_of(ps: &str, name: &str) -> Option<String> {
    ps.lines().find_map(|line| {
        let names = line.split_whitespace().last()?;
        names.strip_suffix(&format!("/{name}")).map(str::to_owned)
    })
}

fn version_and_info(c: &Cluster) -> anyhow::Result<()> {
    let stale = PathBuf::from("/run/netns").join(stale_resolver(c.lab));
    wait_for(&format!("{NATIVE_HOST}'s agent to remove {}", stale.display()), Duration::from_secs(10), || {
        Ok(if stale.exists() { Err("still there".to_owned()) } else { Ok(()) })
    })?;
    let version = c.docker(&["version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}"])?;
    if !version.starts_with("overlay/") || !version.trim().ends_with("1.41") {
        bail!("docker version through the manager: {version:?}");
    }
    let info = c.docker(&["info"])?;
    println!("$ docker info\n{info}");
    if !info.lines().any(|l| l.trim() == "Nodes: 3") {
        bail!("docker info does not show 3 nodes:\n{info}");
    }
    for host in ["agt01", "agt02", "agt03"] {
        let ip = c.lab.host(host).ip;
        if !info.lines().any(|l| l.trim() == format!("{host}: {ip}")) {
            bail!("docker info does not show {host} with {ip}:\n{info}");
        }
    }
    let healthy = info.lines().filter(|l| l.trim() == "└ Status: Healthy").count();
    if healthy != 3 || !info.contains("└ CPUs:") || !info.contains("└ Memory:") || !info.contains("kernelversion=")
    {
        bail!("docker info does not show every node Healthy with CPUs, memory and labels:\n{info}");
    }
    Ok(())
}

fn create_network(c: &Cluster) -> anyhow::Result<()> {
    let id = c.docker(&["network", "create", "-d", "overlay", "--subnet", "10.0.9.0/24", "my_network"])?;
    let id = id.trim();
    let ls = c.docker(&["network", "ls", "--no-trunc"])?;
    println!("$ docker network ls --no-trunc\n{ls}");
    let rows: Vec<&str> = ls.lines().filter(|l| l.split_whitespace().nth(1) == Some("my_network")).collect();
    if rows.len() != 1 || !rows[0].starts_with(id) || rows[0].split_whitespace().nth(2) != Some("overlay") {
        bail!("docker network ls shows my_network {} times, or not as {id} with driver overlay:\n{ls}", rows.len());
    }
    // Each node's own networks are there too, under their node's name.
    if !ls.lines().any(|l| l.split_whitespace().nth(1) == Some("agt01/host")) {
        bail!("docker network ls does not list agt01's own networks as agt01/NAME:\n{ls}");
    }
    let inspect =
        c.docker(&["network", "inspect", "-f", "{{.Driver}} {{range .IPAM.Config}}{{.Subnet}}{{end}}", "my_network"])?;
    if inspect.trim() != "overlay 10.0.9.0/24" {
        bail!("docker network inspect my_network: {inspect:?}");
    }
    let again =
        c.cli.output(&["network", "create", "-d", "overlay", "--subnet", "10.0.19.0/24", "my_network"], None)?;
    if again.success || !again.stderr.contains("already exists") {
        bail!("a second my_network was not refused: {again:?}");
    }
    let bridge = c.cli.output(&["network", "create", "local_net"], None)?;
    if bridge.success || !bridge.stderr.contains("-d overlay") {
        bail!("a bridge network through the manager was not refused with the reason: {bridge:?}");
    }
    Ok(())
}

fn run_spread(c: &Cluster) -> anyhow::Result<()> {
    for name in ["busybox01", "busybox02"] {
        c.docker(&["run", "-d", "--name", name, "--net=my_network", docker::IMAGE, "sleep", "600"])?;
    }
    cluster::overlay_ok(
        c.lab,
        NATIVE_HOST,
        &c.store,
        &["run", "--name", "native01", "--net", "my_network", "--node", NATIVE_HOST, "--", "sleep", "600"],
    )?;
    let ps = c.docker(&["ps"])?;
    println!("$ docker ps\n{ps}");
    let one = node_of(&ps, "busybox01").with_context(|| format!("docker ps does not show busybox01:\n{ps}"))?;
    let two = node_of(&ps, "busybox02").with_context(|| format!("docker ps does not show busybox02:\n{ps}"))?;
    if one == two || !DOCKER_HOSTS.contains(&one.as_str()) || !DOCKER_HOSTS.contains(&two.as_str()) {
        bail!("busybox01 on {one} and busybox02 on {two}: not spread over the Docker hosts\n{ps}");
    }
    if node_of(&ps, "native01").as_deref() != Some(NATIVE_HOST) {
        bail!("docker ps does not show the native container as {NATIVE_HOST}/native01:\n{ps}");
    }
    // network inspect lists what is attached on every host (names come once the
    // plugins have learned them from their dockerds).
    let attached = [format!("{one}/busybox01"), format!("{two}/busybox02"), format!("{NATIVE_HOST}/native01")];
    wait_for("network inspect to list every container on my_network", Duration::from_secs(15), || {
        let names = c.docker(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "my_network"])?;
        let names: Vec<&str> = names.split_whitespace().collect();
        Ok(if attached.iter().all(|a| names.contains(&a.as_str())) { Ok(()) } else { Err(format!("{names:?}")) })
    })?;
    let taken = c.cli.output(&["run", "-d", "--name", "busybox01", docker::IMAGE, "true"], None)?;
    if taken.success || !taken.stderr.contains("already in use") {
        bail!("a second busybox01 in the cluster was not refused: {taken:?}");
    }
    // A container started by hand on a node's own dockerd is the cluster's too.
    let host = DOCKER_HOSTS[0];
    c.dockerds[0].docker(&["run", "-d", "--name", "byhand01", "--net=none", docker::IMAGE, "sleep", "600"])?;
    let ps = c.docker(&["ps"])?;
    if node_of(&ps, "byhand01").as_deref() != Some(host) {
        bail!("docker ps does not show byhand01, started on {host}'s own dockerd, as {host}/byhand01:\n{ps}");
    }
    let taken = c.cli.output(&["run", "-d", "--name", "byhand01", docker::IMAGE, "true"], None)?;
    if taken.success || !taken.stderr.contains("already in use") {
        bail!("byhand01, a name taken on a node, was not refused: {taken:?}");
    }
    c.docker(&["rm", "-f", "byhand01"])?;
    // Classic Swarm's constraints pin a container; a missing image is the node's error.
    let pinned =
        c.docker(&["run", "-d", "--name", "pinned01", "-e", "constraint:node==agt02", docker::IMAGE, "sleep", "600"])?;
    let inspect = c.docker(&["inspect", "-f", "{{.Node.Name}} {{.Name}}", pinned.trim()])?;
    if inspect.trim() != "agt02 /agt02/pinned01" {
        bail!("constraint:node==agt02 placed pinned01 as {inspect:?}");
    }
    c.docker(&["rm", "-f", "pinned01"])?;
    let east = ["run", "-d", "--name", "east01", "-e", "constraint:zone==east", docker::IMAGE, "sleep", "600"];
    let east = c.docker(&east)?;
    let inspect = c.docker(&["inspect", "-f", "{{.Node.Name}}", east.trim()])?;
    if inspect.trim() != EAST_HOST {
        bail!("constraint:zone==east placed east01 on {inspect:?}, not on {EAST_HOST} (labelled zone=east)");
    }
    c.docker(&["rm", "-f", "east01"])?;
    let nowhere = c.cli.output(&["run", "-d", "-e", "constraint:zone==west", docker::IMAGE, "true"], None)?;
    if nowhere.success || !nowhere.stderr.contains("cannot place the container") {
        bail!("constraint:zone==west, which no node has, was not refused: {nowhere:?}");
    }
    let missing = c.cli.output(&["run", "-d", "-e", "constraint:node==agt01", "ovt-no-such-image", "true"], None)?;
    if missing.success || !missing.stderr.contains("agt01: No such image") {
        bail!("a missing image did not give agt01's own error: {missing:?}");
    }
    Ok(())
}

fn exec_ping_by_name(c: &Cluster) -> anyhow::Result<()> {
    let out = c.docker(&["exec", "busybox02", "ping", "-c", "3", "-W", "2", "busybox01"])?;
    if !out.contains("3 packets received") {
        bail!("busybox02 did not reach busybox01 by name across hosts:\n{out}");
    }
    let code = c.cli.output(&["exec", "busybox01", "sh", "-c", "exit 7"], None)?;
    if code.success {
        bail!("docker exec did not carry the command's exit status: {code:?}");
    }
    Ok(())
}

/// A Docker container resolves the names of its own networks only, even those of a
/// container on the same host: busybox01 (my_network) and onlyb01 (net_b) share a host.
/// net_b is internal (no way out, no default route): its containers still resolve
/// each other across hosts.
fn names_scoped_per_network(c: &Cluster) -> anyhow::Result<()> {
    let ps = c.docker(&["ps"])?;
    let host = node_of(&ps, "busybox01").context("busybox01 not listed")?;
    let other = DOCKER_HOSTS.iter().find(|h| **h != host).context("one Docker host only")?;
    c.docker(&["network", "create", "-d", "overlay", "--internal", "--subnet", "10.0.10.0/24", "net_b"])?;
    for (name, node) in [("onlyb01", host.as_str()), ("onlyb02", other)] {
        let pin = format!("constraint:node=={node}");
        c.docker(&["run", "-d", "--name", name, "--net=net_b", "-e", &pin, docker::IMAGE, "sleep", "600"])?;
    }
    let nslookup = |from: &str, name: &str| c.cli.output(&["exec", from, "nslookup", name], None);
    // The resolver answers a name of the asker's network on another host (onlyb02's
    // once its plugin has learned it from dockerd, a moment after it started) ...
    for (from, name, subnet) in [("busybox01", "busybox02", "10.0.9."), ("onlyb01", "onlyb02", "10.0.10.")] {
        wait_for(&format!("{from} to resolve {name} (its network, another host)"), Duration::from_secs(15), || {
            let seen = nslookup(from, name)?;
            Ok(if seen.success && seen.stdout.contains(subnet) { Ok(()) } else { Err(format!("{seen:?}")) })
        })?;
    }
    // ... and not a container of another network on its own host, either way.
    for (from, name) in [("busybox01", "onlyb01"), ("onlyb01", "busybox01")] {
        let hidden = nslookup(from, name)?;
        if hidden.success || hidden.stdout.contains("Address: 10.0.") {
            bail!("{from} resolves {name}, which is only on a network it is not on: {hidden:?}");
        }
    }
    // The queries went through the datapath to the resolver of their host.
    let stats =
        cluster::overlay(c.lab.host(&host), &["stats", "--pin-dir", &c.lab.host(&host).pin_dir.to_string_lossy()])?;
    let stats = String::from_utf8_lossy(&stats.stdout).into_owned();
    if !stats.lines().any(|l| l.contains("to-resolver")) || !stats.lines().any(|l| l.contains("from-resolver")) {
        bail!("{host}'s datapath counted no query to its resolver:\n{stats}");
    }
    c.docker(&["rm", "-f", "onlyb01", "onlyb02"])?;
    c.docker(&["network", "rm", "net_b"])?;
    Ok(())
}

fn stdin_round_trip(c: &Cluster) -> anyhow::Result<()> {
    let started = Instant::now();
    let out = c.cli.output(&["run", "-i", "--rm", "--net=my_network", docker::IMAGE, "cat"], Some(b"hi\n"))?;
    if !out.success || out.stdout != "hi\n" {
        bail!("echo hi | docker run -i --rm IMAGE cat through the manager: {out:?}");
    }
    println!("docker run -i --rm ... cat round-tripped stdin in {:.2?}", started.elapsed());
    Ok(())
}

/// `logs -f` follows a container to its end, `attach` joins its output until `kill`
/// ends it, `stop` reaches its node, `-it` gets a terminal, and an endpoint the manager
/// does not serve answers 501 with the reason.
fn streams_and_signals(c: &Cluster) -> anyhow::Result<()> {
    let talker = ["run", "-d", "--name", "talker01", "--net=my_network", docker::IMAGE, "sh", "-c"];
    c.docker(&[&talker[..], &["echo one; sleep 2; echo two"]].concat())?;
    let logs = c.docker(&["logs", "-f", "talker01"])?;
    if logs != "one\ntwo\n" {
        bail!("docker logs -f talker01 did not follow it to its end: {logs:?}");
    }
    c.docker(&["rm", "talker01"])?;

    // attach from another thread; the container ticks until it is killed.
    let ticks = "while :; do echo tick; sleep 0.2; done";
    c.docker(&["run", "-d", "--name", "ticker01", docker::IMAGE, "sh", "-c", ticks])?;
    let cli = c.cli.clone();
    let attached = std::thread::spawn(move || cli.output(&["attach", "--no-stdin", "ticker01"], None));
    std::thread::sleep(Duration::from_secs(3));
    c.docker(&["kill", "ticker01"])?;
    let attached = attached.join().map_err(|_| anyhow::anyhow!("the attach thread panicked"))??;
    if !attached.stdout.contains("tick\n") {
        bail!("docker attach ticker01 showed none of its output before the kill: {attached:?}");
    }
    let state = c.docker(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "ticker01"])?;
    if state.trim() != "exited 137" {
        bail!("docker kill ticker01 left it {state:?}");
    }
    c.docker(&["rm", "ticker01"])?;

    c.docker(&["run", "-d", "--name", "stopped01", docker::IMAGE, "sleep", "600"])?;
    c.docker(&["stop", "-t", "1", "stopped01"])?;
    let state = c.docker(&["inspect", "-f", "{{.State.Status}}", "stopped01"])?;
    if state.trim() != "exited" {
        bail!("docker stop stopped01 left it {state:?}");
    }
    c.docker(&["rm", "stopped01"])?;

    // A terminal through the hijacked stream, for exec -it and run --rm -it.
    for args in [
        &["exec", "-it", "busybox02", "tty"][..],
        &["run", "--rm", "-it", "--net=my_network", docker::IMAGE, "tty"][..],
    ] {
        let out = c.cli.output_tty(args)?;
        if !out.success || !out.stdout.contains("/dev/pts/") {
            bail!("docker {} through the manager got no terminal: {out:?}", args.join(" "));
        }
    }

    let volumes = c.cli.output(&["volume", "ls"], None)?;
    if volumes.success || !volumes.stderr.contains("not served by the cluster's manager") {
        bail!("docker volume ls through the manager was not answered 501 with the reason: {volumes:?}");
    }
    Ok(())
}

/// The address `name` holds on my_network, and the keys of the cluster IPAM under it.
fn address_of(c: &Cluster, name: &str) -> anyhow::Result<String> {
    let ip = c.docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name])?;
    Ok(ip.trim().to_owned())
}

fn allocated(c: &Cluster, ip: &str) -> anyhow::Result<bool> {
    let listing = cluster::list_raw(c.lab.host("mgr01"), &c.store, "v1/ipam/")?;
    Ok(listing.entries.iter().any(|e| e.key.ends_with(&format!("/addresses/{ip}"))))
}

fn network_rm_and_release(c: &Cluster) -> anyhow::Result<()> {
    let refused = c.cli.output(&["network", "rm", "my_network"], None)?;
    if refused.success || !refused.stderr.contains("active endpoints") {
        bail!("docker network rm of a network in use was not refused: {refused:?}");
    }
    let ip = address_of(c, "busybox01")?;
    if !allocated(c, &ip)? {
        bail!("busybox01's address {ip} is not in the cluster IPAM");
    }
    c.docker(&["rm", "-f", "busybox01"])?;
    wait_for(&format!("busybox01's address {ip} to be released"), Duration::from_secs(10), || {
        Ok(if allocated(c, &ip)? { Err("still allocated".into()) } else { Ok(()) })
    })?;
    let ps = c.docker(&["ps", "-a"])?;
    if node_of(&ps, "busybox01").is_some() {
        bail!("busybox01 is still listed after rm -f:\n{ps}");
    }
    // A network nothing uses goes, from every host's Docker too.
    c.docker(&["network", "create", "-d", "overlay", "--subnet", "10.0.29.0/24", "spare"])?;
    c.docker(&["network", "rm", "spare"])?;
    let ls = c.docker(&["network", "ls"])?;
    if ls.contains("spare") {
        bail!("docker network rm spare left it listed:\n{ls}");
    }
    Ok(())
}

fn tls_listener(c: &Cluster) -> anyhow::Result<()> {
    let mgr = c.lab.host("mgr01");
    let address = SocketAddr::from((mgr.ip, engine::PORT));
    let certs = c.pki.ca.docker_cert_path(&c.pki.client, &c.scratch.path("client-certs"))?;
    let client = DockerCli::tls(address, &certs, &c.lab.host("store01").ns, &c.scratch.path("docker-config"));
    let ps = client.run(&["ps"])?;
    if node_of(&ps, "busybox02").is_none() {
        bail!("docker --tlsverify -H tcp://{address} ps does not list busybox02:\n{ps}");
    }
    // Without a client certificate the handshake is refused, on the manager and on an agent.
    for target in [address, SocketAddr::from((c.lab.host("agt01").ip, engine::PORT))] {
        let ca = c.pki.ca.cert.to_string_lossy().into_owned();
        let url = format!("https://{target}/_ping");
        let out =
            cmd::output_in(&c.lab.host("store01").ns, &["curl", "-sS", "--max-time", "10", "--cacert", &ca, &url])?;
        if out.status.success() {
            bail!("{target} answered a client without a certificate: {}", String::from_utf8_lossy(&out.stdout));
        }
    }
    // The agent's endpoint is dockerd's own API for a client the CA signed.
    let agent = SocketAddr::from((c.lab.host("agt01").ip, engine::PORT));
    let direct = DockerCli::tls(agent, &certs, &c.lab.host("store01").ns, &c.scratch.path("docker-config"));
    let version = direct.run(&["version", "--format", "{{.Server.Version}}"])?;
    if version.trim().starts_with("overlay") || version.trim().is_empty() {
        bail!("agt01's engine endpoint is not its dockerd: {version:?}");
    }
    // Unauthenticated TCP beyond loopback is refused at start.
    let open =
        cluster::overlay(mgr, &["manage", "--store", &c.store, "--docker-api", &format!("tcp://{}:2377", mgr.ip)])?;
    let stderr = String::from_utf8_lossy(&open.stderr);
    if open.status.success() || !stderr.contains("without authentication") {
        bail!("overlay manage --docker-api tcp://... without TLS was not refused: {stderr}");
    }
    Ok(())
}

fn dead_host(c: &mut Cluster) -> anyhow::Result<()> {
    let ps = c.docker(&["ps"])?;
    let victim = node_of(&ps, "busybox02").context("busybox02 not listed")?;
    let index = DOCKER_HOSTS.iter().position(|h| *h == victim).context("busybox02 not on a Docker host")?;
    // A stream to the host, open when it dies, ends on its own (TCP's dead-peer
    // detection on the manager's connection), not when the CLI gives up.
    let cli = c.cli.clone();
    let (done, following) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        let out = cli.output(&["logs", "-f", "busybox02"], None);
        let _ = done.send((out, started.elapsed()));
    });
    std::thread::sleep(Duration::from_secs(1));
    // The host dies: its link is cut (packets to it are dropped), then its agent is
    // killed, whose connections thus end with no word to the manager.
    let killed = Instant::now();
    let host = c.lab.host(&victim);
    cmd::ip(&host.ns, &["link", "set", &host.interface, "down"])?;
    c.agents[index].kill()?;
    for round in 0..2 {
        let started = Instant::now();
        let ps = c.docker(&["ps", "-a"])?;
        let took = started.elapsed();
        if took > Duration::from_secs(5) {
            bail!("docker ps took {took:?} with {victim} down");
        }
        println!("$ docker ps -a   # {victim} down\n{ps}");
        let line = ps.lines().find(|l| l.ends_with(&format!("{victim}/busybox02"))).unwrap_or_default();
        if !line.contains("Host Down") {
            bail!("docker ps does not show busybox02 on a down host (round {round}):\n{ps}");
        }
        let started = Instant::now();
        let info = c.docker(&["info"])?;
        let took = started.elapsed();
        if took > Duration::from_secs(5) {
            bail!("docker info took {took:?} with {victim} down");
        }
        if round == 1 && !info.lines().any(|l| l.trim() == "Nodes: 2") {
            bail!("docker info still counts {victim} after its lease expired:\n{info}");
        }
        println!("with {victim} down (round {round}): docker ps and info answered, info in {took:.2?}");
        // Once more after its lease has expired.
        std::thread::sleep(Duration::from_secs(cluster::TTL_SECS + 1));
    }
    let limit = Duration::from_secs(30);
    let (out, took) = following
        .recv_timeout(limit.saturating_sub(killed.elapsed()))
        .with_context(|| format!("docker logs -f busybox02 still follows {limit:?} after {victim} died"))?;
    println!("docker logs -f busybox02 ended {took:.1?} after it started, {victim} dead: {out:?}");
    let exec = c.cli.output(&["exec", "busybox02", "true"], None)?;
    if exec.success || !exec.stderr.contains(&victim) {
        bail!("exec on a container of a dead node did not fail naming the node: {exec:?}");
    }
    // The host comes back: its containers are up again, and reachable.
    cmd::ip(&host.ns, &["link", "set", &host.interface, "up"])?;
    c.agents[index] = cluster::start_container_agent_with(c.scratch, &c.store, c.lab, &victim, &c.agent_args[index])?;
    wait_for(&format!("busybox02 to be up again on {victim}"), Duration::from_secs(30), || {
        let ps = c.docker(&["ps"])?;
        let line = ps.lines().find(|l| l.ends_with(&format!("{victim}/busybox02"))).unwrap_or_default().to_owned();
        Ok(if line.contains(" Up ") { Ok(()) } else { Err(format!("{line:?}")) })
    })?;
    c.docker(&["exec", "busybox02", "true"])?;
    Ok(())
}

type Step = fn(&Cluster) -> anyhow::Result<()>;

#[test]
fn the_docker_cli_drives_the_cluster_through_the_manager() -> anyhow::Result<()> {
    let lab = Lab::scenario("engine")?;
    let scratch = Scratch::new("engine")?;
    let mut c = Cluster::start(&lab, &scratch)?;
    let steps: [(&str, Step); 9] = [
        ("version and info", version_and_info),
        ("network create / ls / inspect", create_network),
        ("run -d spread over the nodes, ps as node/name", run_spread),
        ("exec ping by name across hosts", exec_ping_by_name),
        ("names scoped per network", names_scoped_per_network),
        ("run -i --rm round-trips stdin", stdin_round_trip),
        ("logs -f, attach, kill, stop, -it, 501", streams_and_signals),
        ("network rm refused in use; rm -f releases the address", network_rm_and_release),
        ("TLS listener and endpoints", tls_listener),
    ];
    let mut result = Ok(());
    for (name, step) in steps {
        let started = Instant::now();
        result = step(&c).with_context(|| format!("step: {name}"));
        println!("step {name}: {:.1?}", started.elapsed());
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = dead_host(&mut c).context("step: a dead host");
    }
    c.report(result)
}
