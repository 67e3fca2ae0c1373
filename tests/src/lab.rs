//! Namespaces as hosts: building a lab and tearing it down on every exit path.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
};

use anyhow::{Context, bail};

use crate::cmd;

/// Every namespace a lab makes starts with this, then `p`, the owning process's ID and
/// a dash (`ovt-p4242-e2e-0f3c-agt01`), so leftovers of a killed run can be found
/// and removed while the labs of runs still alive are left alone (`cargo xtask test`
/// removes those whose owner is gone before the tests).
pub const NS_PREFIX: &str = "ovt-";

/// Where the labs mount their bpffs; each host pins under its own directory.
pub const BPFFS: &str = "/run/overlay/bpffs";

/// A host of the lab: a namespace whose `eth0` is on the underlay.
#[derive(Clone, Debug)]
pub struct Host {
    /// The name the test gave it (agt01, h1, ...).
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The underlay interface inside `ns`.
    pub interface: String,
    /// The router on this host's subnet, when the lab has several subnets.
    pub gateway: Option<Ipv4Addr>,
    /// This host's datapath pin directory on the lab's bpffs.
    pub pin_dir: PathBuf,
}

/// A container: a namespace with `eth0`, a veth whose other end is in its host.
#[derive(Clone, Debug)]
pub struct Container {
    pub name: String,
    pub ns: String,
    pub host: String,
    /// The host side of the veth, inside the host's namespace.
    pub host_interface: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

/// What [`Lab::add_container`] makes.
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub name: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
    pub mtu: u32,
}

impl ContainerSpec {
    /// A container in a /24 with a MAC derived from its address (02:42:a.b.c.d, as
    /// Docker does) and the overlay MTU of a 1500-byte underlay.
    pub fn new(name: &str, ip: Ipv4Addr) -> Self {
        ContainerSpec {
            name: name.to_owned(),
            ip,
            prefix_len: 24,
            gateway: None,
            mac: overlay::container::mac_for(ip),
            mtu: 1450,
        }
    }
}

pub struct LabBuilder {
    tag: String,
    hosts: Vec<(String, Ipv4Addr, u8)>,
    outside: Option<(String, Ipv4Addr, u8)>,
}

impl LabBuilder {
    /// Adds a host with underlay address `cidr` (e.g. "192.168.1.141/24"). Hosts in
    /// different subnets are joined by a router namespace.
    pub fn host(mut self, name: &str, cidr: &str) -> Self {
        let (ip, len) = cidr.split_once('/').expect("host address as a.b.c.d/len");
        self.hosts.push((name.to_owned(), ip.parse().expect("IPv4 host address"), len.parse().expect("prefix length")));
        self
    }

    /// Adds the outside world: a host with address `cidr` (a TEST-NET address, e.g.
    /// "203.0.113.10/24") on a subnet of its own, reachable from the lab's hosts only
    /// through the router namespace (made even when the hosts share one subnet; they
    /// then get their default route through it). The router knows the hosts' subnets
    /// and this one, nothing else: the outside host has no way to the overlay's
    /// subnets. It is a [`Host`] of the lab without a datapath.
    pub fn outside(mut self, name: &str, cidr: &str) -> Self {
        let (ip, len) = cidr.split_once('/').expect("outside address as a.b.c.d/len");
        let ip: Ipv4Addr = ip.parse().expect("IPv4 outside address");
        assert!(
            [Ipv4Addr::new(203, 0, 113, 0), Ipv4Addr::new(198, 51, 100, 0), Ipv4Addr::new(192, 0, 2, 0)]
                .contains(&Ipv4Addr::from(u32::from(ip) & 0xffff_ff00)),
            "the outside host takes a TEST-NET address (RFC 5737), not {ip}"
        );
        self.outside = Some((name.to_owned(), ip, len.parse().expect("prefix length")));
        self
    }

    pub fn build(self) -> anyhow::Result<Lab> {
        let id: u16 = rand::random();
        let prefix = format!("{NS_PREFIX}p{}-{}-{id:04x}", std::process::id(), self.tag);
        let mut lab = Lab {
            prefix: prefix.clone(),
            underlay: format!("{prefix}-ul"),
            router: None,
            hosts: Vec::new(),
            containers: Vec::new(),
            namespaces: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
        };
        // From here on, Drop tears down whatever was made, even if a step fails.
        lab.setup(self.hosts, self.outside)?;
        Ok(lab)
    }
}

/// A set of simulated hosts. Dropping it deletes every namespace and pin it made.
pub struct Lab {
    pub prefix: String,
    pub underlay: String,
    pub router: Option<String>,
    pub hosts: Vec<Host>,
    pub containers: Vec<Container>,
    namespaces: Mutex<Vec<String>>,
    children: Mutex<Vec<Child>>,
}

