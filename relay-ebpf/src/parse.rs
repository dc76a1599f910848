//! Bounds-checked header parsing: Ethernet, one optional 802.1Q tag, IPv4 without options or
//! fragmentation or IPv6 without extension headers, UDP. Every access is checked against
//! `data_end` right before it, which is the shape the verifier accepts on 6.1+.
//!
//! # Frame access contract
//!
//! Packet memory is reached only through [`ref_at`] and [`mut_at`], which check bounds and turn
//! the address into a reference. A reference into the frame is sound when:
//! 1. `T` is one of the `#[repr(C)]` headers below, a `u16` or a byte array: integer fields
//!    only, so any bytes in the packet are a valid `T`;
//! 2. no other reference to the same bytes is in use at the same time (the headers of a
//!    [`Frame`] sit at disjoint offsets);
//! 3. it is not used after the frame is resized (`bpf_xdp_adjust_head`/`_tail` move `data`).
//!    The paths that resize (reflect, STUN) use their [`Frame`] only before the resize and
//!    take fresh references afterwards;
//! 4. alignment: headers follow a 14-byte Ethernet header, so `u32` fields may be 2-aligned.
//!    The BPF backend emits the same loads and stores for references and raw pointers, and the
//!    kernel allows unaligned packet access (the verifier checks it only for programs loaded
//!    with `BPF_F_STRICT_ALIGNMENT` or on architectures without efficient unaligned access).
//!
//! [`parse`] is called once per packet, so the references of the one [`Frame`] it returns are
//! the only ones into those headers; the paths read and write through the `Frame` safely.
use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use relay_common::Counter;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
pub const IPV6_HLEN: usize = 40;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_UDP: u8 = 17;
/// More-fragments flag and fragment offset bits of `frag_off`.
const IP_MF_OFFSET: u16 = 0x3fff;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// Network byte order, as in memory.
    pub ether_type: u16,
}

#[repr(C)]
struct VlanHdr {
    tci: u16,
    ether_type: u16,
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

impl Ipv4Hdr {
    /// The header as its ten 16-bit words in memory order (for `csum::ipv4_header`).
    #[inline(always)]
    pub fn words(&self) -> &[u16; 10] {
        // SAFETY: `Ipv4Hdr` is `#[repr(C)]`, 20 bytes with no padding and at least 2-aligned,
        // so it is exactly ten initialised `u16`s; the shared borrow of `self` covers them.
        unsafe { &*(self as *const Ipv4Hdr as *const [u16; 10]) }
    }
}

#[repr(C)]
pub struct Ipv6Hdr {
    /// Version, traffic class, flow label (network byte order).
    pub vtc_flow: u32,
    pub payload_len: u16,
    pub nexthdr: u8,
    pub hop_limit: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

#[repr(C)]
pub struct UdpHdr {
    pub source: u16,
    pub dest: u16,
    pub len: u16,
    pub check: u16,
}

/// The headers of an IPv4/UDP frame, valid (contract above) until the frame is resized.
pub struct Frame<'a> {
    pub eth: &'a mut EthHdr,
    pub ip: &'a mut Ipv4Hdr,
    pub udp: &'a mut UdpHdr,
    pub vlan_tagged: bool,
    /// Offset of the IPv4 header (14, or 18 behind a VLAN tag).
    pub l3: usize,
    /// Bytes of UDP payload according to the IP total length (for per-leg byte counters).
    pub payload_len: u16,
}

/// An IPv6 frame: the same, with the IPv6 header.
pub struct Frame6<'a> {
    pub eth: &'a mut EthHdr,
    pub ip6: &'a mut Ipv6Hdr,
    pub udp: &'a mut UdpHdr,
    pub vlan_tagged: bool,
    /// Bytes of UDP payload according to the IPv6 payload length.
    pub payload_len: u16,
}

pub enum Parsed<'a> {
    V4(Frame<'a>),
    V6(Frame6<'a>),
}

/// The address of a `T` at `offset`, or `PassTruncated` if the frame is too short.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Counter> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Counter::PassTruncated);
    }
    Ok((start + offset) as *mut T)
}

