//! The agent's faults: forwarding goes on while it is killed and restarted and while the
//! store is down; a dead host's containers leave every peer's tables when its lease
//! expires; `--cleanup` takes a host's overlay apart.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::bail;
use overlay_tests::{
    Lab,
    cluster::{self, Daemon, Scratch},
    cmd, datapath,
    etcd::Etcd,
    traffic,
};

/// `overlay run --node NODE` on net1, returning the container's namespace and address.
fn run_on(lab: &Lab, store: &str, node: &str, name: &str) -> anyhow::Result<(String, std::net::Ipv4Addr)> {
    cluster::run_container(lab, store, node, name, "net1", &[])
}

/// The program the agent attaches at the underlay interface's TCX ingress.
const UNDERLAY_PROGRAM: &str = "overlay_from_underlay";

/// The agents' lease in the restart test.
const TTL_SECS: u64 = 8;

#[test]
fn forwarding_survives_agent_restart_store_outage_and_host_death() -> anyhow::Result<()> {
    let lab = Lab::builder("faults")
        .host("store01", "192.168.1.140/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.1.142/24")
        .host("agt03", "192.168.1.143/24")
        .build()?;
    let scratch = Scratch::new("faults")?;
    let mut etcd = Etcd::start(lab.host("store01"))?;
    let store = etcd.url("faults");
    let _manager = cluster::start_manager(&scratch, &store, lab.host("store01"))?;
    // The lease outlasts the agent's outage below (1.5 s) and its restart, with seconds
    // to spare on a slow machine: an agent away for longer than its TTL is dead to its
    // peers, which then rightly drop its containers.
    let start = |name: &str| cluster::start_container_agent_ttl(&scratch, &store, &lab, name, TTL_SECS);
    let mut agents: Vec<Daemon> = Vec::new();
    for name in ["agt01", "agt02", "agt03"] {
        agents.push(start(name)?);
    }
    let hosts: Vec<&overlay_tests::Host> = ["agt01", "agt02", "agt03"].iter().map(|n| lab.host(n)).collect();
    cluster::wait_for_list(lab.host("store01"), &store, &hosts, Duration::from_secs(20))?;

    let result = (|| -> anyhow::Result<()> {
        cluster::overlay_ok(&lab, "agt01", &store, &["network", "create", "--subnet", "10.0.7.0/24", "net1"])?;
        let (_, ip1) = run_on(&lab, &store, "agt01", "c1")?;
        let (ns2, _) = run_on(&lab, &store, "agt02", "c2")?;
        let (_, ip3) = run_on(&lab, &store, "agt03", "c3")?;
        traffic::ping_ok(&ns2, ip1, 2)?;

        // 1. A continuous flow c2 -> c1 while agt01's agent is SIGKILLed and restarted.
        // Any loss fails. A ping that ends without its statistics (it was stopped, so
        // it measured nothing) is reported and measured once more.
        for attempt in 1..=2 {
            let flow = Command::new("ip")
                .args(["netns", "exec", &ns2, "ping", "-q", "-c", "600", "-i", "0.01", "-W", "1", &ip1.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            std::thread::sleep(Duration::from_millis(1000));
            agents[0].kill()?;
            std::thread::sleep(Duration::from_millis(1500));
            agents[0] = start("agt01")?;
            let out = flow.wait_with_output()?;
            let summary = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !summary.contains("packets transmitted") && attempt == 1 {
                eprintln!("ping ended without statistics ({}): {summary} {stderr}; measuring again", out.status);
                continue;
            }
            eprintln!("flow across the restart: {summary}");
            anyhow::ensure!(
                summary.contains("600 received"),
                "packets lost across the agent restart ({}): {summary} {stderr}",
                out.status
            );
            break;
        }
        // The restarted agent adopted its container: it still answers, and rm works.
        traffic::ping_ok(&ns2, ip1, 2)?;

        // 2. The store goes away: forwarding goes on with the last known state.
        etcd.stop()?;
        traffic::ping_ok(&ns2, ip1, 5)?;
        traffic::ping_ok(&ns2, ip3, 5)?;
        etcd.start_again()?;
        // ...and after it returns, a new container converges without operator action.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (ns4, ip4) = loop {
            match run_on(&lab, &store, "agt01", "c4") {
                Ok(found) => break found,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("run after the store came back: {e:#}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        };
        traffic::ping_ok(&ns2, ip4, 2)?;
        traffic::ping_ok(&ns4, ip1, 2)?;

        // 3. agt03 dies: when its lease expires its container leaves agt02's tables.
        agents[2].kill()?;
        let started = Instant::now();
        loop {
            let reply = traffic::ping(&ns2, ip3, 1, "0.2")?;
            if reply.received == 0 {
                break;
            }
            if started.elapsed() > Duration::from_secs(TTL_SECS + 10) {
                bail!("c3 of the dead agt03 is still reachable after {:?}", started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(started.elapsed() >= Duration::from_secs(1), "removed before its lease could expire");
        Ok(())
    })();
    let daemons: Vec<&Daemon> = agents.iter().collect();
    cluster::report(result, &daemons, &etcd.logs())
}

#[test]
fn cleanup_removes_namespaces_and_pins() -> anyhow::Result<()> {
    let lab = Lab::builder("cleanup").host("store01", "192.168.1.140/24").host("agt01", "192.168.1.141/24").build()?;
    let scratch = Scratch::new("cleanup")?;
    let etcd = Etcd::start(lab.host("store01"))?;
    let store = etcd.url("cleanup");
    // This agent also serves the Docker plugin (no dockerd here: only the socket is checked).
    let plugin_socket = scratch.path("plugin.sock");
    let mut args = cluster::container_agent_args(&scratch, &store, &lab, lab.host("agt01"))?;
    let docker_state = scratch.path("docker-state");
    args.extend(
        ["--docker", "--docker-socket", "/nonexistent/docker.sock", "--docker-dns", "off"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--docker-plugin-socket".to_owned(), plugin_socket.to_string_lossy().into_owned()])
            .chain(["--docker-state-dir".to_owned(), docker_state.to_string_lossy().into_owned()]),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut agent = Daemon::spawn_entered(lab.host("agt01"), "agt01", &args, &scratch.path("agt01.log"))?;
    cluster::wait_for_list(lab.host("store01"), &store, &[lab.host("agt01")], Duration::from_secs(20))?;
    let host = lab.host("agt01").clone();
    let result = (|| -> anyhow::Result<()> {
        // `overlay agent --docker` answers dockerd's handshake on its plugin socket.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !plugin_socket.exists() {
            if Instant::now() > deadline {
                bail!("the agent did not create the plugin socket {}", plugin_socket.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let socket = plugin_socket.to_string_lossy().into_owned();
        let activate =
            cmd::run(&["curl", "-s", "--unix-socket", &socket, "-X", "POST", "http://plugin/Plugin.Activate"])?;
        assert!(activate.contains("NetworkDriver") && activate.contains("IpamDriver"), "{activate}");

        cluster::overlay_ok(&lab, "agt01", &store, &["network", "create", "--subnet", "10.0.6.0/24", "net1"])?;
        let (ns, _) = run_on(&lab, &store, "agt01", "c1")?;
        agent.terminate()?;
        assert!(cmd::run(&["ip", "netns", "list"])?.contains(&ns));
        // What the pins keep alive once the agent is gone: the underlay link, attaching
        // the underlay program at eth0's TCX ingress.
        let underlay_link = datapath::pinned_link_id(&host.pin_dir.join("links/underlay"))?;
        let attached = datapath::tcx_ingress_programs(&host.ns, "eth0")?;
        assert!(attached.iter().any(|p| UNDERLAY_PROGRAM.starts_with(p.as_str())), "not attached: {attached:?}");
        let bridge = overlay::datapath::HEADROOM_BRIDGE;
        assert!(cmd::ip(&host.ns, &["link", "show", bridge]).is_ok(), "no {bridge} after a container started");

        let prefix = cluster::container_netns_prefix(&lab, &host);
        let pin_dir = host.pin_dir.to_string_lossy().into_owned();
        let out = cluster::overlay(
            &host,
            &[
                "agent",
                "--cleanup",
                "--advertise",
                &host.ip.to_string(),
                "--pin-dir",
                &pin_dir,
                "--netns-prefix",
                &prefix,
            ],
        )?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!cmd::run(&["ip", "netns", "list"])?.contains(&ns), "the container namespace is still there");
        let attached = datapath::tcx_ingress_programs(&host.ns, "eth0")?;
        assert!(attached.is_empty(), "programs still attached at eth0's TCX ingress: {attached:?}");
        assert!(!datapath::link_exists(underlay_link), "the underlay link {underlay_link} is still in the kernel");
        assert!(!host.pin_dir.exists(), "the pins are still there");
        let links = cmd::run_in(&host.ns, &["ip", "-o", "link", "show"])?;
        assert!(!links.contains(bridge), "the headroom bridge is still there: {links}");
        Ok(())
    })();
    cluster::report(result, &[&agent], "")
}
