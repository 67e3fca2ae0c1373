//! Containers reach the outside world through their host, masqueraded: two routed
//! agent hosts and an outside host (TEST-NET) that only the router reaches. Internal
//! networks stay shut, crafted VXLAN cannot leave through egress, nothing of a
//! container but its published ports is reachable from outside (not even for an
//! underlay peer that routes the overlay subnet at its host), overlay traffic never
//! takes egress, and the agent's rules go with the container, the network and on
//! `--cleanup` (its routes to containers too, and only those).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use anyhow::Context;
use overlay_tests::{
    Lab,
    cluster::{self, Scratch, reason_packets, stats},
    cmd,
    outside::{Connection, EchoCounter, PeerLog, echo_server, tcp_request, udp_request},
    packets::{icmp_echo_frame, rx_packets, send_udp, vxlan_header},
    stores::{Backend, StoreServer},
    traffic,
};

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const LIMIT: Duration = Duration::from_secs(3);

fn lab(tag: &str) -> anyhow::Result<Lab> {
    Lab::builder(tag)
        .host("store01", "192.168.1.140/24")
        .host("agt01", "192.168.1.141/24")
        .host("rogue", "192.168.1.150/24")
        .host("agt02", "192.168.2.142/24")
        .outside("outside", "203.0.113.10/24")
        .build()
}

