//! resolv.conf: reading the host's upstreams, writing the containers'.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use super::{DnsError, RESOLVER_IP};

/// The addresses of the `nameserver` lines, in order. Scoped IPv6 addresses
/// (`fe80::1%eth0`) and unparsable lines are skipped.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|address| address.parse().ok())
        .collect()
}

/// A container's resolv.conf: the embedded resolver only, and `search` domains if any.
/// `ndots:0` makes a bare container name one query, not a walk through search domains.
pub fn container_resolv_conf(search: &[&str]) -> String {
    let mut text =
        String::from("# Written by the overlay agent: container names and forwarding to the host's resolvers.\n");
    text.push_str(&format!("nameserver {RESOLVER_IP}\n"));
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    text.push_str("options ndots:0\n");
    text
}

/// Where `ip netns exec NS` finds the namespace's resolv.conf: it bind-mounts
/// `/etc/netns/NS/resolv.conf` over `/etc/resolv.conf` for the command it runs.
pub fn netns_resolv_conf_path(netns: &str) -> PathBuf {
    Path::new("/etc/netns").join(netns).join("resolv.conf")
}

/// Writes `content` as namespace `netns`'s resolv.conf (see [`netns_resolv_conf_path`])
/// and returns the path. Equivalent: `mkdir -p /etc/netns/NS && cat > .../resolv.conf`.
pub fn write_netns_resolv_conf(netns: &str, content: &str) -> Result<PathBuf, DnsError> {
    let path = netns_resolv_conf_path(netns);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, content)
    };
    write().map_err(|source| DnsError::WriteResolvConf { path: path.clone(), source })?;
    Ok(path)
}

/// Removes what [`write_netns_resolv_conf`] wrote (the file and `/etc/netns/NS` if it is
/// then empty). A missing file is not an error.
pub fn remove_netns_resolv_conf(netns: &str) -> Result<(), DnsError> {
    let path = netns_resolv_conf_path(netns);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(DnsError::WriteResolvConf { path, source }),
    }
    if let Some(dir) = path.parent() {
        // Fails if something else lives there (hosts, nsswitch.conf): leave it.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_reads_nameserver_lines() {
        let text = "# comment\nsearch example.org\nnameserver 192.0.2.1\nnameserver 2001:db8::53 # v6\n\
                    nameserver fe80::1%eth0\n;nameserver 192.0.2.9\nnameserver\noptions edns0\nnameserver 127.0.0.53\n";
        let servers: Vec<String> = nameservers(text).iter().map(ToString::to_string).collect();
        assert_eq!(servers, ["192.0.2.1", "2001:db8::53", "127.0.0.53"]);
    }

    #[test]
    fn dns_container_resolv_conf_points_at_the_embedded_resolver() {
        let text = container_resolv_conf(&["corp.example"]);
        assert_eq!(nameservers(&text), [IpAddr::from(RESOLVER_IP)]);
        assert!(text.contains("search corp.example\n"));
        assert!(text.contains("options ndots:0\n"));
        assert!(!container_resolv_conf(&[]).contains("search"));
    }
}