/// The `T` at `offset`, or `PassTruncated` if the frame is too short.
///
/// # Safety
/// The frame access contract of this module: `T` has integer fields only, nothing writes
/// these bytes while the reference is in use, and it is not used after a resize.
#[inline(always)]
pub unsafe fn ref_at<T>(ctx: &XdpContext, offset: usize) -> Result<&T, Counter> {
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `offset` lie within the
    // frame; validity, aliasing and lifetime are the caller's (the contract).
    ptr_at(ctx, offset).map(|p| unsafe { &*p })
}

/// The `T` at `offset`, writable, or `PassTruncated` if the frame is too short.
///
/// # Safety
/// The frame access contract of this module: `T` has integer fields only, no other
/// reference to these bytes is in use at the same time, and it is not used after a resize
/// (so `'a` ends with this program run at the latest; the caller picks it).
#[inline(always)]
pub unsafe fn mut_at<'a, T>(ctx: &XdpContext, offset: usize) -> Result<&'a mut T, Counter> {
    // SAFETY: as in `ref_at`; exclusivity is the caller's (the contract).
    ptr_at(ctx, offset).map(|p| unsafe { &mut *p })
}

/// The Ethernet, IPv4 and UDP headers of a frame built in place after a resize.
pub type Headers<'a> = (&'a mut EthHdr, &'a mut Ipv4Hdr, &'a mut UdpHdr);

/// The headers of an IPv4/UDP frame whose IPv4 header is at `l3`, taken afresh after the
/// frame was resized (the reflector and STUN write a new packet in place).
///
/// # Safety
/// The frame access contract: `l3 >= ETH_HLEN`, no other reference into these headers is in
/// use (those taken before the resize are dead), and they are not used after another resize.
#[inline(always)]
pub unsafe fn headers_at<'a>(ctx: &XdpContext, l3: usize) -> Result<Headers<'a>, Counter> {
    // SAFETY: header types, bounds checked by `mut_at`, at disjoint offsets (0..14, l3..l3 +
    // 20, l3 + 20..l3 + 28, given l3 >= 14); exclusivity and lifetime are the caller's.
    unsafe {
        Ok((
            mut_at(ctx, 0)?,
            mut_at(ctx, l3)?,
            mut_at(ctx, l3 + IPV4_HLEN)?,
        ))
    }
}