fn table(lab: &Lab, host: &str) -> anyhow::Result<String> {
    let out = cmd::output_in(&lab.host(host).ns, &["nft", "list", "table", "ip", "overlay"])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn containers_reach_the_outside_masqueraded() -> anyhow::Result<()> {
    let lab = lab("egress")?;
    let scratch = Scratch::new("egress")?;
    let server = StoreServer::start(Backend::Etcd, lab.host("store01"))?;
    let store = server.url("my_cluster");
    let mut agents = Vec::new();
    for name in ["agt01", "agt02"] {
        agents.push(cluster::start_container_agent(&scratch, &store, &lab, name)?);
    }
    let outside = lab.host("outside").clone();
    let log = PeerLog::start(&outside.ns, OUTSIDE, 7000)?;
    let echoes = EchoCounter::start(&outside.ns)?;

    let result = (|| -> anyhow::Result<()> {
        let agents = &mut agents;
        let hosts = [lab.host("agt01"), lab.host("agt02")];
        cluster::wait_for_list(lab.host("store01"), &store, &hosts, Duration::from_secs(20))?;
        let (agt01, agt02) = (lab.host("agt01").ip, lab.host("agt02").ip);
        cluster::overlay_ok(&lab, "agt01", &store, &["network", "create", "--subnet", "10.77.5.0/24", "web"])?;
        cluster::overlay_ok(
            &lab,
            "agt01",
            &store,
            &["network", "create", "--internal", "--subnet", "10.77.6.0/24", "db"],
        )?;
        let (web1, web1_ip) = cluster::run_container(&lab, &store, "agt01", "web1", "web", &[])?;
        let (web2, web2_ip) = cluster::run_container(&lab, &store, "agt02", "web2", "web", &[])?;
        let (db1, _) = cluster::run_container(&lab, &store, "agt01", "db1", "db", &[])?;

        // TCP, UDP and ICMP get out, and the outside sees each container's host.
        let to = SocketAddrV4::new(OUTSIDE, 7000);
        let answer = tcp_request(&web1, to, LIMIT)?;
        assert_eq!(answer.trim().split(':').next(), Some(format!("hello {agt01}").as_str()), "{answer}");
        udp_request(&web1, to, LIMIT)?;
        tcp_request(&web2, to, LIMIT)?;
        udp_request(&web2, to, LIMIT)?;
        assert_eq!(log.peers("tcp"), vec![agt01, agt02], "the outside saw other sources");
        assert_eq!(log.peers("udp"), vec![agt01, agt02]);
        traffic::ping_ok(&web1, OUTSIDE, 3)?;
        traffic::ping_ok(&web2, OUTSIDE, 3)?;
        let mut sources = echoes.sources()?;
        sources.sort();
        assert_eq!(sources, vec![agt01, agt02], "echo requests came from elsewhere than the hosts");

        // Counted as egress, per network and in the rules' counters.
        let s = stats(&lab, "agt01")?;
        assert!(reason_packets(&s, "egress") >= 5, "{s}");
        let net = &s["egress"]["networks"];
        let web = net.as_object().and_then(|m| m.values().find(|v| v["out_packets"].as_u64() > Some(0)));
        let web = web.with_context(|| format!("no egress counted: {s}"))?;
        assert!(web["in_packets"].as_u64() > Some(0), "{s}");

        // An internal network has no way out, and the drop is counted.
        let before = reason_packets(&stats(&lab, "agt01")?, "drop-no-egress");
        assert!(tcp_request(&db1, to, Duration::from_secs(1)).is_err(), "a container of an internal network got out");
        assert_eq!(traffic::ping(&db1, OUTSIDE, 2, "0.2")?.received, 0);
        assert!(reason_packets(&stats(&lab, "agt01")?, "drop-no-egress") >= before + 3);
        let rules = table(&lab, "agt01")?;
        assert!(rules.contains("ip saddr 10.77.5.0/24 masquerade"), "{rules}");
        assert!(!rules.contains("ip saddr 10.77.6.0/24 masquerade"), "{rules}");

        // Egress is no way into the overlay: VXLAN crafted by web1 for the network
        // `secret`, which it is not on, with the inner source of a container that lives
        // on agt01 (so that, masqueraded to agt01's address, it would pass agt02's
        // member and inner-source checks), never leaves agt01.
        cluster::overlay_ok(&lab, "agt01", &store, &["network", "create", "--subnet", "10.77.7.0/24", "secret"])?;
        let (_, s1_ip) = cluster::run_container(&lab, &store, "agt01", "s1", "secret", &[])?;
        let (s2, s2_ip) = cluster::run_container(&lab, &store, "agt02", "s2", "secret", &[])?;
        let inspect = cluster::overlay_ok(&lab, "agt01", &store, &["network", "inspect", "secret"])?;
        let vni = serde_json::from_str::<serde_json::Value>(&inspect)?["vni"].as_u64().context("no vni")? as u32;
        let mac = |ip: Ipv4Addr| overlay::container::mac_for(ip);
        let mut crafted = vxlan_header(vni);
        crafted.extend(icmp_echo_frame(mac(s1_ip), mac(s2_ip), s1_ip, s2_ip, 32));
        let mut large = crafted.clone();
        large.extend(std::iter::repeat_n(0u8, 3000));
        let (before1, before2, rx) = (stats(&lab, "agt01")?, stats(&lab, "agt02")?, rx_packets(&s2)?);
        // To another member's VTEP, to this host's own, and one the container's stack
        // cuts into three fragments (only the first carries the port).
        send_udp(&web1, web1_ip, agt02, &[crafted.clone(), crafted.clone()])?;
        send_udp(&web1, web1_ip, agt01, &[crafted])?;
        send_udp(&web1, web1_ip, agt02, &[large])?;
        std::thread::sleep(Duration::from_millis(300));
        let (after1, after2) = (stats(&lab, "agt01")?, stats(&lab, "agt02")?);
        assert_eq!(
            reason_packets(&after1, "drop-egress-vxlan") - reason_packets(&before1, "drop-egress-vxlan"),
            2 + 1 + 3
        );
        assert_eq!(reason_packets(&after1, "egress"), reason_packets(&before1, "egress"), "crafted VXLAN left agt01");
        assert_eq!(reason_packets(&after2, "decapsulated"), reason_packets(&before2, "decapsulated"));
        assert_eq!(rx_packets(&s2)?, rx, "s2 received the crafted packet");
        // A container of the network itself reaches s2 as before.
        traffic::ping_ok(&s2, s1_ip, 2)?;

        // Overlay traffic stays on the overlay: encapsulated, never egress.
        let before = stats(&lab, "agt01")?;
        traffic::ping_ok(&web1, web2_ip, 5)?;
        let after = stats(&lab, "agt01")?;
        assert!(reason_packets(&after, "encapsulated") >= reason_packets(&before, "encapsulated") + 5);
        assert_eq!(reason_packets(&after, "egress"), reason_packets(&before, "egress"));

        // Nothing of a container is reachable from outside: neither from the outside
        // host, nor from an underlay peer that routes the overlay subnet at its host.
        let inside = PeerLog::start(&web1, web1_ip, 7001)?;
        let rogue = lab.host("rogue").clone();
        cmd::ip(&rogue.ns, &["route", "add", "10.77.5.0/24", "via", &agt01.to_string()])?;
        let target = SocketAddrV4::new(web1_ip, 7001);
        assert!(tcp_request(&rogue.ns, target, Duration::from_secs(1)).is_err(), "the rogue reached web1");
        assert!(udp_request(&rogue.ns, target, Duration::from_secs(1)).is_err(), "the rogue reached web1");
        assert_eq!(traffic::ping(&rogue.ns, web1_ip, 2, "0.2")?.received, 0);
        cmd::ip(&outside.ns, &["route", "add", "10.77.5.0/24", "via", "203.0.113.1"])?;
        assert!(tcp_request(&outside.ns, target, Duration::from_secs(1)).is_err(), "the outside reached web1");
        assert!(inside.peers("tcp").is_empty() && inside.peers("udp").is_empty());
        let s = stats(&lab, "agt01")?;
        let blocked: u64 = s["egress"]["networks"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|v| v["blocked_packets"].as_u64())
            .sum();
        assert!(blocked >= 4, "the forward filter counted no drop: {s}");

        // Published ports: the outside host reaches a port of a container on the other
        // subnet's host at that host's address (the container sees the client's own
        // address), over TCP and UDP, and nothing else of the container.
        let published = ["-p", "8080:7002", "--publish", "8080:7002/udp", "-p", "8090:7011"];
        let (web3, web3_ip) = cluster::run_container(&lab, &store, "agt02", "web3", "web", &published)?;
        let served = PeerLog::start(&web3, web3_ip, 7002)?;
        let unpublished = PeerLog::start(&web3, web3_ip, 7003)?;
        let at = SocketAddrV4::new(agt02, 8080);
        let answer = tcp_request(&outside.ns, at, LIMIT)?;
        assert!(answer.starts_with(&format!("hello {OUTSIDE}:")), "{answer}");
        udp_request(&outside.ns, at, LIMIT)?;
        assert_eq!((served.peers("tcp"), served.peers("udp")), (vec![OUTSIDE], vec![OUTSIDE]));
        // A container on another host reaches it too, through its own egress.
        let answer = tcp_request(&web1, at, LIMIT)?;
        assert!(answer.starts_with(&format!("hello {agt01}:")), "{answer}");
        for port in [7002, 7003] {
            let other = SocketAddrV4::new(agt02, port);
            assert!(tcp_request(&outside.ns, other, Duration::from_secs(1)).is_err(), "{other} answered");
            let direct = SocketAddrV4::new(web3_ip, port);
            assert!(tcp_request(&outside.ns, direct, Duration::from_secs(1)).is_err(), "{direct} answered");
        }
        assert!(unpublished.peers("tcp").is_empty());
        let ps = cluster::overlay_ok(&lab, "agt01", &store, &["ps"])?;
        let line = ps.lines().find(|l| l.starts_with("agt02/web3")).with_context(|| ps.clone())?;
        assert!(line.contains("8080->7002/tcp,8080->7002/udp"), "{ps}");
        let s = stats(&lab, "agt02")?;
        let ports = s["egress"]["ports"].as_array().cloned().unwrap_or_default();
        assert_eq!(ports.len(), 3, "{s}");
        let used = ports.iter().filter(|p| p["host_port"] == 8080);
        assert!(used.clone().count() == 2 && used.clone().all(|p| p["in_packets"].as_u64() > Some(0)), "{s}");
        assert!(used.clone().all(|p| p["out_packets"].as_u64() > Some(0)), "{s}");
        // And in the agent's metrics (its loopback in the host's namespace).
        let url = "http://127.0.0.1:9469/metrics";
        let metrics = cmd::run_in(&lab.host("agt02").ns, &["curl", "-sS", "-m", "3", url])?;
        assert!(metrics.contains("\noverlay_published_ports 3\n"), "{metrics}");
        let web3_in =
            "overlay_published_port_packets_total{owner=\"container/web3\",host_port=\"8080\",protocol=\"tcp\"";
        let counted = metrics.lines().filter(|l| l.starts_with(web3_in) && l.contains("direction=\"in\""));
        assert!(counted.clone().count() == 1 && counted.clone().all(|l| !l.ends_with(" 0")), "{metrics}");
        let out = metrics.lines().filter(|l| l.starts_with("overlay_egress_packets_total{") && l.contains("\"out\""));
        assert!(out.clone().any(|l| !l.ends_with(" 0")), "no egress in the metrics: {metrics}");

        // An agent restart keeps connections through egress and to published ports
        // going, while it is down and after, and new ones work once it is back.
        echo_server(&outside.ns, OUTSIDE, 7010)?;
        echo_server(&web3, web3_ip, 7011)?;
        let mut out = Connection::open(&web3, SocketAddrV4::new(OUTSIDE, 7010), LIMIT)?;
        let mut into = Connection::open(&outside.ns, SocketAddrV4::new(agt02, 8090), LIMIT)?;
        for connection in [&mut out, &mut into] {
            assert_eq!(connection.round_trip("before")?, "before");
        }
        agents[1].kill()?;
        for connection in [&mut out, &mut into] {
            assert_eq!(connection.round_trip("while down")?, "while down");
        }
        agents[1] = cluster::start_container_agent(&scratch, &store, &lab, "agt02")?;
        cluster::wait_for("agt02's agent to adopt web3", Duration::from_secs(30), || {
            let log = agents[1].log_text();
            Ok(if log.contains("container web3 adopted") { Ok(()) } else { Err(log) })
        })?;
        for connection in [&mut out, &mut into] {
            assert_eq!(connection.round_trip("after")?, "after");
        }
        tcp_request(&web3, to, LIMIT)?;
        tcp_request(&outside.ns, at, LIMIT)?;
        let rules = table(&lab, "agt02")?;
        assert_eq!(rules.matches("dnat to").count(), 3, "{rules}");

        // A host port already taken is refused, with what takes it: another container's
        // published port, or a socket of the host.
        let taken = |name: &str, port: &str| -> anyhow::Result<String> {
            let h = lab.host("agt02");
            let args = ["run", "--store", &store, "--name", name, "--net", "web", "--node", "agt02", "-p", port];
            let out = cluster::overlay(h, &[&args[..], &["--", "sleep", "60"]].concat())?;
            anyhow::ensure!(!out.status.success(), "{name} started with -p {port}");
            cluster::overlay_ok(&lab, "agt02", &store, &["rm", name])?;
            Ok(String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let error = taken("web4", "8080:80")?;
        assert!(error.contains("host port 8080/tcp is already published on this host by container/web3"), "{error}");
        let host_socket =
            overlay::netns::run_in(&lab.host("agt02").ns, || std::net::TcpListener::bind("0.0.0.0:9090"))??;
        let error = taken("web5", "9090:80")?;
        assert!(error.contains("host port 9090/tcp is in use on this host"), "{error}");
        drop(host_socket);
        // The ports, and their rules, go with the container.
        cluster::overlay_ok(&lab, "agt01", &store, &["rm", "web3"])?;
        cluster::wait_for("web3's port rules to go", Duration::from_secs(10), || {
            let rules = table(&lab, "agt02")?;
            Ok(if rules.contains("8080") || rules.contains("8090") { Err(rules) } else { Ok(()) })
        })?;
        assert!(tcp_request(&outside.ns, at, Duration::from_secs(1)).is_err(), "8080 still answers");

        // The rules go with the network, and the table on --cleanup.
        cluster::overlay_ok(&lab, "agt01", &store, &["rm", "web1", "web2", "db1", "s1", "s2"])?;
        cluster::wait_for("the containers to go", Duration::from_secs(20), || {
            let out = cluster::overlay_ok(&lab, "agt01", &store, &["network", "rm", "web"]);
            Ok(out.map(|_| ()).map_err(|e| e.to_string()))
        })?;
        cluster::wait_for("the network's rules to go", Duration::from_secs(10), || {
            let rules = table(&lab, "agt01")?;
            Ok(if rules.contains("10.77.5.0/24") { Err(rules) } else { Ok(()) })
        })?;
        assert!(table(&lab, "agt01")?.contains("10.77.6.0/24"), "the internal network's drop went too");
        Ok(())
    })();
    let daemons: Vec<&cluster::Daemon> = agents.iter().collect();
    let result = cluster::report(result, &daemons, "");
    drop(agents);
    result?;

    let h = lab.host("agt01");
    // A Docker container's veth outlives the agent (dockerd owns it), and with it the
    // agent's /32 route to the container: made here as the agent makes it (proto 0x4f),
    // beside a route of the host's own on the same veth, which must stay.
    for args in [
        &["link", "add", "dock0", "type", "veth", "peer", "name", "dock1"][..],
        &["link", "set", "dock0", "up"],
        &["link", "set", "dock1", "up"],
        &["route", "add", "10.77.9.9/32", "dev", "dock0", "scope", "link", "proto", "0x4f"],
        &["route", "add", "10.77.9.10/32", "dev", "dock0", "scope", "link", "proto", "static"],
    ] {
        cmd::run_in(&h.ns, &[&["ip"][..], args].concat())?;
    }
    let prefix = cluster::container_netns_prefix(&lab, h);
    let (ip, pin_dir) = (h.ip.to_string(), h.pin_dir.to_string_lossy().into_owned());
    let out = cluster::overlay(
        h,
        &["agent", "--cleanup", "--advertise", &ip, "--pin-dir", &pin_dir, "--netns-prefix", &prefix],
    )?;
    anyhow::ensure!(out.status.success(), "cleanup: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("removed the nftables table ip overlay"), "{stdout}");
    assert_eq!(table(&lab, "agt01")?, "", "the table is still there after --cleanup");
    assert!(stdout.contains("removed the route to container 10.77.9.9"), "{stdout}");
    let routes = cmd::run_in(&h.ns, &["ip", "route", "show", "dev", "dock0"])?;
    assert!(!routes.contains("10.77.9.9 "), "the agent's route is still there: {routes}");
    assert!(routes.contains("10.77.9.10 "), "the host's own route went too: {routes}");
    Ok(())
}
