//! Bringing up this host's datapath when the agent starts: the bpffs, the underlay
//! interface (the one that holds the advertised address), the programs (adopting what a
//! previous agent pinned) and the MTU containers get.

use std::{net::Ipv4Addr, path::PathBuf};

use crate::{
    datapath::{self, Datapath, DatapathConfig, DatapathError},
    netlink::{Netlink, NetlinkError},
};

/// VXLAN's overhead on the underlay MTU.
pub const OVERHEAD: u32 = overlay_common::ENCAP_OVERHEAD;

#[derive(Clone, Debug)]
pub struct DatapathOptions {
    /// Where pins live; see `datapath` module docs.
    pub pin_dir: PathBuf,
    /// `None`: the interface that holds the advertised address.
    pub underlay_interface: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(
        "no interface of this host holds {0}; pass the right --advertise or name the underlay with --underlay-interface"
    )]
    NoUnderlay(Ipv4Addr),
    #[error("the underlay MTU {0} leaves no room for VXLAN's {OVERHEAD} bytes")]
    MtuTooSmall(u32),
}

pub struct ReadyDatapath {
    pub datapath: Datapath,
    pub underlay_interface: String,
    /// MTU for container interfaces: underlay MTU - 50.
    pub container_mtu: u32,
}

/// Loads and attaches the datapath for VTEP `advertise`. Maps pinned by a previous agent
/// are adopted, and the underlay program is replaced in place.
pub async fn start(
    advertise: Ipv4Addr,
    options: &DatapathOptions,
    host: &Netlink,
) -> Result<ReadyDatapath, SetupError> {
    let underlay_interface = match &options.underlay_interface {
        Some(name) => name.clone(),
        None => host.interface_with_address(advertise).await?.ok_or(SetupError::NoUnderlay(advertise))?,
    };
    let mtu = host.link_mtu(&underlay_interface).await?;
    let container_mtu = mtu.checked_sub(OVERHEAD).filter(|m| *m >= 576).ok_or(SetupError::MtuTooSmall(mtu))?;
    if let Some(root) = options.pin_dir.parent() {
        datapath::ensure_bpffs(root)?;
    }
    let config = DatapathConfig {
        pin_dir: options.pin_dir.clone(),
        vtep_ip: advertise,
        underlay_interface: underlay_interface.clone(),
    };
    let mut datapath = Datapath::load(config)?;
    datapath.attach_underlay()?;
    Ok(ReadyDatapath { datapath, underlay_interface, container_mtu })
}
