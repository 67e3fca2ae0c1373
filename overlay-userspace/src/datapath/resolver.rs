//! The host's resolver for Docker containers, as the datapath sees it (`OVL_RESOLVER`,
//! the eBPF side in overlay-ebpf's `resolver.rs`): containers' DNS queries to its
//! address are sent out of the host side of its veth, and its answers, which come back
//! in there, are delivered to the containers that asked.

use std::net::Ipv4Addr;

use aya::maps::{Array, MapData};
use overlay_common::{ResolverConfig, ipv4_key, map_names};

use super::{Datapath, DatapathError, attach, tables::map_err};

/// Where the resolver is: its address and MAC inside its namespace, and the host side
/// of its veth with that side's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverSpec {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub host_interface: String,
    pub host_ip: Ipv4Addr,
}

impl Datapath {
    /// Sends containers' queries to the resolver `spec` describes and delivers its
    /// answers: the container program goes on the host side's ingress (a pinned link,
    /// `links/resolver`), then `OVL_RESOLVER[0]` is written.
    pub fn set_resolver(&mut self, spec: &ResolverSpec) -> Result<(), DatapathError> {
        let ifindex = attach::ifindex(&spec.host_interface)?;
        self.attach_resolver_interface(&spec.host_interface)?;
        self.write_resolver(ResolverConfig {
            ip: ipv4_key(spec.ip.octets()),
            host_ip: ipv4_key(spec.host_ip.octets()),
            ifindex,
            mac: spec.mac,
            _pad: [0; 2],
        })
    }

    /// No resolver any more: queries to its address are dropped as for any unknown
    /// destination. The link goes too (its interface goes with the resolver's namespace).
    pub fn clear_resolver(&mut self) -> Result<(), DatapathError> {
        self.write_resolver(ResolverConfig::default())?;
        self.detach_resolver_interface()
    }

    fn write_resolver(&mut self, config: ResolverConfig) -> Result<(), DatapathError> {
        let name = map_names::RESOLVER;
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
        let mut array: Array<&mut MapData, ResolverConfig> = Array::try_from(map).map_err(map_err(name))?;
        array.set(0, config, 0).map_err(map_err(name))
    }
}
