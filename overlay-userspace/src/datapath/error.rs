use std::path::PathBuf;

use aya::{EbpfError, maps::MapError, pin::PinError, programs::ProgramError};

/// What went wrong with the datapath, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("invalid datapath configuration: {0}")]
    InvalidConfig(String),
    #[error("interface {name:?} not found in this network namespace ({source}); check `ip link show`")]
    NoSuchInterface { name: String, source: nix::Error },
    #[error("cannot use pin directory {path}: {source}")]
    PinDir { path: PathBuf, source: std::io::Error },
    #[error(
        "pin directory {path} is in use by another agent ({holder}); two agents on one datapath would undo \
         each other: stop that one first, or give this one its own --pin-dir"
    )]
    PinDirInUse { path: PathBuf, holder: String },
    #[error(
        "{path} is not on a bpffs; mount one with `mount -t bpf bpffs DIR` outside /sys \
         (ip netns exec remounts /sys) and pin under it"
    )]
    NotBpffs { path: PathBuf },
    #[error(
        "loading the eBPF object failed: {source}. If maps pinned under {pin_dir} come from an \
         older version, remove them with `overlay agent --cleanup`"
    )]
    Load { pin_dir: PathBuf, source: EbpfError },
    #[error(
        "map {map} pinned under {pin_dir} has another layout (key {} bytes, value {} bytes, {} entries; this \
         version needs {}, {}, {}) and cannot be migrated: stop the agent and remove the pins with \
         `overlay agent --cleanup`, then start it again (it rewrites its tables from the store)",
        found.key_size, found.value_size, found.max_entries, wanted.key_size, wanted.value_size, wanted.max_entries
    )]
    PinnedLayout { map: &'static str, found: super::Layout, wanted: super::Layout, pin_dir: PathBuf },
    #[error("the eBPF object has no map {0}: the object and this binary are out of step")]
    MissingMap(&'static str),
    #[error("the eBPF object has no program {0}: the object and this binary are out of step")]
    MissingProgram(&'static str),
    #[error("program {name}: {source}")]
    Program { name: &'static str, source: ProgramError },
    #[error("link of program {name}: {source}")]
    Link { name: &'static str, source: aya::programs::links::LinkError },
    #[error("pinning {path}: {source}")]
    Pin { path: PathBuf, source: PinError },
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: MapError },
    #[error("opening pinned map {path}: {source}; is the agent running on this host?")]
    Pinned { path: PathBuf, source: MapError },
    #[error("map {map} is full ({capacity} entries); remove entries or raise the capacity")]
    MapFull { map: &'static str, capacity: u32 },
    #[error(
        "giving {interface} headroom for the encapsulation (making it a port of bridge {}): {source}",
        super::headroom::BRIDGE
    )]
    Headroom { interface: String, source: crate::netlink::NetlinkError },
    #[error("no free network counter slot: at most {0} networks per host")]
    NoCounterSlot(u32),
}
