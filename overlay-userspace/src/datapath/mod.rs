//! The eBPF datapath on one host: loading, attaching, pinning, and the typed tables
//! that the control plane fills.
//!
//! Everything that must outlive the agent is pinned under the datapath's pin
//! directory, on a bpffs mounted outside /sys (`ip netns exec` remounts /sys, so
//! /sys/fs/bpf is not visible inside a host namespace):
//!
//! ```text
//! PIN_DIR/maps/OVL_*            the maps (adopted by name when the agent restarts)
//! PIN_DIR/links/underlay        TCX ingress link on the underlay interface
//! PIN_DIR/links/if-IFNAME       TCX ingress link on a container's host-side veth
//! PIN_DIR/links/resolver        TCX ingress link on the host side of the resolver's veth
//! ```

mod attach;
mod bpffs;
mod counters;
mod error;
mod headroom;
mod layout;
mod pin_lock;
mod pinned;
mod resolver;
mod tables;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, links::PinnedLink},
};
use overlay_common::{HostConfig, ipv4_key, map_names, program_names};

pub use bpffs::{DEFAULT_BPFFS, ensure_bpffs};
pub use counters::{CounterSnapshot, NetworkCounters, read_pinned_counters};
pub use error::DatapathError;
pub use headroom::{BRIDGE as HEADROOM_BRIDGE, remove as remove_headroom_bridge};
pub use pin_lock::{PinLock, lock_pin_dir};
pub use pinned::{PinnedRemotes, pinned_endpoints, pinned_remotes};
pub use resolver::ResolverSpec;
pub use tables::{LocalEndpointSpec, NetworkSpec, RemoteEndpointSpec, SubnetSpec};

/// Key size, value size and capacity of a pinned map (`layout.rs` checks them; a
/// mismatch is a [`DatapathError`], so both use it and it lives here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

/// The object file built from overlay-ebpf by this crate's build script.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/overlay-ebpf.o"));

/// What the datapath needs to know about its host.
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    /// Directory on a bpffs for this host's maps and links; see the module docs.
    pub pin_dir: PathBuf,
    /// The address VXLAN is sent from and received on.
    pub vtep_ip: Ipv4Addr,
    /// The interface that carries VXLAN (where the underlay program is attached).
    pub underlay_interface: String,
}

/// A loaded datapath. Dropping it leaves the pinned programs running; [`Datapath::unpin_all`]
/// removes them.
pub struct Datapath {
    ebpf: Ebpf,
    config: DatapathConfig,
}

impl Datapath {
    /// Loads both TC programs, adopting maps already pinned under `pin_dir/maps`, and
    /// writes the host configuration. Like `ip link show DEV`, the underlay interface
    /// is looked up in the calling thread's network namespace: call it from the host's
    /// namespace (see [`crate::netns::run_in`]).
    pub fn load(config: DatapathConfig) -> Result<Self, DatapathError> {
        if config.vtep_ip.is_unspecified() {
            return Err(DatapathError::InvalidConfig("the VTEP address must not be 0.0.0.0".into()));
        }
        let underlay_ifindex = attach::ifindex(&config.underlay_interface)?;
        let maps_dir = config.pin_dir.join("maps");
        let links_dir = config.pin_dir.join("links");
        for dir in [&maps_dir, &links_dir] {
            std::fs::create_dir_all(dir).map_err(|source| DatapathError::PinDir { path: dir.clone(), source })?;
        }
        bpffs::check_is_bpffs(&config.pin_dir)?;
        // Before the load: aya would adopt a pinned map of any layout.
        let migration = layout::prepare(&maps_dir, &config.pin_dir)?;

        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .load(OBJECT)
            .map_err(|source| DatapathError::Load { pin_dir: config.pin_dir.clone(), source })?;
        for name in map_names::ALL {
            if ebpf.map(name).is_none() {
                return Err(DatapathError::MissingMap(name));
            }
        }
        for name in [program_names::FROM_CONTAINER, program_names::FROM_UNDERLAY] {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingProgram(name))?
                .try_into()
                .map_err(|source| DatapathError::Program { name, source })?;
            program.load().map_err(|source| DatapathError::Program { name, source })?;
        }
        let mut datapath = Datapath { ebpf, config };
        datapath
            .set_host_config(HostConfig { vtep_ip: ipv4_key(datapath.config.vtep_ip.octets()), underlay_ifindex })?;
        datapath.migrate(migration)?;
        Ok(datapath)
    }

    pub fn config(&self) -> &DatapathConfig {
        &self.config
    }

    pub fn pin_dir(&self) -> &Path {
        &self.config.pin_dir
    }

    /// Removes every pin of this datapath: its programs detach and its maps are freed
    /// once no process holds them. Like `rm -r PIN_DIR` on the bpffs.
    pub fn unpin_all(self) -> Result<(), DatapathError> {
        let pin_dir = self.config.pin_dir.clone();
        drop(self);
        remove_pins(&pin_dir)
    }
}

/// Removes a datapath's pins without loading it (cleanup after a crash or for uninstall).
/// Returns once the kernel has released the pinned links, so that their programs are
/// detached by then (it frees an unpinned link from a work queue, which a busy machine
/// may run a while later).
pub fn remove_pins(pin_dir: &Path) -> Result<(), DatapathError> {
    let links = pinned_link_ids(pin_dir);
    match std::fs::remove_dir_all(pin_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(DatapathError::PinDir { path: pin_dir.to_owned(), source }),
    }
    wait_released(&links);
    Ok(())
}

/// The IDs of the links pinned under `PIN_DIR/links` (`bpftool link show pinned PATH`).
fn pinned_link_ids(pin_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(pin_dir.join("links")) else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let link = aya::programs::links::FdLink::from(PinnedLink::from_pin(entry.ok()?.path()).ok()?);
            link.info().ok().map(|info| info.id())
        })
        .collect()
}

/// How long [`remove_pins`] waits for the kernel to release the links it unpinned.
const LINK_RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until none of the links `ids` exists any more (`bpftool link list`), or for
/// [`LINK_RELEASE_TIMEOUT`]: a link held by another process stays, and is that
/// process's to release.
fn wait_released(ids: &[u32]) {
    let deadline = std::time::Instant::now() + LINK_RELEASE_TIMEOUT;
    while !ids.is_empty() && std::time::Instant::now() < deadline {
        let alive = aya::programs::loaded_links().filter_map(Result::ok).any(|link| ids.contains(&link.id()));
        if !alive {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
