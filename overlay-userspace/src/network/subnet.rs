//! Which prefixes are taken, and the choice of a free subnet from the default pool.
//! Pure functions: the store is read by the caller.

use std::str::FromStr;

use ipnet::Ipv4Net;

use super::NetworkError;

/// A prefix that a new overlay subnet must not overlap, and who holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The subnet of an existing overlay network.
    Network { name: String, subnet: Ipv4Net },
    /// A route of a member host (`ip -4 route`).
    Route { host: String, prefix: Ipv4Net, interface: Option<String> },
    /// An address of a member host with its prefix (`ip -4 addr`).
    Address { host: String, address: Ipv4Net, interface: Option<String> },
}

impl Taken {
    /// The addresses it covers.
    pub fn prefix(&self) -> Ipv4Net {
        match self {
            Taken::Network { subnet, .. } => *subnet,
            Taken::Route { prefix, .. } => *prefix,
            Taken::Address { address, .. } => address.trunc(),
        }
    }

    /// The refusal of `subnet` because of this.
    pub fn refusal(&self, subnet: Ipv4Net) -> NetworkError {
        let on = |interface: &Option<String>| interface.as_ref().map_or_else(String::new, |i| format!(" (dev {i})"));
        match self {
            Taken::Network { name, subnet: other } => {
                NetworkError::OverlapsNetwork { subnet, other: name.clone(), other_subnet: *other }
            }
            Taken::Route { host, prefix, interface } => NetworkError::OverlapsHost {
                subnet,
                what: "route",
                prefix: *prefix,
                on: on(interface),
                host: host.clone(),
            },
            Taken::Address { host, address, interface } => NetworkError::OverlapsHost {
                subnet,
                what: "address",
                prefix: *address,
                on: on(interface),
                host: host.clone(),
            },
        }
    }
}

impl std::fmt::Display for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Taken::Network { name, subnet } => write!(f, "{subnet} of network {name}"),
            Taken::Route { host, prefix, .. } => write!(f, "route {prefix} of host {host}"),
            Taken::Address { host, address, .. } => write!(f, "address {address} of host {host}"),
        }
    }
}

pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first of `taken` (in order: networks come before host routes) that `subnet`
/// overlaps.
pub fn first_overlap(subnet: Ipv4Net, taken: &[Taken]) -> Option<&Taken> {
    taken.iter().find(|t| overlaps(subnet, t.prefix()))
}

/// Where subnets are taken from when `--subnet` is not given: `pool` cut in `/size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubnetPool {
    pub pool: Ipv4Net,
    pub size: u8,
}

impl Default for SubnetPool {
    /// 10.0.0.0/8 in /24s, as Docker's overlay networks.
    fn default() -> Self {
        SubnetPool { pool: Ipv4Net::new([10, 0, 0, 0].into(), 8).expect("valid prefix"), size: 24 }
    }
}

impl SubnetPool {
    /// Checks a pool (`10.0.0.0/8`) and the size of the subnets cut from it (`24`).
    pub fn new(pool: &str, size: u8) -> Result<Self, NetworkError> {
        let invalid = |reason: String| NetworkError::InvalidPool { value: format!("{pool} in /{size}"), reason };
        let net = Ipv4Net::from_str(pool).map_err(|_| invalid("the pool is not an IPv4 prefix in CIDR form".into()))?;
        if net.trunc() != net {
            return Err(invalid(format!("the host bits are set; did you mean {}?", net.trunc())));
        }
        if size < net.prefix_len() || size > 30 {
            return Err(invalid(format!("the subnet size must be between /{} and /30", net.prefix_len())));
        }
        Ok(SubnetPool { pool: net, size })
    }

    /// The first `/size` of the pool that overlaps nothing in `taken`, skipping past
    /// each taken prefix at once (a taken /16 costs one step, not 256).
    pub fn first_free(&self, taken: &[Taken]) -> Option<Ipv4Net> {
        let step = 1u64 << (32 - u32::from(self.size));
        let end = u64::from(u32::from(self.pool.broadcast())) + 1;
        let mut start = u64::from(u32::from(self.pool.network()));
        while start < end {
            let candidate = Ipv4Net::new(u32::try_from(start).ok()?.into(), self.size).ok()?;
            match first_overlap(candidate, taken) {
                None => return Some(candidate),
                Some(t) => {
                    // Past the end of whichever is larger, rounded up to the next subnet.
                    let past = u64::from(u32::from(t.prefix().broadcast())).max(start + step - 1) + 1;
                    start = past.div_ceil(step) * step;
                }
            }
        }
        None
    }

