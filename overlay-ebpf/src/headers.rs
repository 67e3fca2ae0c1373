//! Wire layouts of the headers the datapath reads and writes. Multi-byte fields hold
//! network byte order; IPv4 addresses are kept as loaded (see `overlay_common::ipv4_key`).

use aya_ebpf::programs::{TcContext, XdpContext};
use overlay_common::Reason;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Reads a header at `offset`; a packet too short for it is [`Reason::Truncated`].
/// Straight from the skb's linear data when the header lies in it (always, for headers
/// a local socket or the underlay's driver wrote), else through `bpf_skb_load_bytes`,
/// a helper call on every read.
#[inline(always)]
pub fn load<T>(ctx: &TcContext, offset: usize) -> Result<T, Reason> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + offset + core::mem::size_of::<T>() <= end {
        // SAFETY: within the linear data (checked just above); headers are packed, so
        // the read is unaligned.
        return Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const T) });
    }
    ctx.load::<T>(offset).map_err(|_| Reason::Truncated)
}

/// A received frame whose headers can be read, at TC (through the skb) or at XDP (from
/// its buffer), so both hooks share one set of checks.
pub trait Frame {
    /// The header at `offset`; a frame too short for it is [`Reason::Truncated`].
    fn header<T: Copy>(&self, offset: usize) -> Result<T, Reason>;
}

impl Frame for TcContext {
    #[inline(always)]
    fn header<T: Copy>(&self, offset: usize) -> Result<T, Reason> {
        load(self, offset)
    }
}

impl Frame for XdpContext {
    #[inline(always)]
    fn header<T: Copy>(&self, offset: usize) -> Result<T, Reason> {
        let (start, end) = (self.data(), self.data_end());
        if start + offset + core::mem::size_of::<T>() > end {
            return Err(Reason::Truncated);
        }
        // SAFETY: within the packet (checked just above); headers are packed, so the
        // read is unaligned.
        Ok(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
    }
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: u16,
}

impl EthHdr {
    pub const LEN: usize = 14;

    #[inline(always)]
    pub fn ether_type(&self) -> u16 {
        u16::from_be(self.proto)
    }
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

impl Ipv4Hdr {
    pub const LEN: usize = 20;

    /// Header length in bytes, from the IHL field.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        ((self.version_ihl & 0x0f) as usize) * 4
    }

    #[inline(always)]
    pub fn is_valid(&self) -> bool {
        self.version_ihl >> 4 == 4 && self.header_len() >= Self::LEN
    }

    /// More-fragments set or a non-zero fragment offset.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        u16::from_be(self.frag_off) & 0x3fff != 0
    }

    /// RFC 791 header checksum over these 20 bytes (no options), with `check` zero.
    #[inline(always)]
    pub fn checksum(&self) -> u16 {
        // The one's complement sum does not depend on byte order, so native-order words
        // summed and stored back in place give the right bytes on the wire.
        // SAFETY: Ipv4Hdr is 20 plain bytes.
        let words: [u16; 10] = unsafe { core::mem::transmute(*self) };
        let mut sum: u32 = 0;
        let mut i = 0;
        while i < 10 {
            sum += u32::from(words[i]);
            i += 1;
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        !(sum as u16)
    }
}

#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct UdpHdr {
    pub source: u16,
    pub dest: u16,
    pub len: u16,
    pub check: u16,
}

impl UdpHdr {
    pub const LEN: usize = 8;
}

/// RFC 7348 section 5.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct VxlanHdr {
    pub flags: u8,
    pub reserved1: [u8; 3],
    /// VNI in the top 24 bits, network order.
    pub vni_reserved2: u32,
}

impl VxlanHdr {
    pub const LEN: usize = 8;
    /// The I flag: the VNI is valid.
    pub const FLAG_VNI: u8 = 0x08;

    #[inline(always)]
    pub fn new(vni: u32) -> Self {
        VxlanHdr { flags: Self::FLAG_VNI, reserved1: [0; 3], vni_reserved2: (vni << 8).to_be() }
    }

    #[inline(always)]
    pub fn vni(&self) -> u32 {
        u32::from_be(self.vni_reserved2) >> 8
    }
}

/// ARP for IPv4 over Ethernet (RFC 826).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct ArpHdr {
    pub htype: u16,
    pub ptype: u16,
    pub hlen: u8,
    pub plen: u8,
    pub op: u16,
    pub sha: [u8; 6],
    pub spa: u32,
    pub tha: [u8; 6],
    pub tpa: u32,
}

impl ArpHdr {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;

    #[inline(always)]
    pub fn is_ipv4_ethernet_request(&self) -> bool {
        u16::from_be(self.htype) == 1
            && u16::from_be(self.ptype) == ETH_P_IP
            && self.hlen == 6
            && self.plen == 4
            && u16::from_be(self.op) == Self::REQUEST
    }
}

const _: () = {
    assert!(core::mem::size_of::<EthHdr>() == EthHdr::LEN);
    assert!(core::mem::size_of::<Ipv4Hdr>() == Ipv4Hdr::LEN);
    assert!(core::mem::size_of::<UdpHdr>() == UdpHdr::LEN);
    assert!(core::mem::size_of::<VxlanHdr>() == VxlanHdr::LEN);
    assert!(core::mem::size_of::<ArpHdr>() == 28);
};
