//! `overlay agent --cleanup`: takes this host's overlay apart (uninstall, or recovery
//! after a crash): the containers' namespaces with their processes, their resolv.conf
//! files, the pinned datapath (programs detach, maps are freed), the bridge that
//! lends container veths their headroom (`datapath::headroom`), the agent's nftables
//! table and egress device (egress and published ports), and its /32 routes to
//! containers whose veth is still there (Docker's: dockerd owns them). The cluster store
//! is not touched: the node's records expire with its lease. Forwarding, which the
//! agent turned on for the underlay interface, stays on: other software of the host
//! may rely on it by then.

use std::path::Path;

use crate::{datapath, dns, egress, netns};

#[derive(Debug, Default)]
pub struct CleanupReport {
    pub namespaces: Vec<String>,
    pub pins_removed: bool,
    pub egress_table_removed: bool,
    pub egress_device_removed: bool,
    /// Destinations of the routes to containers that were removed.
    pub container_routes: Vec<std::net::Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Datapath(#[from] datapath::DatapathError),
    #[error("listing /run/netns: {0}")]
    List(std::io::Error),
    #[error(transparent)]
    Egress(#[from] egress::EgressError),
    #[error("starting a runtime for nft: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
}

pub fn cleanup(pin_dir: &Path, netns_prefix: &str) -> Result<CleanupReport, CleanupError> {
    let mut report = CleanupReport::default();
    // Refused while an agent runs on these pins: it would lose its datapath under it.
    let _lock = if pin_dir.exists() { Some(datapath::lock_pin_dir(pin_dir)?) } else { None };
    let entries = match std::fs::read_dir("/run/netns") {
        Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(CleanupError::List(e)),
    };
    for name in entries.into_iter().filter(|n| !netns_prefix.is_empty() && n.starts_with(netns_prefix)) {
        let path = netns::path(&name);
        for pid in netns::pids(&path) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        netns::delete_at(&path)?;
        let _ = dns::remove_netns_resolv_conf(&name);
        report.namespaces.push(name);
    }
    report.pins_removed = pin_dir.exists();
    datapath::remove_pins(pin_dir)?;
    // After the namespaces: their veths were its ports.
    datapath::remove_headroom_bridge()?;
    // After the datapath: with the programs gone no container's packet reaches the host
    // stack, so none leaves unmasqueraded.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(CleanupError::Runtime)?;
    report.egress_table_removed = runtime.block_on(egress::remove_table())?;
    let host = runtime.block_on(async { crate::netlink::Netlink::connect() })?;
    report.egress_device_removed = runtime.block_on(egress::host::remove_device(&host))?;
    report.container_routes = runtime.block_on(host.remove_container_routes())?;
    Ok(report)
}
