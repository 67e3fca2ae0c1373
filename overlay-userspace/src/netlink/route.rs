//! Routes.

use std::net::Ipv4Addr;

use rtnetlink::{
    RouteMessageBuilder,
    packet_route::route::{RouteProtocol, RouteScope},
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
}
