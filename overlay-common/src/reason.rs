//! Why a packet went where it went. One enum for forwards and drops alike; the
//! numbers are part of the ABI and are never reused.

/// The outcome of one packet in the datapath. Values below [`Reason::FIRST_DROP`] are
/// forwarding outcomes; the others are drops.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Sent to a remote host inside VXLAN.
    Encapsulated = 0,
    /// VXLAN from a member host, decapsulated into a local container.
    Decapsulated = 1,
    /// Delivered straight to a container on the same host.
    DeliveredLocally = 2,
    /// An ARP request answered by the datapath itself.
    ArpAnswered = 3,
    /// Not overlay traffic: handed to the host's stack untouched.
    PassedToHost = 4,
    /// A container's packet for an address off the overlay, handed to the host's stack,
    /// which masquerades it (egress; published ports' replies leave this way too).
    Egress = 5,
    /// A container's DNS query, sent to the host's resolver for Docker containers.
    ToResolver = 6,
    /// That resolver's answer, delivered to the container that asked.
    FromResolver = 7,

    /// The veth is not registered as a container interface.
    UnknownInterface = 16,
    /// Neither IPv4 nor ARP.
    UnsupportedProtocol = 17,
    /// Shorter than its headers claim.
    Truncated = 18,
    /// A container sent from an address that is not its own.
    SpoofedSource = 19,
    /// No container of the network has the destination address.
    UnknownDestination = 20,
    /// ARP that the datapath does not answer (unknown target, not a request, own address).
    ArpNotAnswered = 21,
    /// VXLAN from a host that is not a member of the cluster.
    NotMember = 22,
    /// VXLAN for a network this host does not have.
    UnknownVni = 23,
    /// VXLAN header without the I flag, or an IPv4 header that is not valid.
    Malformed = 24,
    /// Decapsulated packet for an address with no container on this host.
    NoLocalEndpoint = 25,
    /// The host has no route to the remote VTEP.
    NoRouteToVtep = 26,
    /// The kernel refused to resize the packet.
    AdjustRoomFailed = 27,
    /// The kernel refused to redirect the packet.
    RedirectFailed = 28,
    /// A fragment of outer IPv4: VXLAN is never fragmented by a member.
    Fragmented = 29,
    /// The inner frame of a VXLAN packet is not IPv4.
    InnerNotIpv4 = 30,
    /// The inner source is not a container that lives on the sending host.
    InnerSourceMismatch = 31,
    /// The host configuration map is empty: the agent has not configured this host.
    NotConfigured = 32,
    /// A container sent to an address off the overlay, and its network has no way out
    /// (`--internal`).
    NoEgress = 33,
    /// A container sent UDP to the VXLAN port of a cluster member or of this host (or a
    /// later fragment of UDP to one, which could hide it): masqueraded, it would pass the
    /// member check there as if this host had sent it.
    EgressVxlan = 34,
    /// From the resolver's namespace, to an address that neither asked it a question
    /// (recently) nor is the host's side of its veth.
    ResolverNotAsked = 35,
}

/// Which program counted the packet.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// TC ingress of a container's host-side veth.
    FromContainer = 0,
    /// TC ingress of the underlay interface.
    FromUnderlay = 1,
}

impl Direction {
    pub const COUNT: u32 = 2;
    pub const ALL: [Direction; 2] = [Direction::FromContainer, Direction::FromUnderlay];

    pub const fn name(self) -> &'static str {
        match self {
            Direction::FromContainer => "from-container",
            Direction::FromUnderlay => "from-underlay",
        }
    }
}

impl Reason {
    pub const FIRST_DROP: u32 = 16;
    /// One past the largest reason number: the counter map holds `SLOTS * Direction::COUNT` cells.
    pub const SLOTS: u32 = 64;

    pub const ALL: [Reason; 28] = [
        Reason::Encapsulated,
        Reason::Decapsulated,
        Reason::DeliveredLocally,
        Reason::ArpAnswered,
        Reason::PassedToHost,
        Reason::Egress,
        Reason::ToResolver,
        Reason::FromResolver,
        Reason::UnknownInterface,
        Reason::UnsupportedProtocol,
        Reason::Truncated,
        Reason::SpoofedSource,
        Reason::UnknownDestination,
        Reason::ArpNotAnswered,
        Reason::NotMember,
        Reason::UnknownVni,
        Reason::Malformed,
        Reason::NoLocalEndpoint,
        Reason::NoRouteToVtep,
        Reason::AdjustRoomFailed,
        Reason::RedirectFailed,
        Reason::Fragmented,
        Reason::InnerNotIpv4,
        Reason::InnerSourceMismatch,
        Reason::NotConfigured,
        Reason::NoEgress,
        Reason::EgressVxlan,
        Reason::ResolverNotAsked,
    ];

    pub const fn is_drop(self) -> bool {
        self as u32 >= Self::FIRST_DROP
    }

    /// Index of this reason's cell in `OVL_COUNTERS`.
    #[inline(always)]
    pub const fn slot(self, direction: Direction) -> u32 {
        self as u32 * Direction::COUNT + direction as u32
    }

    pub const fn name(self) -> &'static str {
        match self {
            Reason::Encapsulated => "encapsulated",
            Reason::Decapsulated => "decapsulated",
            Reason::DeliveredLocally => "delivered-locally",
            Reason::ArpAnswered => "arp-answered",
            Reason::PassedToHost => "passed-to-host",
            Reason::Egress => "egress",
            Reason::ToResolver => "to-resolver",
            Reason::FromResolver => "from-resolver",
            Reason::UnknownInterface => "drop-unknown-interface",
            Reason::UnsupportedProtocol => "drop-unsupported-protocol",
            Reason::Truncated => "drop-truncated",
            Reason::SpoofedSource => "drop-spoofed-source",
            Reason::UnknownDestination => "drop-unknown-destination",
            Reason::ArpNotAnswered => "drop-arp-not-answered",
            Reason::NotMember => "drop-not-member",
            Reason::UnknownVni => "drop-unknown-vni",
            Reason::Malformed => "drop-malformed",
            Reason::NoLocalEndpoint => "drop-no-local-endpoint",
            Reason::NoRouteToVtep => "drop-no-route-to-vtep",
            Reason::AdjustRoomFailed => "drop-adjust-room-failed",
            Reason::RedirectFailed => "drop-redirect-failed",
            Reason::Fragmented => "drop-fragmented",
            Reason::InnerNotIpv4 => "drop-inner-not-ipv4",
            Reason::InnerSourceMismatch => "drop-inner-source-mismatch",
            Reason::NotConfigured => "drop-not-configured",
            Reason::NoEgress => "drop-no-egress",
            Reason::EgressVxlan => "drop-egress-vxlan",
            Reason::ResolverNotAsked => "drop-resolver-not-asked",
        }
    }

    pub fn from_u32(value: u32) -> Option<Reason> {
        Self::ALL.iter().copied().find(|r| *r as u32 == value)
    }
}

const _: () = {
    let mut i = 0;
    while i < Reason::ALL.len() {
        assert!((Reason::ALL[i] as u32) < Reason::SLOTS);
        i += 1;
    }
};
