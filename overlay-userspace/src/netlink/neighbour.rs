//! Neighbours.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::packet_route::neighbour::NeighbourState;

use super::{Netlink, NetlinkError, request_err};

impl Netlink {
    /// `ip neigh replace IP lladdr MAC dev INTERFACE nud permanent`: the host knows a
    /// container's MAC without asking (ARP from the host side is not answered by the
    /// datapath, which answers containers only). The entry goes with the interface.
    pub async fn set_permanent_neighbour(
        &self,
        ip: Ipv4Addr,
        mac: [u8; 6],
        interface: &str,
    ) -> Result<(), NetlinkError> {
        let index = self.link_index(interface).await?.ok_or_else(|| NetlinkError::NoSuchLink(interface.to_owned()))?;
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(request_err(format!("adding the neighbour {ip} on {interface}")))
    }
}
