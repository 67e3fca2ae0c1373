//! Lookups in the forwarding tables that userspace fills from the cluster store.

use overlay_common::{EndpointKey, HostConfig, Interface, LocalEndpoint, NetworkInfo, Reason, RemoteEndpoint};

use crate::maps::{OVL_CONFIG, OVL_INTERFACES, OVL_LOCAL_EPS, OVL_MEMBERS, OVL_NETWORKS, OVL_REMOTE_EPS};

// Values are copied out at once: a hash map slot can be reused by a concurrent update,
// which is why aya-ebpf's `get` is unsafe.

pub enum Destination {
    Local(LocalEndpoint),
    Remote(RemoteEndpoint),
    Unknown,
}

#[inline(always)]
pub fn config() -> Result<HostConfig, Reason> {
    match OVL_CONFIG.get(0) {
        Some(cfg) if cfg.vtep_ip != 0 => Ok(*cfg),
        _ => Err(Reason::NotConfigured),
    }
}

#[inline(always)]
pub fn interface(ifindex: u32) -> Option<Interface> {
    // SAFETY: copied out immediately, see above.
    unsafe { OVL_INTERFACES.get(ifindex).copied() }
}

#[inline(always)]
pub fn network(vni: u32) -> Option<NetworkInfo> {
    // SAFETY: copied out immediately, see above.
    unsafe { OVL_NETWORKS.get(vni).copied() }
}

#[inline(always)]
pub fn local_endpoint(vni: u32, ip: u32) -> Option<LocalEndpoint> {
    // SAFETY: copied out immediately, see above.
    unsafe { OVL_LOCAL_EPS.get(EndpointKey { vni, ip }).copied() }
}

#[inline(always)]
pub fn remote_endpoint(vni: u32, ip: u32) -> Option<RemoteEndpoint> {
    // SAFETY: copied out immediately, see above.
    unsafe { OVL_REMOTE_EPS.get(EndpointKey { vni, ip }).copied() }
}

#[inline(always)]
pub fn destination(vni: u32, ip: u32) -> Destination {
    if let Some(endpoint) = local_endpoint(vni, ip) {
        return Destination::Local(endpoint);
    }
    match remote_endpoint(vni, ip) {
        Some(endpoint) => Destination::Remote(endpoint),
        None => Destination::Unknown,
    }
}

#[inline(always)]
pub fn is_member(vtep: u32) -> bool {
    OVL_MEMBERS.get_ptr(vtep).is_some()
}