/// Parse a frame that could be ours. `Err` carries the reason it goes to the stack.
///
/// # Safety
/// Called once per packet, and the returned frame is not used after a resize: its references
/// are then the only ones into those headers (the frame access contract).
#[inline(always)]
pub unsafe fn parse(ctx: &XdpContext) -> Result<Parsed<'_>, Counter> {
    // SAFETY (this and the accesses below): header types, bounds checked by the accessors;
    // the Ethernet, IP and UDP headers are at disjoint offsets (0, l3 >= 14, l3 + 20 or 40),
    // the VLAN tag (14..18) is only read, before the IP header is taken; one call per packet.
    let eth: &mut EthHdr = unsafe { mut_at(ctx, 0) }?;
    let mut ether_type = eth.ether_type;
    let mut l3 = ETH_HLEN;
    let vlan_tagged = ether_type == ETH_P_8021Q.to_be();
    if vlan_tagged {
        // SAFETY: read only, between the Ethernet and IP headers (see above).
        let vlan: &VlanHdr = unsafe { ref_at(ctx, ETH_HLEN) }?;
        ether_type = vlan.ether_type;
        l3 += VLAN_HLEN;
    }
    if ether_type == ETH_P_IPV6.to_be() {
        // SAFETY: our own contract, passed on; `eth` is this frame's and l3 >= 14.
        return unsafe { parse_v6(ctx, eth, l3, vlan_tagged) }.map(Parsed::V6);
    }
    if ether_type != ETH_P_IP.to_be() {
        return Err(Counter::PassNotIp);
    }

    // SAFETY: at l3 >= 14, after the Ethernet header and the (dead) tag reference.
    let ip: &mut Ipv4Hdr = unsafe { mut_at(ctx, l3) }?;
    let (version_ihl, protocol, frag_off, tot_len) = (
        ip.version_ihl,
        ip.protocol,
        ip.frag_off,
        u16::from_be(ip.tot_len),
    );
    if version_ihl >> 4 != 4 {
        return Err(Counter::PassNotIp);
    }
    if protocol != IPPROTO_UDP {
        return Err(Counter::PassNotUdp);
    }
    if version_ihl & 0x0f != 5 {
        return Err(Counter::PassIpOptions);
    }
    if frag_off & IP_MF_OFFSET.to_be() != 0 {
        return Err(Counter::PassFragment);
    }

    // SAFETY: right after the 20-byte IPv4 header (no options: checked above).
    let udp: &mut UdpHdr = unsafe { mut_at(ctx, l3 + IPV4_HLEN) }?;
    // The IP length must cover both headers and fit in the frame (trailing Ethernet padding is
    // allowed); otherwise the stack decides what to do with the broken packet.
    let frame_len = ctx.data_end() - ctx.data();
    if (tot_len as usize) < IPV4_HLEN + UDP_HLEN || l3 + tot_len as usize > frame_len {
        return Err(Counter::PassTruncated);
    }
    Ok(Parsed::V4(Frame {
        eth,
        ip,
        udp,
        vlan_tagged,
        l3,
        payload_len: tot_len - (IPV4_HLEN + UDP_HLEN) as u16,
    }))
}

/// IPv6 extension headers (RFC 8200 4.1 and the IANA list) that may precede UDP: walking
/// them is not worth the fast path's instructions; media does not carry them.
#[inline(always)]
fn is_extension(nexthdr: u8) -> bool {
    matches!(nexthdr, 0 | 43 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

const IPPROTO_FRAGMENT: u8 = 44;

/// The IPv6 part of [`parse`].
///
/// # Safety
/// As for [`parse`]; `eth` is the frame's Ethernet header and `l3 >= 14`.
#[inline(always)]
unsafe fn parse_v6<'a>(
    ctx: &'a XdpContext,
    eth: &'a mut EthHdr,
    l3: usize,
    vlan_tagged: bool,
) -> Result<Frame6<'a>, Counter> {
    // SAFETY: a header type, bounds checked; l3..l3 + 40 is disjoint from `eth` (l3 >= 14);
    // one call per packet.
    let ip6: &mut Ipv6Hdr = unsafe { mut_at(ctx, l3) }?;
    // The version is the top nibble of the first byte, whatever the byte order.
    let (first, nexthdr, plen) = (
        ip6.vtc_flow.to_ne_bytes()[0],
        ip6.nexthdr,
        u16::from_be(ip6.payload_len),
    );
    if first >> 4 != 6 {
        return Err(Counter::PassNotIp);
    }
    if nexthdr != IPPROTO_UDP {
        return Err(if nexthdr == IPPROTO_FRAGMENT {
            Counter::PassFragment
        } else if is_extension(nexthdr) {
            Counter::PassIpOptions
        } else {
            Counter::PassNotUdp
        });
    }
    // SAFETY: right after the IPv6 header, disjoint from it and from `eth`.
    let udp: &mut UdpHdr = unsafe { mut_at(ctx, l3 + IPV6_HLEN) }?;
    // Payload length 0 would be a jumbogram (hop-by-hop option, never here); it must cover
    // the UDP header and fit in the frame.
    let frame_len = ctx.data_end() - ctx.data();
    if (plen as usize) < UDP_HLEN || l3 + IPV6_HLEN + plen as usize > frame_len {
        return Err(Counter::PassTruncated);
    }
    Ok(Frame6 {
        eth,
        ip6,
        udp,
        vlan_tagged,
        payload_len: plen - UDP_HLEN as u16,
    })
}
