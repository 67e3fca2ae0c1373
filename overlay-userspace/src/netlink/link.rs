//! Links: veth pairs, up, MTU, MAC, lookup and deletion.

use std::os::fd::{AsRawFd, BorrowedFd};

use futures_util::TryStreamExt;
use rtnetlink::{
    LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan,
    packet_route::link::{InfoBridge, InfoData, InfoVeth, LinkAttribute},
};

use super::{Netlink, NetlinkError, request_err};

/// A veth pair whose peer is created directly inside another namespace.
pub struct VethSpec<'a> {
    /// Name of the end that stays in this connection's namespace.
    pub name: &'a str,
    /// Name of the peer, inside `peer_netns`.
    pub peer_name: &'a str,
    pub peer_netns: BorrowedFd<'a>,
    pub peer_mac: Option<[u8; 6]>,
    pub mtu: u32,
}

impl Netlink {
    /// The index of interface `name`, if it exists (`ip link show NAME`).
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut links = self.handle.link().get().match_name(name.to_owned()).execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(link.header.index)),
            Ok(None) => Ok(None),
            // The kernel answers ENODEV for an unknown name.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(source) => Err(NetlinkError::Request { what: format!("looking up {name}"), source }),
        }
    }

    /// `ip link add NAME mtu MTU type veth peer name PEER netns NS address MAC mtu MTU`.
    pub async fn create_veth(&self, spec: &VethSpec<'_>) -> Result<(), NetlinkError> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.peer_name.to_owned())
            .mtu(spec.mtu)
            .setns_by_fd(spec.peer_netns.as_raw_fd());
        if let Some(mac) = spec.peer_mac {
            peer = peer.address(mac.to_vec());
        }
        let message = LinkVeth::new(spec.name, spec.peer_name)
            .mtu(spec.mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(request_err(format!("creating veth {} <-> {}", spec.name, spec.peer_name)))
    }

    /// `ip link add NAME type bridge mcast_snooping 0`, left down. Returns the bridge's
    /// index, also when it existed already.
    pub async fn ensure_bridge(&self, name: &str) -> Result<u32, NetlinkError> {
        if let Some(index) = self.link_index(name).await? {
            return Ok(index);
        }
        // Not LinkBridge::new, which brings the bridge up.
        let message =
            LinkMessageBuilder::<LinkBridge>::new(name).append_info_data(InfoBridge::MulticastSnooping(false)).build();
        self.handle.link().add(message).execute().await.map_err(request_err(format!("creating bridge {name}")))?;
        self.link_index(name).await?.ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))
    }

    /// `ip link add NAME address MAC type veth peer name PEER`, both ends in this
    /// namespace, unless a link `NAME` exists (its MAC is then set to `mac`); its index.
    pub async fn ensure_veth_pair(&self, name: &str, peer: &str, mac: [u8; 6]) -> Result<u32, NetlinkError> {
        if self.link_index(name).await?.is_none() {
            let message = LinkVeth::new(name, peer).address(mac.to_vec()).build();
            self.handle.link().add(message).execute().await.map_err(request_err(format!("creating veth {name}")))?;
        } else {
            let message = LinkUnspec::new_with_name(name).address(mac.to_vec()).build();
            self.handle.link().set(message).execute().await.map_err(request_err(format!("setting {name}'s MAC")))?;
        }
        self.link_index(name).await?.ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))
    }

    /// `ip link add NAME type vxlan id VNI dstport PORT` (left down, so it binds no
    /// socket), unless a link of that name exists.
    pub async fn ensure_vxlan(&self, name: &str, vni: u32, port: u16) -> Result<(), NetlinkError> {
        if self.link_index(name).await?.is_some() {
            return Ok(());
        }
        let message = LinkVxlan::new(name, vni).port(port).build();
        self.handle.link().add(message).execute().await.map_err(request_err(format!("creating VXLAN device {name}")))
    }

    /// `ip link set NAME master CONTROLLER` (the controller by its index).
    pub async fn set_controller(&self, name: &str, controller: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_name(name).controller(controller).build();
        self.handle.link().set(message).execute().await.map_err(request_err(format!("enslaving {name}")))
    }

    /// `ip link set NAME up`.
    pub async fn set_up(&self, name: &str) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_name(name).up().build();
        self.handle.link().set(message).execute().await.map_err(request_err(format!("setting {name} up")))
    }

    /// `ip link del NAME` (its veth peer goes with it). Absent is not an error.
    pub async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        let Some(index) = self.link_index(name).await? else { return Ok(()) };
        self.handle.link().del(index).execute().await.map_err(request_err(format!("deleting {name}")))
    }

    /// The MTU of `name`.
    pub async fn link_mtu(&self, name: &str) -> Result<u32, NetlinkError> {
        self.link_attribute(name, "MTU", |a| match a {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
        .await
    }

    /// One attribute of link `name`, picked by `pick`.
    async fn link_attribute<T>(
        &self,
        name: &str,
        what: &str,
        pick: impl Fn(&LinkAttribute) -> Option<T>,
    ) -> Result<T, NetlinkError> {
        let mut links = self.handle.link().get().match_name(name.to_owned()).execute();
        let link = links
            .try_next()
            .await
            .map_err(request_err(format!("reading {name}")))?
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))?;
        link.attributes.iter().find_map(pick).ok_or_else(|| NetlinkError::NoAnswer(format!("the {what} of {name}")))
    }

    /// The MAC address of `name`.
    pub async fn link_mac(&self, name: &str) -> Result<[u8; 6], NetlinkError> {
        self.link_attribute(name, "MAC", |a| match a {
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut mac = [0; 6];
                mac.copy_from_slice(bytes);
                Some(mac)
            }
            _ => None,
        })
        .await
    }
}
