//! Bounds-checked header parsing: Ethernet, one optional 802.1Q tag, IPv4 without options or
//! fragmentation or IPv6 without extension headers, UDP. Every access is checked against `data_end` right before it, which is the
//! shape the verifier accepts on 6.1+.
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

/// Pointers into the frame, valid for the headers' full size.
pub struct Frame {
    pub eth: *mut EthHdr,
    pub ip: *mut Ipv4Hdr,
    pub udp: *mut UdpHdr,
    pub vlan_tagged: bool,
    /// Offset of the IPv4 header (14, or 18 behind a VLAN tag).
    pub l3: usize,
    /// Bytes of UDP payload according to the IP total length (for per-leg byte counters).
    pub payload_len: u16,
}

/// An IPv6 frame: the same, with the IPv6 header.
pub struct Frame6 {
    pub eth: *mut EthHdr,
    pub ip6: *mut Ipv6Hdr,
    pub udp: *mut UdpHdr,
    pub vlan_tagged: bool,
    /// Bytes of UDP payload according to the IPv6 payload length.
    pub payload_len: u16,
}

pub enum Parsed {
    V4(Frame),
    V6(Frame6),
}

/// A pointer to a `T` at `offset`, or `PassTruncated` if the frame is too short.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*mut T, Counter> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(Counter::PassTruncated);
    }
    Ok((start + offset) as *mut T)
}

/// Parse a frame that could be ours. `Err` carries the reason it goes to the stack.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Counter> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut l3 = ETH_HLEN;
    let vlan_tagged = ether_type == ETH_P_8021Q.to_be();
    if vlan_tagged {
        let vlan: *const VlanHdr = ptr_at(ctx, ETH_HLEN)?;
        ether_type = unsafe { (*vlan).ether_type };
        l3 += VLAN_HLEN;
    }
    if ether_type == ETH_P_IPV6.to_be() {
        return parse_v6(ctx, eth, l3, vlan_tagged).map(Parsed::V6);
    }
    if ether_type != ETH_P_IP.to_be() {
        return Err(Counter::PassNotIp);
    }

    let ip: *mut Ipv4Hdr = ptr_at(ctx, l3)?;
    let (version_ihl, protocol, frag_off, tot_len) = unsafe {
        (
            (*ip).version_ihl,
            (*ip).protocol,
            (*ip).frag_off,
            u16::from_be((*ip).tot_len),
        )
    };
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

    let udp: *mut UdpHdr = ptr_at(ctx, l3 + IPV4_HLEN)?;
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

#[inline(always)]
fn parse_v6(
    ctx: &XdpContext,
    eth: *mut EthHdr,
    l3: usize,
    vlan_tagged: bool,
) -> Result<Frame6, Counter> {
    let ip6: *mut Ipv6Hdr = ptr_at(ctx, l3)?;
    let (first, nexthdr, plen) = unsafe {
        (
            // The version is the top nibble of the first byte, whatever the byte order.
            *(ip6 as *const u8),
            (*ip6).nexthdr,
            u16::from_be((*ip6).payload_len),
        )
    };
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
    let udp: *mut UdpHdr = ptr_at(ctx, l3 + IPV6_HLEN)?;
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
