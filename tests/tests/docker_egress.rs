//! Docker containers on a network of the plugin reach the outside world as native ones
//! do (through their host, masqueraded), `docker run -p` publishes a port on the host's
//! addresses, an `--internal` network has no way out, and cross-host traffic still goes
//! through the eBPF datapath. A real dockerd (Debian's 20.10, `--iptables=false`) beside
//! `overlay agent --docker` on agt01; an outside host (TEST-NET) behind the router.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use anyhow::Context;
use overlay_tests::{
    Lab,
    cluster::{self, Scratch, reason_packets, stats},
    cmd,
    docker::{self, Dockerd},
    outside::{EchoCounter, PeerLog, tcp_request},
    stores::{Backend, StoreServer},
    traffic,
};

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

#[test]
fn docker_containers_get_egress_and_published_ports() -> anyhow::Result<()> {
    let lab = Lab::builder("dkegress")
        .host("store01", "192.168.1.140/24")
        .host("agt01", "192.168.1.141/24")
        .host("agt02", "192.168.2.142/24")
        .outside("outside", "203.0.113.10/24")
        .build()?;
    let scratch = Scratch::new("dkegress")?;
    let server = StoreServer::start(Backend::Etcd, lab.host("store01"))?;
    let store = server.url("my_cluster");
    let resolver = docker::DNS_ADDRESS;
    let dockerd = Dockerd::start(lab.host("agt01"), resolver)?;
    let extra = dockerd.agent_args(&scratch.path("agt01-docker"));
    let agents = [
        cluster::start_container_agent_with(&scratch, &store, &lab, "agt01", &extra)?,
        cluster::start_container_agent(&scratch, &store, &lab, "agt02")?,
    ];
    let outside = lab.host("outside").clone();
    let log = PeerLog::start(&outside.ns, OUTSIDE, 7000)?;
    let dns = PeerLog::start(&outside.ns, OUTSIDE, 53)?;
    let echoes = EchoCounter::start(&outside.ns)?;

    let result = (|| -> anyhow::Result<()> {
        let hosts = [lab.host("agt01"), lab.host("agt02")];
        cluster::wait_for_list(lab.host("store01"), &store, &hosts, Duration::from_secs(30))?;
        let agt01 = lab.host("agt01").ip;
        let plugin = docker::PLUGIN;
        for (name, subnet, internal) in [("web", "10.88.1.0/24", false), ("db", "10.88.2.0/24", true)] {
            let mut args = vec!["network", "create", "-d", plugin, "--ipam-driver", plugin, "--subnet", subnet];
            if internal {
                args.push("--internal");
            }
            args.push(name);
            dockerd.docker(&args)?;
        }
        let run = |name: &str, network: &str, more: &[&str], command: &[&str]| {
            let mut args = vec!["run", "-d", "--name", name, "--net", network];
            args.extend_from_slice(more);
            args.push(docker::IMAGE);
            args.extend_from_slice(command);
            dockerd.docker(&args)
        };
        run("d1", "web", &[], &["sleep", "600"])?;
        run("i1", "db", &["--cap-add", "NET_ADMIN"], &["sleep", "600"])?;
        let exec = |name: &str, script: &str| dockerd.docker_status(&["exec", name, "sh", "-c", script]);

        // TCP, UDP and ICMP get out, seen from the outside as agt01.
        let (ok, answer) = exec("d1", "echo hi | nc -w 3 203.0.113.10 7000")?;
        assert!(ok && answer.starts_with(&format!("hello {agt01}:")), "{answer}");
        // busybox's nc has no UDP: its nslookup asks the outside host on UDP port 53
        // (and fails on the answer, which is no DNS).
        let (_, answer) = exec("d1", "nslookup -timeout=2 -retry=1 example.test 203.0.113.10")?;
        assert_eq!(log.peers("tcp"), vec![agt01]);
        assert!(!dns.peers("udp").is_empty() && dns.peers("udp").iter().all(|p| *p == agt01), "{answer}");
        let (ok, answer) = exec("d1", "ping -c 2 -W 2 203.0.113.10")?;
        assert!(ok, "{answer}");
        assert_eq!(echoes.sources()?, vec![agt01]);
        assert!(reason_packets(&stats(&lab, "agt01")?, "egress") >= 4);

        // --internal: no way out. As with Docker's own drivers the container gets no
        // default route; one that makes itself one is dropped by the datapath.
        let (ok, answer) = exec("i1", "ping -c 1 -W 1 203.0.113.10")?;
        assert!(!ok && answer.contains("unreachable"), "{answer}");
        let before = reason_packets(&stats(&lab, "agt01")?, "drop-no-egress");
        let (ok, answer) = exec("i1", "ip route add default via 10.88.2.1 && ping -c 2 -W 1 203.0.113.10")?;
        assert!(!ok && answer.contains("0 packets received"), "{answer}");
        assert!(reason_packets(&stats(&lab, "agt01")?, "drop-no-egress") >= before + 2);

        // Cross-host overlay traffic is the datapath's: encapsulated, not egress, and no
        // Docker bridge on the host.
        cluster::overlay_ok(&lab, "agt02", &store, &["network", "create", "--subnet", "10.88.3.0/24", "mixed"])?;
        dockerd.docker(&docker::network_create("10.88.3.0/24", "mixed"))?;
        let (native, native_ip) = cluster::run_container(&lab, &store, "agt02", "n1", "mixed", &[])?;
        run("d3", "mixed", &[], &["sleep", "600"])?;
        let before = stats(&lab, "agt01")?;
        let (ok, answer) = exec("d3", &format!("ping -c 3 -W 2 {native_ip}"))?;
        assert!(ok, "{answer}");
        let after = stats(&lab, "agt01")?;
        assert!(reason_packets(&after, "encapsulated") >= reason_packets(&before, "encapsulated") + 3);
        assert_eq!(reason_packets(&after, "egress"), reason_packets(&before, "egress"), "overlay traffic took egress");
        let bridges = cmd::ip(&lab.host("agt01").ns, &["-o", "link", "show", "type", "bridge"])?;
        assert!(!bridges.contains("docker_gwbridge") && !bridges.contains("docker0"), "{bridges}");
        traffic::ping_ok(&native, agt01, 1)?;

        // docker run -p: the outside reaches the published port at agt01's address, and
        // nothing else of the container.
        run("d2", "web", &["-p", "8081:7002"], &["busybox", "httpd", "-f", "-p", "7002"])?;
        let at = SocketAddrV4::new(agt01, 8081);
        let answer = cluster::wait_for("d2's published port", Duration::from_secs(10), || {
            Ok(tcp_request(&outside.ns, at, Duration::from_secs(2)).map_err(|e| e.to_string()))
        })?
        .0;
        assert!(answer.starts_with("HTTP/1."), "{answer}");
        assert!(tcp_request(&outside.ns, SocketAddrV4::new(agt01, 7002), Duration::from_secs(1)).is_err());
        let s = stats(&lab, "agt01")?;
        let ports = s["egress"]["ports"].as_array().cloned().unwrap_or_default();
        assert!(ports.iter().any(|p| p["host_port"] == 8081 && p["in_packets"].as_u64() > Some(0)), "{s}");
        // The same host port again is refused, with what holds it.
        let (ok, answer) = dockerd.docker_status(&[
            "run",
            "-d",
            "--name",
            "d4",
            "--net",
            "web",
            "-p",
            "8081:80",
            docker::IMAGE,
            "sleep",
            "60",
        ])?;
        assert!(!ok && answer.contains("host port 8081/tcp is already published on this host"), "{answer}");
        let _ = dockerd.docker(&["rm", "-f", "d4"]);
        // And it goes with the container.
        dockerd.docker(&["rm", "-f", "d2"])?;
        let ns = lab.host("agt01").ns.clone();
        let rules = cmd::run_in(&ns, &["nft", "list", "table", "ip", "overlay"])?;
        assert!(!rules.contains("8081"), "{rules}");
        assert!(tcp_request(&outside.ns, at, Duration::from_secs(1)).is_err(), "8081 still answers");

        // The endpoints' routes back go with them, and the network's masquerade with
        // the network (made through Docker, so `docker network rm` removes it).
        dockerd.docker(&["rm", "-f", "d1"])?;
        let routes = cmd::ip(&ns, &["route", "show"])?;
        assert!(!routes.contains("10.88.1."), "{routes}");
        dockerd.docker(&["network", "rm", "web"])?;
        cluster::wait_for("web's rules to go", Duration::from_secs(15), || {
            let rules = cmd::run_in(&ns, &["nft", "list", "table", "ip", "overlay"])?;
            Ok(if rules.contains("10.88.1.0/24") { Err(rules) } else { Ok(()) })
        })?;
        Ok(())
    })();
    let daemons: Vec<&cluster::Daemon> = agents.iter().collect();
    let result = cluster::report(result, &daemons, &dockerd.log_tail());
    dockerd.remove_all_containers();
    result.context("docker egress")
}