    /// [`SubnetPool::first_free`], or the error naming the pool and what fills it.
    pub fn choose(&self, taken: &[Taken]) -> Result<Ipv4Net, NetworkError> {
        self.first_free(taken).ok_or_else(|| NetworkError::PoolExhausted {
            pool: self.pool,
            size: self.size,
            first: taken.iter().find(|t| overlaps(self.pool, t.prefix())).map_or_else(String::new, Taken::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn network(name: &str, subnet: &str) -> Taken {
        Taken::Network { name: name.into(), subnet: net(subnet) }
    }

    fn route(host: &str, prefix: &str) -> Taken {
        Taken::Route { host: host.into(), prefix: net(prefix), interface: Some("eth0".into()) }
    }

    #[test]
    fn overlap_is_symmetric_and_exact_at_the_edges() {
        assert!(overlaps(net("10.0.0.0/8"), net("10.0.9.0/24")));
        assert!(overlaps(net("10.0.9.0/24"), net("10.0.0.0/8")));
        assert!(overlaps(net("10.0.9.128/25"), net("10.0.9.0/24")));
        assert!(!overlaps(net("10.0.9.0/25"), net("10.0.9.128/25")));
        assert!(!overlaps(net("10.0.8.0/24"), net("10.0.9.0/24")));
        assert!(overlaps(net("10.0.9.7/32"), net("10.0.9.0/24")));
    }

    #[test]
    fn the_first_free_subnet_skips_networks_routes_and_addresses() {
        let pool = SubnetPool::default();
        assert_eq!(pool.first_free(&[]), Some(net("10.0.0.0/24")));
        let taken = [
            network("a", "10.0.0.0/24"),
            route("agt01", "10.0.1.0/24"),
            Taken::Address { host: "agt02".into(), address: net("10.0.2.7/24"), interface: None },
            // A /23 in the middle of the way, and a /32 that spoils one /24.
            network("b", "10.0.4.0/23"),
            route("agt03", "10.0.3.9/32"),
        ];
        assert_eq!(pool.first_free(&taken), Some(net("10.0.6.0/24")));
        // Something outside the pool changes nothing.
        assert_eq!(pool.first_free(&[route("h", "192.168.1.0/24")]), Some(net("10.0.0.0/24")));
        // A taken /16 is skipped in one step.
        assert_eq!(pool.first_free(&[route("h", "10.0.0.0/16")]), Some(net("10.1.0.0/24")));
        let small = SubnetPool::new("172.28.0.0/22", 26).unwrap();
        assert_eq!(small.first_free(&[network("x", "172.28.0.0/25")]), Some(net("172.28.0.128/26")));
    }

    #[test]
    fn a_full_pool_names_what_fills_it() {
        let pool = SubnetPool::new("10.9.0.0/23", 24).unwrap();
        let taken = [network("a", "10.9.0.0/24"), route("agt01", "10.9.1.0/24")];
        assert_eq!(pool.first_free(&taken), None);
        let message = pool.choose(&taken).unwrap_err().to_string();
        assert!(message.contains("10.9.0.0/23") && message.contains("network a"), "{message}");
        let covering = [route("agt01", "10.0.0.0/8")];
        assert_eq!(SubnetPool::default().first_free(&covering), None);
        let message = SubnetPool::default().choose(&covering).unwrap_err().to_string();
        assert!(message.contains("route 10.0.0.0/8 of host agt01"), "{message}");
        // The last subnet of the address space is reachable without overflow.
        let top = SubnetPool::new("255.255.255.0/24", 30).unwrap();
        assert_eq!(
            top.first_free(&[route("h", "255.255.255.0/25"), route("h", "255.255.255.128/26")]).unwrap(),
            net("255.255.255.192/30")
        );
    }

    #[test]
    fn refusals_name_the_collision() {
        let subnet = net("10.0.9.0/24");
        let message = network("my_network", "10.0.9.0/25").refusal(subnet).to_string();
        assert!(message.contains("10.0.9.0/25 of overlay network \"my_network\""), "{message}");
        let message = route("agt02", "10.0.0.0/16").refusal(subnet).to_string();
        assert!(message.contains("route 10.0.0.0/16 (dev eth0) of host agt02"), "{message}");
        assert_eq!(
            first_overlap(subnet, &[route("a", "10.0.8.0/24"), route("b", "10.0.9.5/32")]),
            Some(&route("b", "10.0.9.5/32"))
        );
    }

    #[test]
    fn pools_are_checked() {
        assert!(SubnetPool::new("10.0.0.0/8", 24).is_ok());
        assert!(SubnetPool::new("10.0.0.1/8", 24).unwrap_err().to_string().contains("10.0.0.0/8"));
        assert!(SubnetPool::new("10.0.0.0/16", 8).is_err());
        assert!(SubnetPool::new("10.0.0.0/16", 31).is_err());
        assert!(SubnetPool::new("pool", 24).is_err());
    }
}
