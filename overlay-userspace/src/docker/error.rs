//! The plugin's errors. [`DockerError`]: what stops the plugin, or a store of its own
//! (state file, dockerd's API) that failed. [`DriverError`]: why one call of dockerd's
//! failed; the server turns it into the protocol's `Err`/`Error` message where it writes
//! the answer, and nowhere else.

use std::{net::Ipv4Addr, path::PathBuf};

use ipnet::Ipv4Net;

use super::PLUGIN_DIR;
use crate::{
    container::ContainerError,
    datapath::DatapathError,
    dns::DnsError,
    egress::EgressError,
    endpoint::EndpointError,
    netlink::NetlinkError,
    network::{NetworkError, ipam::IpamError},
    store::StoreError,
};

/// What went wrong with the Docker plugin, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("invalid Docker plugin configuration: {0}")]
    Config(String),
    #[error(
        "cannot listen on the plugin socket {path}: {source}; the agent must run as root and the \
         directory must be writable (dockerd looks in {PLUGIN_DIR})"
    )]
    Listen { path: PathBuf, source: std::io::Error },
    #[error("serving the plugin socket {path}: {source}")]
    Serve { path: PathBuf, source: std::io::Error },
    #[error("the Docker API at {socket}: {message}; is dockerd running (--docker-socket)?")]
    Api { socket: PathBuf, message: String },
    #[error("the plugin state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error("the DNS resolver for Docker containers: {0}")]
    Resolver(String),
}

/// Why a network or IPAM driver call failed, in words for the user who ran the
/// `docker` command that made it.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("the overlay IPAM is IPv4 only: leave out --ipv6 and IPv6 subnets")]
    Ipv6Pool,
    #[error("unknown address space {given:?}; the overlay IPAM has only {ours:?}")]
    AddressSpace { given: String, ours: &'static str },
    #[error("--ip-range is not supported by the overlay IPAM; give only --subnet")]
    IpRange,
    #[error("unknown pool {0:?}: pools of the overlay IPAM are subnets")]
    UnknownPool(String),
    #[error("subnet {subnet} is already used by Docker network {docker_id} on this host")]
    SubnetInUse { subnet: Ipv4Net, docker_id: String },
    #[error("{what} {value:?} is not an IPv4 address")]
    NotIpv4 { what: &'static str, value: String },
    #[error("{what} {value:?} is not an IPv4 address/length")]
    NotIpv4Cidr { what: &'static str, value: String },
    #[error("pool {0:?} is not an IPv4 subnet")]
    NotASubnet(String),
    #[error("network {network} has gateway {gateway}; give that --gateway or none")]
    OtherGateway { network: String, gateway: Ipv4Addr },
    #[error("cluster network {id} is gone (removed while this Docker network was being made for it)")]
    ClusterNetworkGone { id: String },
    #[error("gateway {gateway} is not a host address of {subnet}")]
    GatewayOutside { gateway: Ipv4Addr, subnet: Ipv4Net },
    #[error("NetworkID {0:?} is not 12 to 64 lowercase hexadecimal digits")]
    NetworkId(String),
    #[error("the overlay driver is IPv4 only: leave out --ipv6")]
    Ipv6Network,
    #[error("the overlay driver takes exactly one IPv4 subnet")]
    SubnetCount,
    #[error("the overlay driver needs addresses from the cluster: add --ipam-driver {plugin} to docker network create")]
    NotOurIpam { plugin: String },
    #[error("--aux-address is not supported by the overlay driver")]
    AuxAddress,
    #[error("the overlay driver is IPv4 only")]
    Ipv6Endpoint,
    #[error("no IPv4 address for the endpoint: the network must use --ipam-driver {plugin}")]
    NoAddress { plugin: String },
    #[error("endpoint ID {0:?} is not hexadecimal")]
    EndpointId(String),
    /// dockerd asks to join an endpoint the plugin has no record of: one whose creation
    /// an agent restart cut short, for instance (`docker run` then fails with this).
    #[error(
        "unknown endpoint {0}: this host's overlay agent has no record of it (was the agent restarted while the \
         container started?); start the container again"
    )]
    UnknownEndpoint(String),
    #[error("network {0} is not an overlay network of this host's Docker")]
    UnknownNetwork(String),
    #[error("no overlay network has subnet {0} (auxiliary addresses are not supported)")]
    NoNetworkWithSubnet(Ipv4Net),
    #[error("the cluster network is still being created; try again")]
    StillBinding,
    /// Binding the Docker network to a cluster network failed earlier (the message was
    /// kept in the state file).
    #[error("{0}")]
    BindingFailed(String),
    #[error(
        "the cluster network {name} has subnet {subnet} and gateway {gateway}; remove this Docker network and \
         create it with --subnet {subnet} --gateway {gateway}"
    )]
    NameTaken { name: String, subnet: Ipv4Net, gateway: Ipv4Addr },
    #[error("opening this namespace: {0}")]
    OwnNamespace(std::io::Error),
    #[error("docker run -p: {0}")]
    PortMap(String),
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error("encoding {what}: {source}")]
    Encode { what: &'static str, source: serde_json::Error },
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Plugin(#[from] DockerError),
}
