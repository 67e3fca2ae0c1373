//! EXPERIMENT, for the benchmark's reference path only: containers behind a veth that
//! the hosts connect with one TC redirect each way and no overlay
//! (overlay-ebpf `bound.rs`). The agent never calls any of this.

use std::net::Ipv4Addr;

use overlay_common::{BoundHop, ipv4_key, map_names, program_names};

use super::{Datapath, DatapathError, attach, tables::map_err};

/// Where the reference program sends packets for one container address.
#[derive(Clone, Debug)]
pub struct BoundHopSpec {
    pub ip: Ipv4Addr,
    /// The interface the packet leaves by, in the host's namespace.
    pub interface: String,
    /// Into the namespace of `interface`'s veth peer (`redirect_peer`), not out of it.
    pub to_peer: bool,
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
}

impl Datapath {
    /// Adds or replaces a hop. Looks `interface` up in the calling thread's namespace.
    pub fn set_bound_hop(&mut self, spec: &BoundHopSpec) -> Result<(), DatapathError> {
        let hop = BoundHop {
            ifindex: attach::ifindex(&spec.interface)?,
            to_peer: u32::from(spec.to_peer),
            dmac: spec.dmac,
            smac: spec.smac,
        };
        let name = map_names::BOUND_HOPS;
        self.hash_map::<u32, BoundHop>(name)?.insert(ipv4_key(spec.ip.octets()), hop, 0).map_err(map_err(name))
    }

    /// Attaches the reference program at TC ingress of `interface`, as a pinned link
    /// (`links/bound-IFACE`). On the underlay, attach it only while the overlay's own
    /// program is detached: whichever runs first passes the other's packets to the host.
    pub fn attach_bound(&mut self, interface: &str) -> Result<(), DatapathError> {
        let path = self.link_path(&format!("bound-{interface}"));
        self.attach(program_names::BOUND_REDIRECT, interface, path)
    }

    pub fn detach_bound(&mut self, interface: &str) -> Result<(), DatapathError> {
        self.unpin_link(self.link_path(&format!("bound-{interface}")))
    }
}