fn subnet_of(ip: Ipv4Addr, len: u8) -> (Ipv4Addr, u8) {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
    (Ipv4Addr::from(u32::from(ip) & mask), len)
}

impl Lab {
    /// `tag` names the test; it is part of every namespace name (keep it short).
    pub fn builder(tag: &str) -> LabBuilder {
        LabBuilder { tag: tag.to_owned(), hosts: Vec::new(), outside: None }
    }

    /// The hosts of ../shared/SCENARIO.md on one underlay subnet: store01 (etcd), mgr01
    /// (the manager) and agt01 to agt03 (agents).
    pub fn scenario(tag: &str) -> anyhow::Result<Lab> {
        Lab::scenario_builder(tag).build()
    }

    /// The hosts of [`Lab::scenario`], to add more to (the demo adds an outside host).
    pub fn scenario_builder(tag: &str) -> LabBuilder {
        Lab::builder(tag)
            .host("store01", "192.168.1.140/24")
            .host("mgr01", "192.168.1.121/24")
            .host("agt01", "192.168.1.141/24")
            .host("agt02", "192.168.1.142/24")
            .host("agt03", "192.168.1.143/24")
    }

    fn add_ns(&self, name: &str) -> anyhow::Result<()> {
        cmd::run(&["ip", "netns", "add", name])?;
        self.namespaces.lock().unwrap().push(name.to_owned());
        cmd::ip(name, &["link", "set", "lo", "up"])?;
        // The overlay and the underlay are IPv4: IPv6 neighbour discovery and MLD from
        // every new interface would only add noise to the packet counts tests check.
        for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
            cmd::run_in(name, &["sysctl", "-qw", key])?;
        }
        Ok(())
    }

    fn setup(
        &mut self,
        hosts: Vec<(String, Ipv4Addr, u8)>,
        outside: Option<(String, Ipv4Addr, u8)>,
    ) -> anyhow::Result<()> {
        if hosts.is_empty() {
            bail!("a lab needs at least one host");
        }
        self.add_ns(&self.underlay.clone())?;
        let mut subnets: BTreeMap<(Ipv4Addr, u8), (String, Option<Ipv4Addr>)> = BTreeMap::new();
        for (_, ip, len) in &hosts {
            let key = subnet_of(*ip, *len);
            let index = subnets.len();
            subnets.entry(key).or_insert_with(|| (format!("br{index}"), None));
        }
        let ul = self.underlay.clone();
        for (bridge, _) in subnets.values() {
            cmd::ip(&ul, &["link", "add", bridge, "type", "bridge"])?;
            cmd::ip(&ul, &["link", "set", bridge, "up"])?;
        }
        if subnets.len() > 1 || outside.is_some() {
            // The router takes the first address of each subnet.
            let router = format!("{}-rt", self.prefix);
            self.add_ns(&router)?;
            cmd::run_in(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            for (i, ((net, len), (bridge, gateway))) in subnets.iter_mut().enumerate() {
                let leg = format!("eth{i}");
                let port = format!("rt{i}");
                cmd::ip(&ul, &["link", "add", &port, "type", "veth", "peer", "name", &leg, "netns", &router])?;
                cmd::ip(&ul, &["link", "set", &port, "master", bridge, "up"])?;
                let gw = Ipv4Addr::from(u32::from(*net) + 1);
                cmd::ip(&router, &["addr", "add", &format!("{gw}/{len}"), "dev", &leg])?;
                cmd::ip(&router, &["link", "set", &leg, "up"])?;
                *gateway = Some(gw);
            }
            if let Some((name, ip, len)) = &outside {
                let ns = format!("{}-{name}", self.prefix);
                self.add_ns(&ns)?;
                let (net, _) = subnet_of(*ip, *len);
                let gw = Ipv4Addr::from(u32::from(net) + 1);
                cmd::ip(&router, &["link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
                cmd::ip(&router, &["addr", "add", &format!("{gw}/{len}"), "dev", "out0"])?;
                cmd::ip(&router, &["link", "set", "out0", "up"])?;
                cmd::ip(&ns, &["addr", "add", &format!("{ip}/{len}"), "dev", "eth0"])?;
                cmd::ip(&ns, &["link", "set", "eth0", "up"])?;
                cmd::ip(&ns, &["route", "add", "default", "via", &gw.to_string()])?;
                let pin_dir = PathBuf::from(BPFFS).join(&ns);
                self.hosts.push(Host {
                    name: name.clone(),
                    ns,
                    ip: *ip,
                    prefix_len: *len,
                    interface: "eth0".into(),
                    gateway: Some(gw),
                    pin_dir,
                });
            }
            self.router = Some(router);
        }
        for (i, (name, ip, len)) in hosts.into_iter().enumerate() {
            let ns = format!("{}-{name}", self.prefix);
            self.add_ns(&ns)?;
            let (bridge, gateway) = subnets[&subnet_of(ip, len)].clone();
            let port = format!("h{i}");
            cmd::ip(&ul, &["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            cmd::ip(&ul, &["link", "set", &port, "master", &bridge, "up"])?;
            cmd::ip(&ns, &["addr", "add", &format!("{ip}/{len}"), "dev", "eth0"])?;
            cmd::ip(&ns, &["link", "set", "eth0", "up"])?;
            if let Some(gw) = gateway {
                cmd::ip(&ns, &["route", "add", "default", "via", &gw.to_string()])?;
            }
            let pin_dir = PathBuf::from(BPFFS).join(&ns);
            self.hosts.push(Host { name, ns, ip, prefix_len: len, interface: "eth0".into(), gateway, pin_dir });
        }
        Ok(())
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// Makes a container namespace on `host` with `eth0` (address, MAC, MTU, optional
    /// default route) and the host side of its veth named `c-NAME`, up, without an
    /// address. IPv6 is off in every lab namespace.
    pub fn add_container(&mut self, host: &str, spec: &ContainerSpec) -> anyhow::Result<Container> {
        let host = self.host(host).clone();
        let ns = format!("{}-c-{}", self.prefix, spec.name);
        let host_interface = format!("c-{}", spec.name);
        if host_interface.len() > 15 {
            bail!("container name {:?} is too long for an interface name", spec.name);
        }
        self.add_ns(&ns)?;
        cmd::ip(&host.ns, &["link", "add", &host_interface, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        let mac = overlay::container::format_mac(spec.mac);
        let mtu = spec.mtu.to_string();
        cmd::ip(&ns, &["link", "set", "eth0", "address", &mac, "mtu", &mtu])?;
        cmd::ip(&ns, &["addr", "add", &format!("{}/{}", spec.ip, spec.prefix_len), "dev", "eth0"])?;
        cmd::ip(&ns, &["link", "set", "eth0", "up"])?;
        if let Some(gw) = spec.gateway {
            cmd::ip(&ns, &["route", "add", "default", "via", &gw.to_string()])?;
        }
        cmd::ip(&host.ns, &["link", "set", &host_interface, "mtu", &mtu, "up"])?;
        let container = Container {
            name: spec.name.clone(),
            ns,
            host: host.name.clone(),
            host_interface,
            ip: spec.ip,
            mac: spec.mac,
        };
        self.containers.push(container.clone());
        Ok(container)
    }

    /// Starts a long-running command in `ns`; it is killed when the lab is dropped.
    pub fn spawn(&self, ns: &str, args: &[&str]) -> anyhow::Result<u32> {
        let all = cmd::in_ns(ns, args);
        let child = Command::new(all[0])
            .args(&all[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting `{}`", all.join(" ")))?;
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        Ok(pid)
    }

    /// Stops everything started with [`Lab::spawn`] (it is also done on drop).
    pub fn stop_children(&self) {
        for mut child in self.children.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_children();
        // The hosts' pin directories, and any other a test made beside them (all carry the
        // lab's prefix).
        for dir in std::fs::read_dir(BPFFS).into_iter().flatten().flatten() {
            if dir.file_name().to_string_lossy().starts_with(&format!("{}-", self.prefix)) {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
        // Namespaces that agents made for their containers carry the lab's prefix too.
        if let Ok(list) = cmd::run(&["ip", "netns", "list"]) {
            let mine = self.namespaces.lock().unwrap().clone();
            for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
                if name.starts_with(&format!("{}-", self.prefix))
                    && !mine.iter().any(|m| m == name)
                    && let Err(e) = delete_ns(name)
                {
                    eprintln!("lab teardown: {e:#}");
                }
            }
        }
        // Containers first, then hosts, router and underlay: the reverse of creation.
        let namespaces = std::mem::take(&mut *self.namespaces.lock().unwrap());
        for ns in namespaces.iter().rev() {
            if let Err(e) = delete_ns(ns) {
                eprintln!("lab teardown: {e:#}");
            }
        }
        // The resolv.conf files that agents wrote for their containers (`ip netns exec`
        // reads /etc/netns/NS/): an agent that was killed could not remove them.
        if let Ok(dirs) = std::fs::read_dir(NETNS_ETC) {
            for dir in dirs.flatten() {
                if dir.file_name().to_string_lossy().starts_with(&format!("{}-", self.prefix)) {
                    let _ = std::fs::remove_dir_all(dir.path());
                }
            }
        }
    }
}

/// Where `ip netns exec NS` finds the files it binds over /etc for NS.
pub const NETNS_ETC: &str = "/etc/netns";

fn delete_ns(ns: &str) -> anyhow::Result<()> {
    // Processes left in the namespace (started by others) would keep its interfaces.
    if let Ok(pids) = cmd::run(&["ip", "netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = cmd::run(&["kill", "-9", pid]);
        }
    }
    cmd::run(&["ip", "netns", "del", ns]).map(|_| ())
}
