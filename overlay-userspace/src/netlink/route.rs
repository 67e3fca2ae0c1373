//! Routes.

use std::net::Ipv4Addr;

use futures_util::TryStreamExt;
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteScope},
};

use super::{Netlink, NetlinkError, request_err};

/// The protocol of the routes the agent makes to its containers (`ip route ... proto
/// 0x4f`), so that what the host publishes of its own routes leaves them out, and
/// anyone reading `ip route` sees whose they are.
pub const CONTAINER_ROUTE_PROTOCOL: u8 = 0x4f;

impl Netlink {
    /// `ip route replace default via GATEWAY`.
    pub async fn set_default_route(&self, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(request_err(format!("adding the default route via {gateway}")))
    }

    /// `ip route replace IP/32 dev INTERFACE scope link proto 0x4f`: this host reaches a
    /// local container straight through its veth (the replies of its egress, traffic to
    /// its published ports). The route goes with the veth.
    pub async fn add_container_route(&self, ip: Ipv4Addr, interface: &str) -> Result<(), NetlinkError> {
        let index = self.link_index(interface).await?.ok_or_else(|| NetlinkError::NoSuchLink(interface.to_owned()))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(ip, 32)
            .output_interface(index)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Other(CONTAINER_ROUTE_PROTOCOL))
            .build();
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(request_err(format!("adding the route to {ip} via {interface}")))
    }

    /// Deletes every route the agent made to a container ([`CONTAINER_ROUTE_PROTOCOL`]),
    /// and returns their destinations. A route usually goes with its veth; these are the
    /// ones whose veth outlived the agent (a Docker container's, which dockerd owns).
    pub async fn remove_container_routes(&self) -> Result<Vec<Ipv4Addr>, NetlinkError> {
        let mut ours = Vec::new();
        let mut stream = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(message) = stream.try_next().await.map_err(request_err("listing the routes"))? {
            if u8::from(message.header.protocol) == CONTAINER_ROUTE_PROTOCOL {
                ours.push(message);
            }
        }
        let mut removed = Vec::new();
        for message in ours {
            let destination = message
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                })
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            match self.handle.route().del(message).execute().await {
                Ok(()) => removed.push(destination),
                // Gone meanwhile, with its veth.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => {}
                Err(error) => return Err(request_err(format!("removing the route to {destination}"))(error)),
            }
        }
        Ok(removed)
    }
}
