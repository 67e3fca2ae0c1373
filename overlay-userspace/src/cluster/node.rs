//! What a node says about itself in the store, and the checks on what the operator
//! gives (`--advertise`, `--name`, `--label`).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};

use super::ClusterError;

/// Labels the agent sets itself; `--label` cannot override them.
pub const SYSTEM_LABELS: [&str; 2] = ["kernelversion", "operatingsystem"];

/// A node's record under `v1/nodes/ID`, attached to its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub name: String,
    /// The underlay address the node advertises (VXLAN is sent to it).
    pub address: IpAddr,
    pub hostname: String,
    pub kernel_version: String,
    pub os: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// Operator labels (`--label`); see [`NodeRecord::all_labels`] for the full set.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    #[serde(default)]
    pub containers: u32,
    /// How often the node refreshes its lease, and the lease's TTL.
    pub heartbeat_ms: u64,
    pub ttl_secs: u64,
    /// Unix time (seconds) at which this agent process registered.
    pub started_at: u64,
    /// The node's Docker engine, when its agent serves one to the managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineEndpoint>,
}

/// How a manager reaches a node's dockerd: the agent serves it over mutual TLS on its
/// advertised address (`overlay agent --docker --docker-tls-*`; docs/docker.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineEndpoint {
    pub address: SocketAddr,
    /// The Docker network driver of the node's plugin: what cluster networks are in its
    /// dockerd.
    pub network_driver: String,
}

impl NodeRecord {
    /// The operator labels plus the system labels (kernel version, OS), as
    /// `docker info` showed them through Swarm.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("kernelversion".into(), self.kernel_version.clone());
        labels.insert("operatingsystem".into(), self.os.clone());
        labels
    }
}

/// Facts about the host the agent runs on.
#[derive(Clone, Debug)]
pub struct HostFacts {
    pub hostname: String,
    pub kernel_version: String,
    pub os: String,
    pub cpus: u32,
    pub memory_bytes: u64,
}

fn read(what: &'static str, path: &'static str) -> Result<String, ClusterError> {
    std::fs::read_to_string(path).map_err(|source| ClusterError::HostFacts { what, path, source })
}

impl HostFacts {
    /// Reads /proc and /etc/os-release (like `uname -nr`, `nproc` and `free -b`).
    pub fn gather() -> Result<Self, ClusterError> {
        let hostname = read("host name", "/proc/sys/kernel/hostname")?.trim().to_owned();
        let kernel_version = read("kernel version", "/proc/sys/kernel/osrelease")?.trim().to_owned();
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| os_pretty_name(&text))
            .unwrap_or_else(|| "Linux".to_owned());
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory_bytes = mem_total(&read("memory size", "/proc/meminfo")?).unwrap_or(0);
        Ok(HostFacts { hostname, kernel_version, os, cpus: u32::try_from(cpus).unwrap_or(u32::MAX), memory_bytes })
    }
}

fn os_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Parses `--label KEY=VALUE` arguments (see [`crate::labels::parse`]); the system
/// labels are the agent's own.
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>, ClusterError> {
    crate::labels::parse(labels, &SYSTEM_LABELS)
        .map_err(|e| ClusterError::InvalidLabel { label: e.label, reason: e.reason.into() })
}

/// Checks `--advertise`: a unicast IP address, without a port, that the other hosts can
/// reach. Whether it is assigned to this host is checked by [`check_local_address`].
pub fn parse_advertise(value: &str) -> Result<IpAddr, ClusterError> {
    let invalid = |reason: &str| ClusterError::InvalidAdvertise { value: value.to_owned(), reason: reason.into() };
    let address: IpAddr = match value.parse() {
        Ok(address) => address,
        Err(_) if value.parse::<std::net::SocketAddr>().is_ok() => {
            return Err(invalid("give the IP address alone, without a port (VXLAN always uses UDP 4789)"));
        }
        Err(_) => return Err(invalid("not an IP address (e.g. --advertise 192.168.1.141)")),
    };
    if address.is_unspecified() {
        return Err(invalid(
            "the unspecified address cannot be reached by other hosts; give this host's underlay address",
        ));
    }
    if address.is_loopback() {
        return Err(invalid("a loopback address cannot be reached by other hosts; give this host's underlay address"));
    }
    if address.is_multicast() || address == IpAddr::from([255, 255, 255, 255]) {
        return Err(invalid("not a unicast address"));
    }
    Ok(address)
}

