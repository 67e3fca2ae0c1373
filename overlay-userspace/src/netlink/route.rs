//! Routes.

use std::net::Ipv4Addr;

use rtnetlink::RouteMessageBuilder;

use super::{Netlink, NetlinkError, request_err};

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
}
