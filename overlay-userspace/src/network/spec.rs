//! What `overlay network create` is given, checked completely before anything is
//! written: the name, the driver, the subnet, gateway and IP range, the labels.

use std::{collections::BTreeMap, net::Ipv4Addr, str::FromStr};

use ipnet::Ipv4Net;

use super::NetworkError;

/// The one driver: VXLAN across the cluster's hosts.
pub const DRIVER: &str = "overlay";

/// The options of `overlay network create`, as the operator typed them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateRequest {
    pub name: String,
    /// `--driver`; `None` means "overlay".
    pub driver: Option<String>,
    /// `--subnet CIDR`; `None`: the first free subnet of the default pool.
    pub subnet: Option<String>,
    /// `--gateway IP`; `None`: the first address of the subnet.
    pub gateway: Option<String>,
    /// `--ip-range CIDR`: dynamic addresses come from this part of the subnet only.
    pub ip_range: Option<String>,
    /// `--label KEY=VALUE`, repeatable.
    pub labels: Vec<String>,
    /// `--internal`: no way out of the overlay (the DNS resolver forwards nothing).
    pub internal: bool,
    /// The network's ID; `None` makes a random one. The Docker plugin passes Docker's.
    pub id: Option<String>,
}

/// A validated request: every field is well formed and consistent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub id: Option<String>,
    /// `None`: to be chosen from the default pool when the network is created.
    pub addressing: Option<Addressing>,
    pub labels: BTreeMap<String, String>,
    pub internal: bool,
}

/// A subnet, its gateway and the range dynamic addresses come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressing {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Ipv4Net>,
}

impl Addressing {
    /// A subnet with its default gateway (the first address) and no range.
    pub fn with_default_gateway(subnet: Ipv4Net) -> Self {
        Addressing { subnet, gateway: first_host(subnet), ip_range: None }
    }
}

/// The first address after the network address (the default gateway).
pub fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

impl NetworkSpec {
    /// Checks everything the request says; nothing is read or written.
    pub fn parse(request: &CreateRequest) -> Result<Self, NetworkError> {
        validate_name(&request.name)?;
        if let Some(driver) = &request.driver
            && driver != DRIVER
        {
            return Err(NetworkError::UnknownDriver { driver: driver.clone() });
        }
        if let Some(id) = &request.id {
            validate_id(id)?;
        }
        let addressing = match &request.subnet {
            None => {
                if request.gateway.is_some() {
                    return Err(NetworkError::NeedsSubnet { option: "--gateway" });
                }
                if request.ip_range.is_some() {
                    return Err(NetworkError::NeedsSubnet { option: "--ip-range" });
                }
                None
            }
            Some(subnet) => Some(parse_addressing(subnet, request.gateway.as_deref(), request.ip_range.as_deref())?),
        };
        Ok(NetworkSpec {
            name: request.name.clone(),
            id: request.id.clone(),
            addressing,
            labels: parse_labels(&request.labels)?,
            internal: request.internal,
        })
    }
}

