//! Addresses.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::{address::AddressAttribute, link::LinkAttribute};

use super::{Netlink, NetlinkError, request_err};

impl Netlink {
    /// `ip addr add IP/PREFIX dev NAME`.
    pub async fn add_ipv4(&self, name: &str, ip: Ipv4Addr, prefix_len: u8) -> Result<(), NetlinkError> {
        let index = self.link_index(name).await?.ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))?;
        self.handle
            .address()
            .add(index, IpAddr::V4(ip), prefix_len)
            .replace()
            .execute()
            .await
            .map_err(request_err(format!("adding {ip}/{prefix_len} to {name}")))
    }
}

impl Netlink {
    /// The name of the interface that holds `ip` (`ip -o addr show to IP`).
    pub async fn interface_with_address(&self, ip: Ipv4Addr) -> Result<Option<String>, NetlinkError> {
        let mut addresses = self.handle.address().get().execute();
        let mut index = None;
        while let Some(message) = addresses.try_next().await.map_err(request_err("listing addresses"))? {
            let holds =
                message.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(a)) if *a == ip));
            if holds {
                index = Some(message.header.index);
                break;
            }
        }
        let Some(index) = index else { return Ok(None) };
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links.try_next().await.map_err(request_err(format!("reading link {index}")))?;
        Ok(link.and_then(|l| {
            l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some(name),
                _ => None,
            })
        }))
    }
}
