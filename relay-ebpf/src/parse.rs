//! Bounds-checked header parsing: Ethernet, one optional 802.1Q tag, IPv4 without options or
//! fragmentation, UDP. Every access is checked against `data_end` right before it, which is the
//! shape the verifier accepts on 6.1+.
use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use relay_common::Counter;

pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;

const ETH_P_IP: u16 = 0x0800;
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
pub fn parse(ctx: &XdpContext) -> Result<Frame, Counter> {
    let eth: *mut EthHdr = ptr_at(ctx, 0)?;
    let mut ether_type = unsafe { (*eth).ether_type };
    let mut l3 = ETH_HLEN;
    let vlan_tagged = ether_type == ETH_P_8021Q.to_be();
    if vlan_tagged {
        let vlan: *const VlanHdr = ptr_at(ctx, ETH_HLEN)?;
        ether_type = unsafe { (*vlan).ether_type };
        l3 += VLAN_HLEN;
    }
    if ether_type != ETH_P_IP.to_be() {
        return Err(Counter::PassNotIpv4);
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
        return Err(Counter::PassNotIpv4);
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
    Ok(Frame {
        eth,
        ip,
        udp,
        vlan_tagged,
        l3,
        payload_len: tot_len - (IPV4_HLEN + UDP_HLEN) as u16,
    })
}
