//! The embedded DNS resolver: every container asks `127.0.0.11` (as in Docker), served
//! by the agent inside the container's namespace.
//!
//! - [`view`]: the names the resolver knows ([`NameView`]), kept up to date by the
//!   agent from the store.
//! - [`query`]: the resolution rules, bytes in, bytes out ([`query::respond`]).
//! - [`server`]: sockets in a container's namespace and the tasks that serve them.
//! - [`upstream`]: forwarding the other names to the host's resolvers.
//! - [`resolv_conf`]: reading the host's resolv.conf, writing the containers'.
//!
//! The rules, for a query from container C:
//! - `NAME` or `ALIAS` of a container on one of C's networks, on any host, resolves to
//!   its addresses on C's networks; `NAME.NETWORK` to its address on NETWORK if C is
//!   attached to it. Matching ignores case. A name several containers share returns
//!   all their addresses, rotated from one answer to the next. Local names have only
//!   A records: AAAA and other types get an empty NOERROR answer.
//! - PTR of a container's address gives `NAME.NETWORK.` on C's networks.
//! - A name (or address) that is the overlay's but not visible to C (a container on a
//!   network C is not attached to, or `X.NETWORK` for any network of the cluster) gets
//!   NXDOMAIN and is not forwarded: networks are isolated at the name level too. So
//!   does any other single-label name (no dot): a removed container's name gets
//!   NXDOMAIN at once, and bare names never leak to an upstream.
//! - Any other name is forwarded to the upstreams; no answer in time gives SERVFAIL.
//!   A container attached only to internal networks gets NXDOMAIN instead (an internal
//!   network has no way out, and NXDOMAIN fails a lookup at once where REFUSED would
//!   make clients try again).
//! - A container not in the view gets REFUSED.
//! - UDP answers longer than 512 bytes (or the client's EDNS size, at most 1232) are
//!   sent empty with TC set; the client asks again over TCP and gets all of it.

//!
//! How the agent wires it (one [`NameView`] and one [`Upstreams`] per host, one
//! [`Resolver`] per local container):
//!
//! ```no_run
//! # async fn agent() -> Result<(), overlay::dns::DnsError> {
//! use std::{net::Ipv4Addr, sync::Arc};
//! use overlay::dns::{self, DnsContainer, DnsEndpoint, NameView, DnsNetwork, Upstreams};
//!
//! let view = NameView::new();
//! let upstreams = Arc::new(Upstreams::from_host()?);
//! // On every store event: networks and containers of the whole cluster.
//! view.upsert_network(DnsNetwork { name: "my_network".into(), internal: false })?;
//! view.upsert_container(DnsContainer {
//!     id: "agt01/busybox01".into(),
//!     name: "busybox01".into(),
//!     endpoints: vec![DnsEndpoint {
//!         network: "my_network".into(),
//!         ip: Ipv4Addr::new(10, 0, 9, 2),
//!         aliases: vec![],
//!     }],
//! })?;
//! // When a container starts on this host (its namespace exists, `lo` is up):
//! let resolver = dns::serve_container("busybox01-ns", "agt01/busybox01", view.clone(), upstreams.clone())?;
//! dns::write_netns_resolv_conf("busybox01-ns", &dns::container_resolv_conf(&[]))?;
//! // When it is removed: its names stop resolving everywhere, its resolver stops.
//! view.remove_container("agt01/busybox01");
//! resolver.stop().await;
//! dns::remove_netns_resolv_conf("busybox01-ns")?;
//! # Ok(())
//! # }
//! ```

pub mod query;
pub mod resolv_conf;
pub mod server;
pub mod upstream;
pub mod view;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

pub use resolv_conf::{container_resolv_conf, remove_netns_resolv_conf, write_netns_resolv_conf};
pub use server::{Querier, Resolver, Sockets, bind_in_netns, bind_in_netns_at, serve, serve_as, serve_container};
pub use upstream::Upstreams;
pub use view::{DnsContainer, DnsEndpoint, DnsNetwork, NameView, check_name};

use crate::netns::NetnsError;

/// Where containers find the resolver (in their own namespace).
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// What went wrong with the embedded resolver, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(
        "cannot bind the DNS resolver to {addr} in network namespace {netns:?}: {source}; \
         `lo` must be up there (`ip -n {netns} link set lo up`), nothing else may listen \
         on that port, and the agent needs CAP_NET_BIND_SERVICE for port 53"
    )]
    Bind { netns: String, addr: SocketAddr, source: std::io::Error },
    #[error(
        "cannot hand the DNS sockets of namespace {netns:?} to the async runtime: {source}; \
         the process may be out of file descriptors (raise `ulimit -n`)"
    )]
    Register { netns: String, source: std::io::Error },
    #[error(
        "cannot read the upstream resolvers from {path}: {source}; fix the file or give the upstream servers explicitly"
    )]
    ResolvConf { path: PathBuf, source: std::io::Error },
    #[error("cannot write the container's resolv.conf {path}: {source}; the agent must run as root with /etc writable")]
    WriteResolvConf { path: PathBuf, source: std::io::Error },
    #[error("invalid DNS name {name:?}: {reason}; rename it so containers can resolve it")]
    InvalidName { name: String, reason: String },
}

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod rules_tests;
