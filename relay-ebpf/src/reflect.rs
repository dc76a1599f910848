//! The stateless reflector (docs/reflector.md): verify a ticket header, strip it, send the
//! payload from the ticket's source to its destination. Every refusal is a drop with its own
//! reason, and every check happens before the first write.
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_xdp_adjust_head},
    maps::lpm_trie::Key,
    programs::XdpContext,
};
use relay_common::{
    Counter,
    csum::{self, CsumDelta},
    reflector::{
        DataPlaneConfig, HEADER_LEN, MAGIC, ReflectHeader, VERSION, v4_mapped, v4_of_mapped,
    },
    siphash::{SipKey, siphash24_blocks},
};

use crate::{
    egress::{Fwd, Kind, egress},
    fib::{self, V4Flow},
    maps::{
        RELAY_CLOCK, RELAY_OWN_ADDRS, RELAY_REFLECT_DENY, RELAY_REFLECT_KEYS, RELAY_REFLECT_RATE,
        RELAY_SCRATCH,
    },
    parse::{ETH_HLEN, Frame, IPV4_HLEN, UDP_HLEN, headers_at, mut_at, ref_at},
};

/// TTL of a reflected packet: it is a new packet from this box, not a forwarded one.
const REFLECT_TTL: u8 = 64;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Reflect the packet in `f` (UDP to the reflector port of one of our addresses). `Err` is
/// the drop reason.
#[inline(always)]
pub fn reflect(ctx: &XdpContext, f: &Frame, cfg: &DataPlaneConfig) -> Result<Fwd, Counter> {
    let (saddr, tos, id, frag_off, tot_len) = (
        f.ip.saddr,
        f.ip.tos,
        f.ip.id,
        f.ip.frag_off,
        u16::from_be(f.ip.tot_len),
    );
    let (sport, udp_len, udp_check) = (f.udp.source, f.udp.len, f.udp.check);
    // The UDP checksum is updated from the UDP length; it must be the IP one.
    if u16::from_be(udp_len) as usize != tot_len as usize - IPV4_HLEN
        || (f.payload_len as usize) < HEADER_LEN
    {
        return Err(Counter::DropReflectTruncated);
    }
    // Read in place (bounds checked for all 56 bytes): a stack copy would not fit.
    // SAFETY: byte arrays only, after the UDP header (no other reference to those bytes);
    // last used before the resize below.
    let h: &ReflectHeader = unsafe { ref_at(ctx, f.l3 + IPV4_HLEN + UDP_HLEN) }
        .map_err(|_| Counter::DropReflectTruncated)?;

    if h.magic != MAGIC {
        return Err(Counter::DropReflectBadMagic);
    }
    if h.version != VERSION || h.flags != 0 {
        return Err(Counter::DropReflectBadVersion);
    }
    // SAFETY: as for `maps::leg`: the entry outlives this run, the controller replaces keys
    // whole, and a `SipKey` is plain integers.
    let key = unsafe { RELAY_REFLECT_KEYS.get(&(h.key_id() as u32)) }
        .ok_or(Counter::DropReflectUnknownKey)?;
    // A clock never written (0) fails closed.
    let now = RELAY_CLOCK.get(0).copied().unwrap_or(0);
    if now == 0 || now > h.expiry() as u64 {
        return Err(Counter::DropReflectExpired);
    }
    if !mac_ok(key, h, saddr, sport) {
        return Err(Counter::DropReflectBadMac);
    }
    // IPv6 tickets are refused until the IPv6 fast path exists.
    let src = v4_of_mapped(&h.src_addr).ok_or(Counter::DropReflectSrcNotAllowed)?;
    if RELAY_OWN_ADDRS.get_ptr(&h.src_addr).is_none() {
        return Err(Counter::DropReflectSrcNotAllowed);
    }
    let dst = v4_of_mapped(&h.dst_addr).ok_or(Counter::DropReflectDstDenied)?;
    if dst_denied(dst, h) {
        return Err(Counter::DropReflectDstDenied);
    }
    if !rate_ok(saddr, cfg) {
        return Err(Counter::DropReflectRateLimited);
    }

    let (nsrc, ndst) = (u32::from_ne_bytes(src), u32::from_ne_bytes(dst));
    let (nsport, ndport) = (
        u16::from_ne_bytes(h.src_port),
        u16::from_ne_bytes(h.dst_port),
    );
    let new_tot = tot_len - HEADER_LEN as u16;
    let hop = fib::lookup_v4(
        ctx,
        &V4Flow {
            src: nsrc,
            dst: ndst,
            sport_be: nsport,
            dport_be: ndport,
            tos,
            tot_len: new_tot,
        },
    )
    .map_err(|_| Counter::DropReflectNoRoute)?;
    // Either refusal (a tag of the ingress link, an interface we are not attached to) means
    // there is no way out for the reflected packet.
    let out = egress(ctx, f.vlan_tagged, &hop).map_err(|_| Counter::DropReflectNoRoute)?;

    // UDP checksum, incrementally: new pseudo-header and ports, both length fields, and the
    // stripped header's words taken out (the payload stays word-aligned: 56 is even).
    let new_udp_len = (new_tot - IPV4_HLEN as u16).to_be();
    let d = CsumDelta::new()
        .replace32(saddr, nsrc)
        .replace32(f.ip.daddr, ndst)
        .replace16(sport, nsport)
        .replace16(f.udp.dest, ndport)
        .replace16(udp_len, new_udp_len)
        .replace16(udp_len, new_udp_len)
        .replace16(header_sum(h).ok_or(Counter::DropReflectBadMac)?, 0);
    let new_check = d.apply_udp(udp_check);

    // The first write: move the start of the frame past the header, then write fresh
    // Ethernet (+ tag), IPv4 and UDP headers in front of the payload.
    let tci = if f.vlan_tagged {
        // SAFETY: a `u16` inside the VLAN tag, which no reference of `f` covers.
        let t: &u16 =
            unsafe { ref_at(ctx, ETH_HLEN) }.map_err(|_| Counter::DropReflectTruncated)?;
        *t
    } else {
        0
    };
    let l3 = f.l3;
    // SAFETY: the helper checks the new head itself; the headers of `f` and `h` are not used
    // after it (parse.rs contract: they are taken again below).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, HEADER_LEN as i32) } != 0 {
        return Err(Counter::DropReflectTruncated);
    }
    // SAFETY: l3 is 14 or 18, and the references of `f` and `h` are dead (see above).
    let (eth, ip, udp) =
        unsafe { headers_at(ctx, l3) }.map_err(|_| Counter::DropReflectTruncated)?;
    eth.dst = hop.dmac;
    eth.src = hop.smac;
    if f.vlan_tagged {
        // SAFETY: the tag (14..18), between the Ethernet and IPv4 headers, a `u16` array.
        let v: &mut [u16; 2] =
            unsafe { mut_at(ctx, ETH_HLEN) }.map_err(|_| Counter::DropReflectTruncated)?;
        eth.ether_type = ETH_P_8021Q.to_be();
        v[0] = tci;
        v[1] = ETH_P_IP.to_be();
    } else {
        eth.ether_type = ETH_P_IP.to_be();
    }
    ip.version_ihl = 0x45;
    ip.tos = tos;
    ip.tot_len = new_tot.to_be();
    ip.id = id;
    ip.frag_off = frag_off;
    ip.ttl = REFLECT_TTL;
    ip.protocol = 17;
    ip.check = 0;
    ip.saddr = nsrc;
    ip.daddr = ndst;
    ip.check = csum::ipv4_header(ip.words());
    udp.source = nsport;
    udp.dest = ndport;
    udp.len = new_udp_len;
    udp.check = new_check;
    Ok(Fwd {
        out,
        payload_len: new_tot - (IPV4_HLEN + UDP_HLEN) as u16,
        kind: Kind::Reflect,
    })
}

