//! The Debian packages the build, the tests, the demo and the bench use, each named
//! explicitly: installs run with `--no-install-recommends`, so nothing may ride on a
//! package's Recommends (protobuf-compiler only recommends libprotobuf-dev, whose
//! well-known `.proto` files etcd-client's build needs).

use std::process::Command;

use anyhow::bail;

use crate::run;

/// A package and what of it the project uses.
pub struct Package {
    pub name: &'static str,
    pub used_for: &'static str,
}

const fn p(name: &'static str, used_for: &'static str) -> Package {
    Package { name, used_for }
}

/// Several of these come with a new machine of this project's kind (iproute2,
/// util-linux, bsdutils, mount, procps, tar, curl, openssl, gcc): named all the same,
/// so that the list says everything the project runs. docker.io's own Depends bring
/// iptables and tini, which the project does not use (dockerd runs with
/// `--iptables=false`, no `--init`).
pub const PACKAGES: &[Package] = &[
    p("iproute2", "ip, bridge, tc: namespaces, veth, bridges, VXLAN devices, routes"),
    p("util-linux", "nsenter and unshare: daemons in a simulated host's network namespace"),
    p("bsdutils", "script: a terminal for `docker exec -it` and `docker run -it` in the Engine API test"),
    p("mount", "mount: dockerd's private plugin directory and resolv.conf"),
    p("procps", "kill, sysctl"),
    p("tar", "the busybox root filesystem that `docker import` takes"),
    p("curl", "HTTP on unix sockets (plugin handshake), etcd's health in the setup check"),
    p("iputils-ping", "ping, inside containers"),
    p("iperf3", "traffic in the tests and the bench"),
    p("tcpdump", "packet captures in the tests"),
    p("bind9-dnsutils", "dig, against the embedded DNS"),
    p("bpftool", "inspecting loaded programs and maps"),
    p("ethtool", "offload settings in underlay-hook-bench"),
    p("openssl", "the store TLS tests' CA and certificates"),
    p("gcc", "C code that crates build (ring)"),
    p("protobuf-compiler", "protoc, for etcd-client's build"),
    p("libprotobuf-dev", "google/protobuf/*.proto, which etcd-client's protos import"),
    p("etcd-server", "the cluster store in the tests, the demo and the bench"),
    p("zookeeper", "the ZooKeeper server's jars: the second cluster store, in the tests and `demo --store zk`"),
    p("default-jre-headless", "java, which runs ZooKeeper (zookeeper depends on default-jre)"),
    p("libslf4j-java", "slf4j-simple.jar: ZooKeeper's log output"),
    p("docker.io", "dockerd and the docker CLI (/usr/bin/docker), for the plugin's tests and the demo"),
    p("containerd", "the runtime dockerd starts its containers with"),
    p("runc", "the OCI runtime under containerd"),
    p("busybox-static", "/bin/busybox: the Docker containers' image and its applets"),
    p(
        "nftables",
        "nft: the agent's egress masquerade and published ports; the fault tests cut a host off from the store",
    ),
];

/// The installed version of each package, `None` where it is not installed, in the
/// order of [`PACKAGES`] (one `dpkg-query` for all).
pub fn installed() -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status} ${Version}\n"])
        .args(PACKAGES.iter().map(|p| p.name))
        .output()
        .map_err(|e| anyhow::anyhow!("xtask setup: dpkg-query cannot be run ({e}): this needs a Debian machine"))?;
    // Exit status 1 only says that some package is unknown to dpkg: it is not installed.
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(PACKAGES
        .iter()
        .map(|p| {
            let version = text.lines().find_map(|line| {
                let mut fields = line.split(' ');
                let name = fields.next()?.split(':').next()?;
                (name == p.name && fields.next()? == "installed").then(|| fields.next().unwrap_or("").to_owned())
            });
            (p.name, version)
        })
        .collect())
}

/// Installs the packages that are not installed, and nothing else.
pub fn install_missing() -> anyhow::Result<()> {
    let missing: Vec<&str> = installed()?.into_iter().filter(|(_, v)| v.is_none()).map(|(name, _)| name).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask setup: installing");
    for package in PACKAGES.iter().filter(|p| missing.contains(&p.name)) {
        eprintln!("  {:<18} {}", package.name, package.used_for);
    }
    let update = Command::new("apt-get").args(["update", "-qq"]).env("DEBIAN_FRONTEND", "noninteractive").status();
    if !update.is_ok_and(|s| s.success()) {
        bail!(
            "xtask setup: `apt-get update` failed (output above): Debian's package lists cannot be fetched; check /etc/apt/sources.list and that this runs as root"
        );
    }
    let install = run::status(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    if install.is_err() {
        bail!(
            "xtask setup: `apt-get install --no-install-recommends {}` failed (output above); run it by hand to see why",
            missing.join(" ")
        );
    }
    Ok(())
}

/// What the setup checks depend on: each package's installed version.
pub fn fingerprint() -> anyhow::Result<String> {
    Ok(installed()?.into_iter().map(|(name, v)| format!("{name} {}\n", v.as_deref().unwrap_or("-"))).collect())
}