/// Fails unless `address` is assigned to an interface of this host's network namespace
/// (`ip -br addr` would list it): VXLAN is sent from and received on it.
pub fn check_local_address(address: IpAddr) -> Result<(), ClusterError> {
    let interfaces = nix::ifaddrs::getifaddrs().map_err(|e| ClusterError::InvalidAdvertise {
        value: address.to_string(),
        reason: format!("cannot list this host's addresses: {e}"),
    })?;
    let local = interfaces.filter_map(|i| i.address).any(|a| {
        a.as_sockaddr_in().map(|s| IpAddr::from(s.ip())) == Some(address)
            || a.as_sockaddr_in6().map(|s| IpAddr::from(s.ip())) == Some(address)
    });
    if local {
        Ok(())
    } else {
        Err(ClusterError::InvalidAdvertise {
            value: address.to_string(),
            reason:
                "no interface of this host has that address (see `ip addr`); advertise this host's underlay address"
                    .into(),
        })
    }
}

/// Checks `--name`: 1 to 63 letters, digits, `-`, `_` or `.`.
pub fn validate_name(name: &str) -> Result<(), ClusterError> {
    if name.is_empty()
        || name.len() > 63
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ClusterError::InvalidName {
            name: name.to_owned(),
            reason: "use 1 to 63 letters, digits, '-', '_' or '.'".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(args: &[&str]) -> Result<BTreeMap<String, String>, ClusterError> {
        parse_labels(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn labels_parse() {
        let parsed = labels(&["zone=east", "disk=ssd", "team/owner=net", "empty="]).unwrap();
        assert_eq!(parsed["zone"], "east");
        assert_eq!(parsed["team/owner"], "net");
        assert_eq!(parsed["empty"], "");
        assert_eq!(labels(&["a=b=c"]).unwrap()["a"], "b=c");
    }

    #[test]
    fn bad_labels_are_refused_with_the_form() {
        for bad in [&["zone"][..], &["=x"], &["-a=1"], &["a b=1"], &["kernelversion=1"], &["a=1", "a=2"], &["a=\u{7}"]]
        {
            let err = labels(bad).unwrap_err();
            assert!(matches!(err, ClusterError::InvalidLabel { .. }), "{bad:?}");
            assert!(err.to_string().contains("KEY=VALUE"), "{err}");
        }
    }

    #[test]
    fn advertise_must_be_a_reachable_unicast_ip() {
        assert_eq!(parse_advertise("192.168.1.141").unwrap(), IpAddr::from([192, 168, 1, 141]));
        assert!(parse_advertise("fd00::5").is_ok());
        for bad in
            ["", "host", "192.168.1.141:2375", "0.0.0.0", "127.0.0.1", "::1", "224.0.0.1", "255.255.255.255", "::"]
        {
            let err = parse_advertise(bad).unwrap_err();
            assert!(matches!(err, ClusterError::InvalidAdvertise { .. }), "{bad}: {err}");
        }
        assert!(parse_advertise("192.168.1.141:2375").unwrap_err().to_string().contains("without a port"));
    }

    #[test]
    fn names() {
        assert!(validate_name("agt01").is_ok());
        assert!(validate_name("a.b_c-d").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn os_release_and_meminfo() {
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n";
        assert_eq!(os_pretty_name(os).unwrap(), "Debian GNU/Linux 13 (trixie)");
        assert_eq!(mem_total("MemTotal:       24596312 kB\nMemFree: 1 kB\n"), Some(24596312 * 1024));
        assert_eq!(mem_total("nothing"), None);
    }

    #[test]
    fn records_round_trip_and_show_system_labels() {
        let record = NodeRecord {
            id: "0".repeat(32),
            name: "agt01".into(),
            address: "192.168.1.141".parse().unwrap(),
            hostname: "h".into(),
            kernel_version: "6.12.0".into(),
            os: "Debian".into(),
            cpus: 2,
            memory_bytes: 1 << 30,
            labels: BTreeMap::from([("zone".into(), "east".into())]),
            agent_version: "0.1.0".into(),
            containers: 0,
            heartbeat_ms: 1000,
            ttl_secs: 3,
            started_at: 1,
            engine: Some(EngineEndpoint {
                address: "192.168.1.141:2376".parse().unwrap(),
                network_driver: "ebpf-overlay".into(),
            }),
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(serde_json::from_slice::<NodeRecord>(&json).unwrap(), record);
        let all = record.all_labels();
        assert_eq!(all["kernelversion"], "6.12.0");
        assert_eq!(all["operatingsystem"], "Debian");
        assert_eq!(all["zone"], "east");
    }
}