/// The MAC check, a BPF subprogram of its own (24-byte frame). Its input lives in per-CPU
/// scratch memory, not on the stack, so SipHash's state stays in registers; with the
/// reflect path's frame and the dispatcher's the chain stays under the verifier's 512 bytes.
#[inline(never)]
pub fn mac_ok(key: &SipKey, h: &ReflectHeader, saddr: u32, sport: u16) -> bool {
    let Some(s) = RELAY_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch entry from a successful lookup; XDP runs to completion on
    // its CPU, so nothing else uses the entry while this reference does.
    let blocks = unsafe { &mut (*s).mac_blocks };
    h.write_mac_blocks(&v4_mapped(saddr.to_ne_bytes()), sport, blocks);
    siphash24_blocks(key, blocks) == u64::from_le_bytes(h.mac)
}

/// One's-complement sum of the header's 16-bit words (memory order), from the MAC input
/// `mac_ok` left in scratch memory (blocks 0..6 are header bytes 0..48) and the MAC itself:
/// seven aligned loads, where reading the packet word by word would spill 28 of them.
#[inline(always)]
fn header_sum(h: &ReflectHeader) -> Option<u16> {
    let b = &RELAY_SCRATCH.get(0)?.mac_blocks;
    let mut acc = csum::add64(0, u64::from_le_bytes(h.mac));
    let mut i = 0;
    while i < 6 {
        acc = csum::add64(acc, b[i]);
        i += 1;
    }
    Some(csum::fold64(acc))
}

/// Destinations a reflector must never send to: this-network, loopback, multicast,
/// reserved and broadcast (fixed), this box (own addresses), port 0, and the operator's trie.
#[inline(always)]
fn dst_denied(dst: [u8; 4], h: &ReflectHeader) -> bool {
    let a = dst[0];
    a == 0
        || a == 127
        || a >= 224
        || h.dst_port == [0, 0]
        || RELAY_OWN_ADDRS.get_ptr(&h.dst_addr).is_some()
        || RELAY_REFLECT_DENY.get(&Key::new(128, h.dst_addr)).is_some()
}

/// Per-source GCRA: a packet conforms if the source's next-allowed time is at most
/// `(burst - 1)` intervals ahead of now; conforming packets push it one interval further.
/// Concurrent updates from two CPUs may let a packet or two more through; acceptable for an
/// abuse limit, and cheaper than a lock.
#[inline(always)]
fn rate_ok(saddr: u32, cfg: &DataPlaneConfig) -> bool {
    let rate = cfg.reflect_rate as u64;
    if rate == 0 {
        return true;
    }
    let interval = NS_PER_SEC / rate;
    let burst = if cfg.reflect_burst == 0 {
        1
    } else {
        cfg.reflect_burst as u64
    };
    let tolerance = interval * (burst - 1);
    // SAFETY: a helper without arguments or preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match RELAY_REFLECT_RATE.get_ptr_mut(&saddr) {
        Some(p) => {
            // SAFETY: a live entry of this map (valid for the run, as for `maps::leg`), a
            // `u64`; another CPU may race on it, which only loosens the limit (see above).
            let next = unsafe { &mut *p };
            let tat = if *next > now { *next } else { now };
            if tat - now > tolerance {
                return false;
            }
            *next = tat + interval;
            true
        }
        // A full LRU evicts; an insert that still fails leaves this packet unlimited.
        None => {
            let _ = RELAY_REFLECT_RATE.insert(&saddr, &(now + interval), 0);
            true
        }
    }
}