/// 1 to 63 letters, digits, `_` or `-`, starting with a letter or digit. No dots: the
/// name is one DNS label (`container.NETWORK` resolves).
pub fn validate_name(name: &str) -> Result<(), NetworkError> {
    let invalid = |reason| Err(NetworkError::InvalidName { name: name.to_owned(), reason });
    if name.is_empty() || name.len() > 63 {
        return invalid("use 1 to 63 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("it must start with a letter or a digit");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        return invalid("use only letters, digits, '_' and '-' (no dots: the name is a DNS label)");
    }
    Ok(())
}

/// 12 to 64 lowercase hex digits (Docker's network IDs are 64).
pub fn validate_id(id: &str) -> Result<(), NetworkError> {
    if (12..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(NetworkError::InvalidId { id: id.to_owned() })
    }
}

/// An IPv4 prefix in CIDR form whose host bits are clear.
pub fn parse_prefix(option: &'static str, value: &str) -> Result<Ipv4Net, NetworkError> {
    let invalid = |reason: &str| NetworkError::InvalidPrefix { option, value: value.to_owned(), reason: reason.into() };
    if !value.contains('/') {
        return Err(invalid("give a prefix length, e.g. 10.0.9.0/24"));
    }
    let net = match Ipv4Net::from_str(value) {
        Ok(net) => net,
        Err(_) if value.contains(':') => return Err(invalid("IPv6 is not supported; give an IPv4 prefix")),
        Err(_) => return Err(invalid("not an IPv4 prefix in CIDR form, e.g. 10.0.9.0/24")),
    };
    if net.trunc() != net {
        return Err(NetworkError::HostBitsSet { option, value: value.to_owned(), network: net.trunc() });
    }
    Ok(net)
}

/// Checks a subnet, an optional gateway and an optional IP range together.
pub fn parse_addressing(
    subnet: &str,
    gateway: Option<&str>,
    ip_range: Option<&str>,
) -> Result<Addressing, NetworkError> {
    let subnet = parse_prefix("--subnet", subnet)?;
    if subnet.prefix_len() > 30 {
        return Err(NetworkError::SubnetTooSmall { subnet });
    }
    let gateway = match gateway {
        None => first_host(subnet),
        Some(value) => {
            let invalid = |reason: String| NetworkError::InvalidGateway { value: value.to_owned(), reason };
            let gateway: Ipv4Addr =
                value.parse().map_err(|_| invalid("not an IPv4 address (give the address alone, no /len)".into()))?;
            if !subnet.contains(&gateway) {
                return Err(invalid(format!("it is outside --subnet {subnet}; give an address inside it")));
            }
            if gateway == subnet.network() {
                return Err(invalid(format!("it is the network address of {subnet}; use another address")));
            }
            if gateway == subnet.broadcast() {
                return Err(invalid(format!("it is the broadcast address of {subnet}; use another address")));
            }
            gateway
        }
    };
    let ip_range = match ip_range {
        None => None,
        Some(value) => {
            let range = parse_prefix("--ip-range", value)?;
            if !subnet.contains(&range) {
                return Err(NetworkError::RangeOutsideSubnet { range, subnet });
            }
            let reserved = [subnet.network(), subnet.broadcast(), gateway];
            let usable = range.hosts().chain([range.network(), range.broadcast()]).any(|a| !reserved.contains(&a));
            if !usable {
                return Err(NetworkError::RangeEmpty { range });
            }
            Some(range)
        }
    };
    Ok(Addressing { subnet, gateway, ip_range })
}

/// Parses `--label KEY=VALUE` arguments (see [`crate::labels::parse`]).
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>, NetworkError> {
    crate::labels::parse(labels, &[]).map_err(|e| NetworkError::InvalidLabel { label: e.label, reason: e.reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(subnet: Option<&str>, gateway: Option<&str>, ip_range: Option<&str>) -> CreateRequest {
        CreateRequest {
            name: "my_network".into(),
            subnet: subnet.map(Into::into),
            gateway: gateway.map(Into::into),
            ip_range: ip_range.map(Into::into),
            ..CreateRequest::default()
        }
    }

    fn err(request: &CreateRequest) -> String {
        NetworkSpec::parse(request).unwrap_err().to_string()
    }

    #[test]
    fn a_subnet_gets_its_first_address_as_gateway() {
        let spec = NetworkSpec::parse(&request(Some("10.0.9.0/24"), None, None)).unwrap();
        let addressing = spec.addressing.unwrap();
        assert_eq!(addressing.subnet.to_string(), "10.0.9.0/24");
        assert_eq!(addressing.gateway, Ipv4Addr::new(10, 0, 9, 1));
        assert_eq!(addressing.ip_range, None);
        let spec =
            NetworkSpec::parse(&request(Some("10.0.9.0/24"), Some("10.0.9.254"), Some("10.0.9.128/25"))).unwrap();
        let addressing = spec.addressing.unwrap();
        assert_eq!(addressing.gateway, Ipv4Addr::new(10, 0, 9, 254));
        assert_eq!(addressing.ip_range.unwrap().to_string(), "10.0.9.128/25");
        assert_eq!(NetworkSpec::parse(&request(None, None, None)).unwrap().addressing, None);
    }

    #[test]
    fn bad_cidrs_are_refused_saying_why() {
        let host_bits = err(&request(Some("10.0.9.1/24"), None, None));
        assert!(host_bits.contains("host bits") && host_bits.contains("10.0.9.0/24"), "{host_bits}");
        for (bad, says) in [
            ("10.0.9.0", "prefix length"),
            ("10.0.9.0/33", "not an IPv4 prefix"),
            ("10.0.300.0/24", "not an IPv4 prefix"),
            ("fd00::/64", "IPv6"),
            ("net", "prefix length"),
        ] {
            let message = err(&request(Some(bad), None, None));
            assert!(message.contains(says), "{bad}: {message}");
        }
        // A /30 holds a gateway and one container; a /31 or /32 does not.
        assert!(NetworkSpec::parse(&request(Some("10.0.9.0/30"), None, None)).is_ok());
        for small in ["10.0.9.0/31", "10.0.9.1/32"] {
            assert!(err(&request(Some(small), None, None)).contains("too small"), "{small}");
        }
    }

    #[test]
    fn gateway_and_range_must_lie_in_the_subnet() {
        let subnet = Some("10.0.9.0/24");
        for (gateway, says) in [
            ("10.0.8.1", "outside"),
            ("10.0.9.0", "network address"),
            ("10.0.9.255", "broadcast address"),
            ("10.0.9.1/24", "not an IPv4 address"),
            ("gw", "not an IPv4 address"),
        ] {
            let message = err(&request(subnet, Some(gateway), None));
            assert!(message.contains(says), "{gateway}: {message}");
        }
        assert!(err(&request(subnet, None, Some("10.0.8.0/25"))).contains("not inside --subnet"));
        assert!(err(&request(subnet, None, Some("10.0.0.0/16"))).contains("not inside --subnet"));
        assert!(err(&request(subnet, None, Some("10.0.9.129/25"))).contains("host bits"));
        // A /31 range of the network address and the gateway leaves nothing to hand out.
        assert!(err(&request(subnet, None, Some("10.0.9.0/31"))).contains("no address"));
        assert!(NetworkSpec::parse(&request(subnet, None, Some("10.0.9.0/30"))).is_ok());
        assert!(err(&request(None, Some("10.0.9.1"), None)).contains("needs --subnet"));
        assert!(err(&request(None, None, Some("10.0.9.0/25"))).contains("needs --subnet"));
    }

    #[test]
    fn names_drivers_labels_and_ids() {
        for good in ["my_network", "a", "net-1", "N2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-net", "_net", "my.network", "my network", "n/x", &"x".repeat(64)] {
            assert!(matches!(validate_name(bad), Err(NetworkError::InvalidName { .. })), "{bad}");
        }
        let mut bridge = request(None, None, None);
        bridge.driver = Some("bridge".into());
        assert!(err(&bridge).contains("unknown driver \"bridge\""));
        bridge.driver = Some("overlay".into());
        assert!(NetworkSpec::parse(&bridge).is_ok());
        let mut labelled = request(None, None, None);
        labelled.labels = vec!["team=web".into(), "com.example/x=".into()];
        let spec = NetworkSpec::parse(&labelled).unwrap();
        assert_eq!(spec.labels["team"], "web");
        assert_eq!(spec.labels["com.example/x"], "");
        for bad in [&["team"][..], &["=x"], &["a=1", "a=2"], &["-a=1"], &["a=\u{1}"]] {
            labelled.labels = bad.iter().map(|s| s.to_string()).collect();
            assert!(err(&labelled).contains("KEY=VALUE"), "{bad:?}");
        }
        assert!(validate_id(&"ab".repeat(32)).is_ok());
        assert!(validate_id("0123456789ab").is_ok());
        for bad in ["0123456789a", "0123456789AB", &"a".repeat(65), "0123456789ag"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
