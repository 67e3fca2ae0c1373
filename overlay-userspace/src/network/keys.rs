//! The networks' keys, relative to the cluster root (docs/store.md). Everything a
//! network creation checks lives under [`NETWORKS`], so that one condition ("nothing
//! under it changed since I listed it") makes the creation atomic.

/// Everything about networks: records, names, VNIs and the VNI counter.
pub const NETWORKS: &str = "v1/networks/";
/// `v1/networks/ids/ID`: a network's record (JSON [`super::NetworkRecord`]).
pub const IDS: &str = "v1/networks/ids/";
/// `v1/networks/names/NAME`: the network's ID; the name is taken by whoever creates this key.
pub const NAMES: &str = "v1/networks/names/";
/// `v1/networks/vnis/VNI`: the ID of the network holding that VNI.
pub const VNIS: &str = "v1/networks/vnis/";
/// `v1/networks/next-vni`: where the search for a free VNI starts (VNIs are not reused
/// until the counter wraps around).
pub const NEXT_VNI: &str = "v1/networks/next-vni";
/// `v1/host-networks/NODE_ID`: a member host's IPv4 routes and addresses, attached to
/// the node's lease ([`super::HostNetworks`]).
pub const HOST_NETWORKS: &str = "v1/host-networks/";

pub fn id(id: &str) -> String {
    format!("{IDS}{id}")
}

pub fn name(name: &str) -> String {
    format!("{NAMES}{name}")
}

pub fn vni(vni: u32) -> String {
    format!("{VNIS}{vni}")
}

pub fn host_networks(node_id: &str) -> String {
    format!("{HOST_NETWORKS}{node_id}")
}
