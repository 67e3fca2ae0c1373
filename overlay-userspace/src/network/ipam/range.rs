//! The addresses of a network: what may be handed out dynamically (the IP range, or
//! the subnet, without the network, broadcast and gateway addresses) and what may be
//! requested statically (any address of the subnet but those three).

use std::{collections::HashSet, net::Ipv4Addr};

use ipnet::Ipv4Net;

use super::IpamError;
use crate::network::NetworkRecord;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRange {
    network: String,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
    /// Where dynamic addresses come from.
    pool: Ipv4Net,
}

impl AddressRange {
    pub fn of(network: &NetworkRecord) -> Self {
        AddressRange {
            network: network.name.clone(),
            subnet: network.subnet,
            gateway: network.gateway,
            pool: network.ip_range.unwrap_or(network.subnet),
        }
    }

    /// The prefix dynamic addresses come from.
    pub fn pool(&self) -> Ipv4Net {
        self.pool
    }

    /// Slots in the pool, reserved ones included (indices are `0..len`).
    pub fn len(&self) -> u32 {
        u32::try_from((1u64 << (32 - u32::from(self.pool.prefix_len()))).min(u64::from(u32::MAX))).unwrap_or(u32::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.usable() == 0
    }

    /// The addresses of the pool that may be handed out.
    pub fn usable(&self) -> u32 {
        let reserved = self.reserved().iter().filter(|(a, _)| self.pool.contains(a)).count();
        self.len() - u32::try_from(reserved).unwrap_or(0)
    }

    fn reserved(&self) -> [(Ipv4Addr, &'static str); 3] {
        [
            (self.subnet.network(), "network address"),
            (self.subnet.broadcast(), "broadcast address"),
            (self.gateway, "gateway"),
        ]
    }

    pub fn at(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pool.network()).wrapping_add(index % self.len().max(1)))
    }

    /// The index of `address` in the pool, if it is in it.
    pub fn index_of(&self, address: Ipv4Addr) -> Option<u32> {
        self.pool.contains(&address).then(|| u32::from(address) - u32::from(self.pool.network()))
    }

    /// Whether a container may get `address` when it asks for it: inside the subnet
    /// and none of the network, broadcast and gateway addresses.
    pub fn check_static(&self, address: Ipv4Addr) -> Result<(), IpamError> {
        if !self.subnet.contains(&address) {
            return Err(IpamError::OutsideSubnet { address, network: self.network.clone(), subnet: self.subnet });
        }
        if let Some((_, what)) = self.reserved().iter().find(|(a, _)| *a == address) {
            return Err(IpamError::Reserved { address, what, network: self.network.clone() });
        }
        Ok(())
    }

    /// The first address of the pool at or after index `start` (wrapping around) that
    /// is neither reserved nor in `taken`.
    pub fn next_free(&self, start: u32, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let len = self.len();
        let reserved = self.reserved();
        (0..len)
            .map(|i| self.at(start.wrapping_add(i) % len))
            .find(|a| !taken.contains(a) && !reserved.iter().any(|(r, _)| r == a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(subnet: &str, gateway: &str, ip_range: Option<&str>) -> NetworkRecord {
        NetworkRecord {
            id: "0".repeat(64),
            name: "n".into(),
            driver: "overlay".into(),
            subnet: subnet.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            ip_range: ip_range.map(|r| r.parse().unwrap()),
            vni: 4096,
            internal: false,
            labels: Default::default(),
            created_at: 0,
        }
    }

    #[test]
    fn network_broadcast_and_gateway_are_never_free() {
        let range = AddressRange::of(&network("10.0.9.0/30", "10.0.9.1", None));
        assert_eq!(range.len(), 4);
        assert_eq!(range.usable(), 1);
        let none = HashSet::new();
        for start in 0..8 {
            assert_eq!(range.next_free(start, &none), Some(Ipv4Addr::new(10, 0, 9, 2)), "start {start}");
        }
        assert_eq!(range.next_free(0, &HashSet::from([Ipv4Addr::new(10, 0, 9, 2)])), None);
        let range = AddressRange::of(&network("10.0.9.0/24", "10.0.9.254", None));
        assert_eq!(range.next_free(254, &none), Some(Ipv4Addr::new(10, 0, 9, 1)));
        assert_eq!(range.next_free(253, &none), Some(Ipv4Addr::new(10, 0, 9, 253)));
        assert_eq!(range.usable(), 253);
    }

    #[test]
    fn dynamic_addresses_come_from_the_range_static_ones_from_the_subnet() {
        let range = AddressRange::of(&network("10.0.9.0/24", "10.0.9.1", Some("10.0.9.128/25")));
        assert_eq!(range.usable(), 127);
        assert_eq!(range.next_free(0, &HashSet::new()), Some(Ipv4Addr::new(10, 0, 9, 128)));
        assert_eq!(range.index_of(Ipv4Addr::new(10, 0, 9, 130)), Some(2));
        assert_eq!(range.index_of(Ipv4Addr::new(10, 0, 9, 2)), None);
        assert!(range.check_static(Ipv4Addr::new(10, 0, 9, 2)).is_ok());
        for (address, says) in [
            ("10.0.9.0", "network address"),
            ("10.0.9.255", "broadcast address"),
            ("10.0.9.1", "gateway"),
            ("10.0.10.1", "outside the subnet"),
        ] {
            let message = range.check_static(address.parse().unwrap()).unwrap_err().to_string();
            assert!(message.contains(says), "{address}: {message}");
        }
    }
}
