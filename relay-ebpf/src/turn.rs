//! TURN ChannelData (RFC 8656 section 12) relayed in XDP, from the entries the controller's
//! TURN server writes (`relay_common::turn`, docs/turn.md):
//! - ChannelData from a client to the TURN port ([`channel4`], [`channel6`]): its channel
//!   entry says Strip (take the 4-byte header and any padding off, send the payload from the
//!   relayed address to the peer) or Renumber (another allocation on this box: rewrite the
//!   channel number, send it on to that allocation's client);
//! - UDP from a peer to a relayed address ([`peer4`], [`peer6`], reached through a port entry
//!   flagged `LEG_F_TURN`): its peer entry says Add (put the header in front, pad to 4 bytes,
//!   send it from the TURN port to the client).
//!
//! As on a relay leg, every check happens before the first write (a passed packet is the one
//! that arrived) and the checksums are updated incrementally: the header moves by 4 bytes, so
//! the payload keeps its 16-bit word alignment and only the words that change are summed.
//! A frame that changes length gets fresh headers written after the resize, from values read
//! before it (parse.rs contract: no frame reference survives a resize).
use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use relay_common::{
    Counter, Endpoint, Family, LegKey,
    csum::{CsumDelta, fold},
    turn::{CHANNEL_HEADER_LEN, ChannelKey, TurnAction, TurnValue},
};

use crate::{
    egress::{Fwd, Kind, Out, egress},
    fib::{self, NextHop, V4Flow, V6Flow, words},
    maps,
    parse::{
        ETH_HLEN, EthHdr, Frame, Frame6, IPV4_HLEN, IPV6_HLEN, Ipv6Hdr, UDP_HLEN, UdpHdr,
        VLAN_HLEN, headers_at, mut_at, ref_at,
    },
    stats::{coarse_ns, count, count_leg},
};

const HDR: u16 = CHANNEL_HEADER_LEN as u16;
/// Longest UDP payload the TURN paths take. XDP sees at most a page per frame (no
/// multi-buffer here); the bound lets the verifier accept the variable packet offsets of the
/// padding (and keeps every length sum far from overflowing 16 bits).
const MAX_PAYLOAD: u16 = 0x2000;
/// Mask that bounds a variable packet offset for the verifier (a no-op on lengths the paths
/// accept: all are below it).
const OFF_MASK: u16 = 2 * MAX_PAYLOAD - 1;

/// `n & OFF_MASK`, with the mask kept in the object. LLVM proves it a no-op (the paths
/// checked the lengths) and drops it, but 6.1's verifier has lost those checks' bounds by
/// then (the lengths went through the stack) and refuses a packet offset that may pass
/// 64 KiB; the volatile read hides the value from LLVM, so the mask stays.
#[inline(always)]
fn bounded(n: u16) -> usize {
    // SAFETY: a read of a local `u16`, valid and aligned.
    (unsafe { core::ptr::read_volatile(&n) } & OFF_MASK) as usize
}
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_UDP: u8 = 17;
const FLOW_LABEL_MASK_BE: u32 = 0x000f_ffffu32.to_be();

/// Offset of the L3 header (behind one optional 802.1Q tag, as `parse` accepts).
#[inline(always)]
const fn l3_of(vlan_tagged: bool) -> usize {
    if vlan_tagged {
        ETH_HLEN + VLAN_HLEN
    } else {
        ETH_HLEN
    }
}

/// The ChannelData header at `at` against a UDP payload of `payload` bytes: (channel number,
/// length field, both as on the wire, and the padding bytes after the data). A length beyond
/// the payload or more than 3 bytes of padding is not ChannelData we relay.
#[inline(always)]
fn channel_header(ctx: &XdpContext, at: usize, payload: u16) -> Result<(u16, u16, u16), Counter> {
    if !(HDR..=MAX_PAYLOAD).contains(&payload) {
        return Err(Counter::PassTurnBadLength);
    }
    // SAFETY: two `u16`s after the UDP header, which no frame reference covers; copied out.
    let h: &[u16; 2] = unsafe { ref_at(ctx, at) }.map_err(|_| Counter::PassTurnBadLength)?;
    let (channel_be, len_be) = (h[0], h[1]);
    let room = payload - HDR;
    let len = u16::from_be(len_be);
    if len > room || room - len > 3 {
        return Err(Counter::PassTurnBadLength);
    }
    Ok((channel_be, len_be, room - len))
}

/// The channel lookup's key, in per-CPU scratch (44 bytes the path's stack has no room for;
/// the key is dead before the next-hop lookup takes the scratch entry again).
#[inline(always)]
fn channel_key() -> Result<&'static mut ChannelKey, Counter> {
    // This CPU's entry of a one-entry per-CPU array always exists.
    maps::scratch()
        .map(|s| &mut s.turn_key)
        .ok_or(Counter::PassTurnUnknownChannel)
}

/// Checks shared by every entry found: not expired, and the rewrite stays in `family`.
#[inline(always)]
fn usable(v: &TurnValue, family: Family, now: u64) -> Result<(), Counter> {
    if now > v.expires_ns {
        return Err(Counter::PassTurnExpired);
    }
    if v.new_src.family != family as u8 || v.new_dst.family != family as u8 {
        return Err(Counter::PassTurnFamilyMismatch);
    }
    Ok(())
}

/// One's-complement sum of the last `pad` (1..=3) bytes of a UDP payload of `payload` bytes
/// starting at `at`, each in its 16-bit word position: what removing them takes out of the
/// checksum. Read as the payload's last 4 bytes, the others masked off.
#[inline(always)]
fn pad_sum(ctx: &XdpContext, at: usize, payload: u16, pad: u16) -> Result<u16, Counter> {
    // `payload` is at least 4 and at most MAX_PAYLOAD (channel_header): the mask keeps the
    // bound visible to the verifier and changes nothing.
    let off = at + bounded(payload - 4);
    // SAFETY: a byte array inside the UDP payload, bounds checked, copied out at once.
    let t: &[u8; 4] = unsafe { ref_at(ctx, off) }.map_err(|_| Counter::PassTurnBadLength)?;
    let w = u32::from_ne_bytes(*t) & pad_mask(pad);
    // As if the 4 bytes started a word: their two words' sum. They start at payload offset
    // payload - 4; when that is odd every byte sits in the other half of its word, and the
    // one's-complement sum of byte-swapped words is the byte-swapped sum.
    let sum = fold((w & 0xffff) + (w >> 16));
    Ok(if payload & 1 == 0 {
        sum
    } else {
        sum.swap_bytes()
    })
}

/// The bits of the last `pad` (1..=3) bytes of 4 bytes read as a native `u32` (little-endian
/// BPF: the last byte is the most significant).
#[inline(always)]
fn pad_mask(pad: u16) -> u32 {
    !(u32::MAX >> (8 * (pad as u32 & 3)))
}

/// The 802.1Q tag control word of a tagged frame (0 untagged), read before a resize.
#[inline(always)]
fn vlan_tci(ctx: &XdpContext, vlan_tagged: bool) -> Result<u16, Counter> {
    if !vlan_tagged {
        return Ok(0);
    }
    // SAFETY: a `u16` inside the tag (14..16), which no frame reference covers.
    let t: &u16 = unsafe { ref_at(ctx, ETH_HLEN) }?;
    Ok(*t)
}

/// Write the Ethernet header (and tag) of a frame rebuilt after a resize.
#[inline(always)]
fn write_l2(
    ctx: &XdpContext,
    eth: &mut EthHdr,
    hop: &NextHop,
    tci: Option<u16>,
    ether_type: u16,
) -> Result<(), Counter> {
    eth.dst = hop.dmac;
    eth.src = hop.smac;
    match tci {
        Some(tci) => {
            // SAFETY: the tag (14..18), between the Ethernet and IP headers, a `u16` array.
            let v: &mut [u16; 2] = unsafe { mut_at(ctx, ETH_HLEN) }?;
            eth.ether_type = ETH_P_8021Q.to_be();
            v[0] = tci;
            v[1] = ether_type.to_be();
        }
        None => eth.ether_type = ether_type.to_be(),
    }
    Ok(())
}

/// Zero the last `pad` (1..=3) bytes of a UDP payload of `payload` bytes at `at` (they may
/// hold an Ethernet trailer that was there before the frame grew). One 4-byte word, masked:
/// a byte loop would become a memset call the verifier cannot bound.
#[inline(always)]
fn zero_pad(ctx: &XdpContext, at: usize, payload: u16, pad: u16) -> Result<(), Counter> {
    let off = at + bounded(payload - 4);
    // SAFETY: a byte array inside the new UDP payload, bounds checked; no other reference
    // into the frame covers it.
    let t: &mut [u8; 4] = unsafe { mut_at(ctx, off) }?;
    *t = (u32::from_ne_bytes(*t) & !pad_mask(pad)).to_ne_bytes();
    Ok(())
}

/// Grow the frame by `HDR` bytes at the head and `pad` at the tail, or leave it as it was.
#[inline(always)]
fn grow(ctx: &XdpContext, pad: u16) -> Result<(), Counter> {
    // SAFETY (both helpers): they check the new bounds themselves; the caller uses no frame
    // reference taken before this call afterwards.
    if pad > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, pad as i32) } != 0 {
        return Err(Counter::PassTurnNoRoom);
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(HDR as i32)) } != 0 {
        if pad > 0 {
            // SAFETY: as above; undoes the grow the helper just allowed.
            unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(pad as i32)) };
        }
        return Err(Counter::PassTurnNoRoom);
    }
    Ok(())
}

/// Take the header (`HDR` bytes at the head) and `pad` bytes at the tail off the frame.
/// Shrinking by less than the frame holds cannot fail; if it did, the frame would be dropped
/// by the stack for its lengths, never sent.
#[inline(always)]
fn shrink(ctx: &XdpContext, pad: u16) -> Result<(), Counter> {
    // SAFETY (both helpers): as in `grow`.
    if pad > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(pad as i32)) } != 0 {
        return Err(Counter::PassTurnBadLength);
    }
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, HDR as i32) } != 0 {
        return Err(Counter::PassTurnBadLength);
    }
    Ok(())
}

/// What the forwarded frame reports to the dispatcher and the entry's stats slot.
#[inline(always)]
fn done(out: Out, data_len: u16, kind: Kind, slot: u32, now: u64) -> Fwd {
    if !count_leg(slot, data_len as u64, now) {
        count(Counter::LegSlotInvalid);
    }
    Fwd {
        out,
        payload_len: data_len,
        kind,
    }
}

/// IPv4 header fields a rebuilt frame keeps (or gets), in wire order.
struct Ip4Out {
    tos: u8,
    tot_len_be: u16,
    id: u16,
    frag_off: u16,
    ttl: u8,
    check: u16,
    saddr: u32,
    daddr: u32,
}

/// The fresh headers of an IPv4 frame rebuilt after a resize (the references of the parsed
/// frame are dead).
#[inline(always)]
fn write4(
    ctx: &XdpContext,
    l3: usize,
    hop: &NextHop,
    tci: Option<u16>,
    ip4: &Ip4Out,
    (sport, dport, udp_len_be, udp_check): (u16, u16, u16, u16),
) -> Result<(), Counter> {
    // SAFETY: l3 is 14 or 18 and no reference taken before the resize is used.
    let (eth, ip, udp) = unsafe { headers_at(ctx, l3) }?;
    write_l2(ctx, eth, hop, tci, ETH_P_IP)?;
    ip.version_ihl = 0x45;
    ip.tos = ip4.tos;
    ip.tot_len = ip4.tot_len_be;
    ip.id = ip4.id;
    ip.frag_off = ip4.frag_off;
    ip.ttl = ip4.ttl;
    ip.protocol = IPPROTO_UDP;
    ip.check = ip4.check;
    ip.saddr = ip4.saddr;
    ip.daddr = ip4.daddr;
    udp.source = sport;
    udp.dest = dport;
    udp.len = udp_len_be;
    udp.check = udp_check;
    Ok(())
}

/// ChannelData from a client to the TURN port of one of our IPv4 addresses.
#[inline(always)]
pub fn channel4(ctx: &XdpContext, f: &mut Frame) -> Result<Fwd, Counter> {
    let (saddr, daddr, sport, dport) = (f.ip.saddr, f.ip.daddr, f.udp.source, f.udp.dest);
    let tot_len = u16::from_be(f.ip.tot_len);
    let l3 = f.l3;
    let at = l3 + IPV4_HLEN + UDP_HLEN;
    // The UDP checksum is updated from the UDP length: it must be the IP one.
    if u16::from_be(f.udp.len) != tot_len - IPV4_HLEN as u16 {
        return Err(Counter::PassTurnBadLength);
    }
    let (channel_be, len_be, pad) = channel_header(ctx, at, f.payload_len)?;
    let key = channel_key()?;
    key.server = Endpoint::v4(daddr.to_ne_bytes(), u16::from_be(dport));
    key.client = Endpoint::v4(saddr.to_ne_bytes(), u16::from_be(sport));
    key.channel_be = channel_be;
    key._pad = 0;
    let v = maps::turn_channel(key).ok_or(Counter::PassTurnUnknownChannel)?;
    let now = coarse_ns();
    usable(v, Family::V4, now)?;
    if f.ip.ttl <= 1 {
        return Err(Counter::PassTtlExpired);
    }
    let strip = v.action == TurnAction::Strip as u16;
    if !strip && v.action != TurnAction::Renumber as u16 {
        return Err(Counter::PassTurnUnknownChannel);
    }
    // One next-hop lookup for both actions (each inlined copy costs the verifier).
    let new_tot = if strip {
        IPV4_HLEN as u16 + UDP_HLEN as u16 + u16::from_be(len_be)
    } else {
        tot_len
    };
    let route = route4(ctx, f, v, new_tot, now)?;
    if strip {
        strip4(ctx, f, v, (channel_be, len_be, pad), route, now)
    } else {
        renumber4(ctx, f, v, channel_be, u16::from_be(len_be), route, now)
    }
}

/// Next hop and way out of an IPv4 frame from `v.new_src` to `v.new_dst`.
#[inline(always)]
fn route4(
    ctx: &XdpContext,
    f: &Frame,
    v: &TurnValue,
    tot_len: u16,
    now: u64,
) -> Result<(NextHop, Out), Counter> {
    let hop = fib::next_hop_v4(
        ctx,
        &V4Flow {
            src: v.new_src.v4_raw(),
            dst: v.new_dst.v4_raw(),
            sport_be: v.new_src.port_be,
            dport_be: v.new_dst.port_be,
            tos: f.ip.tos,
            tot_len,
        },
        now,
    )?;
    let out = egress(ctx, f.l3 != ETH_HLEN, &hop).map_err(|e| e.pass_reason())?;
    Ok((hop, out))
}

/// Strip: the payload alone goes from the relayed address to the peer.
#[inline(always)]
fn strip4(
    ctx: &XdpContext,
    f: &mut Frame,
    v: &TurnValue,
    (channel_be, len_be, pad): (u16, u16, u16),
    (hop, out): (NextHop, Out),
    now: u64,
) -> Result<Fwd, Counter> {
    let l3 = f.l3;
    let at = l3 + IPV4_HLEN + UDP_HLEN;
    let data_len = u16::from_be(len_be);
    let old_tot = f.ip.tot_len;
    let new_tot = IPV4_HLEN as u16 + UDP_HLEN as u16 + data_len;
    let removed = if pad > 0 {
        pad_sum(ctx, at, f.payload_len, pad)?
    } else {
        0
    };
    let (nsrc, ndst, nsport, ndport) = (
        v.new_src.v4_raw(),
        v.new_dst.v4_raw(),
        v.new_src.port_be,
        v.new_dst.port_be,
    );
    let (ip, udp) = (&*f.ip, &*f.udp);
    let new_udp_len = (UDP_HLEN as u16 + data_len).to_be();
    let addrs = CsumDelta::new()
        .replace32(ip.saddr, nsrc)
        .replace32(ip.daddr, ndst);
    let udp_check = addrs
        .replace16(udp.source, nsport)
        .replace16(udp.dest, ndport)
        // The length twice: pseudo-header and UDP header.
        .replace16(udp.len, new_udp_len)
        .replace16(udp.len, new_udp_len)
        .replace16(channel_be, 0)
        .replace16(len_be, 0)
        .replace16(removed, 0)
        .apply_udp(udp.check);
    let new_ttl = ip.ttl - 1;
    let ip4 = Ip4Out {
        tos: ip.tos,
        tot_len_be: new_tot.to_be(),
        id: ip.id,
        frag_off: ip.frag_off,
        ttl: new_ttl,
        check: addrs
            .replace16(old_tot, new_tot.to_be())
            .replace16(
                u16::from_ne_bytes([ip.ttl, IPPROTO_UDP]),
                u16::from_ne_bytes([new_ttl, IPPROTO_UDP]),
            )
            .apply(ip.check),
        saddr: nsrc,
        daddr: ndst,
    };
    let tagged = l3 != ETH_HLEN;
    let tci = vlan_tci(ctx, tagged)?;
    let slot = v.slot;
    shrink(ctx, pad)?;
    write4(
        ctx,
        l3,
        &hop,
        tagged.then_some(tci),
        &ip4,
        (nsport, ndport, new_udp_len, udp_check),
    )?;
    Ok(done(out, data_len, Kind::TurnToPeer, slot, now))
}

/// Renumber: the ChannelData goes on, under the other client's channel number.
#[inline(always)]
fn renumber4(
    ctx: &XdpContext,
    f: &mut Frame,
    v: &TurnValue,
    channel_be: u16,
    data_len: u16,
    (hop, out): (NextHop, Out),
    now: u64,
) -> Result<Fwd, Counter> {
    let at = f.l3 + IPV4_HLEN + UDP_HLEN;
    // SAFETY: the channel number, after the UDP header: no frame reference covers it.
    let ch: &mut u16 = unsafe { mut_at(ctx, at) }?;
    let (nsrc, ndst, nsport, ndport) = (
        v.new_src.v4_raw(),
        v.new_dst.v4_raw(),
        v.new_src.port_be,
        v.new_dst.port_be,
    );
    let (ip, udp) = (&mut *f.ip, &mut *f.udp);
    let addrs = CsumDelta::new()
        .replace32(ip.saddr, nsrc)
        .replace32(ip.daddr, ndst);
    udp.check = addrs
        .replace16(udp.source, nsport)
        .replace16(udp.dest, ndport)
        .replace16(channel_be, v.channel_be)
        .apply_udp(udp.check);
    let new_ttl = ip.ttl - 1;
    ip.check = addrs
        .replace16(
            u16::from_ne_bytes([ip.ttl, IPPROTO_UDP]),
            u16::from_ne_bytes([new_ttl, IPPROTO_UDP]),
        )
        .apply(ip.check);
    ip.ttl = new_ttl;
    ip.saddr = nsrc;
    ip.daddr = ndst;
    udp.source = nsport;
    udp.dest = ndport;
    *ch = v.channel_be;
    f.eth.src = hop.smac;
    f.eth.dst = hop.dmac;
    Ok(done(out, data_len, Kind::TurnLocal, v.slot, now))
}

/// UDP from a peer to a TURN relayed IPv4 address (its port entry is flagged `LEG_F_TURN`).
#[inline(always)]
pub fn peer4(ctx: &XdpContext, f: &mut Frame) -> Result<Fwd, Counter> {
    let (saddr, daddr, sport, dport) = (f.ip.saddr, f.ip.daddr, f.udp.source, f.udp.dest);
    let key = LegKey::channel(
        Endpoint::v4(daddr.to_ne_bytes(), u16::from_be(dport)),
        Endpoint::v4(saddr.to_ne_bytes(), u16::from_be(sport)),
    );
    let v = maps::turn_peer(&key).ok_or(Counter::PassTurnNoChannel)?;
    if v.action != TurnAction::Add as u16 {
        return Err(Counter::PassTurnNoChannel);
    }
    let now = coarse_ns();
    usable(v, Family::V4, now)?;
    let tot_len = u16::from_be(f.ip.tot_len);
    let data_len = f.payload_len;
    if u16::from_be(f.udp.len) != tot_len - IPV4_HLEN as u16 || data_len > MAX_PAYLOAD {
        return Err(Counter::PassTurnBadLength);
    }
    if f.ip.ttl <= 1 {
        return Err(Counter::PassTtlExpired);
    }
    let l3 = f.l3;
    let pad = data_len.wrapping_neg() & 3;
    let payload = HDR + data_len + pad;
    let new_tot = IPV4_HLEN as u16 + UDP_HLEN as u16 + payload;
    let (hop, out) = route4(ctx, f, v, new_tot, now)?;

    let (nsrc, ndst, nsport, ndport) = (
        v.new_src.v4_raw(),
        v.new_dst.v4_raw(),
        v.new_src.port_be,
        v.new_dst.port_be,
    );
    let (ip, udp) = (&*f.ip, &*f.udp);
    let new_udp_len = (UDP_HLEN as u16 + payload).to_be();
    let addrs = CsumDelta::new()
        .replace32(ip.saddr, nsrc)
        .replace32(ip.daddr, ndst);
    // The header's two words come in; the padding is zeros and adds nothing.
    let udp_check = addrs
        .replace16(udp.source, nsport)
        .replace16(udp.dest, ndport)
        .replace16(udp.len, new_udp_len)
        .replace16(udp.len, new_udp_len)
        .replace16(0, v.channel_be)
        .replace16(0, data_len.to_be())
        .apply_udp(udp.check);
    let new_ttl = ip.ttl - 1;
    let ip4 = Ip4Out {
        tos: ip.tos,
        tot_len_be: new_tot.to_be(),
        id: ip.id,
        frag_off: ip.frag_off,
        ttl: new_ttl,
        check: addrs
            .replace16(ip.tot_len, new_tot.to_be())
            .replace16(
                u16::from_ne_bytes([ip.ttl, IPPROTO_UDP]),
                u16::from_ne_bytes([new_ttl, IPPROTO_UDP]),
            )
            .apply(ip.check),
        saddr: nsrc,
        daddr: ndst,
    };
    let tagged = l3 != ETH_HLEN;
    let tci = vlan_tci(ctx, tagged)?;
    let (channel_be, slot) = (v.channel_be, v.slot);
    grow(ctx, pad)?;
    write4(
        ctx,
        l3,
        &hop,
        tagged.then_some(tci),
        &ip4,
        (nsport, ndport, new_udp_len, udp_check),
    )?;
    write_channel_header(ctx, l3 + IPV4_HLEN + UDP_HLEN, channel_be, data_len, pad)?;
    Ok(done(out, data_len, Kind::TurnToClient, slot, now))
}

/// The ChannelData header at `at` of a grown frame, and its padding zeroed.
#[inline(always)]
fn write_channel_header(
    ctx: &XdpContext,
    at: usize,
    channel_be: u16,
    data_len: u16,
    pad: u16,
) -> Result<(), Counter> {
    // SAFETY: two `u16`s after the UDP header of the rebuilt frame, no other reference.
    let h: &mut [u16; 2] = unsafe { mut_at(ctx, at) }?;
    h[0] = channel_be;
    h[1] = data_len.to_be();
    if pad > 0 {
        zero_pad(ctx, at, HDR + data_len + pad, pad)?;
    }
    Ok(())
}

/// ChannelData from a client to the TURN port of one of our IPv6 addresses.
#[inline(always)]
pub fn channel6(ctx: &XdpContext, f: &mut Frame6) -> Result<Fwd, Counter> {
    let (sport, dport) = (f.udp.source, f.udp.dest);
    let l3 = l3_of(f.vlan_tagged);
    let at = l3 + IPV6_HLEN + UDP_HLEN;
    if f.udp.len != f.ip6.payload_len {
        return Err(Counter::PassTurnBadLength);
    }
    let (channel_be, len_be, pad) = channel_header(ctx, at, f.payload_len)?;
    let key = channel_key()?;
    key.server = Endpoint::v6(f.ip6.daddr, u16::from_be(dport));
    key.client = Endpoint::v6(f.ip6.saddr, u16::from_be(sport));
    key.channel_be = channel_be;
    key._pad = 0;
    let v = maps::turn_channel(key).ok_or(Counter::PassTurnUnknownChannel)?;
    let now = coarse_ns();
    usable(v, Family::V6, now)?;
    if f.udp.check == 0 {
        return Err(Counter::PassUdp6ZeroChecksum);
    }
    if f.ip6.hop_limit <= 1 {
        return Err(Counter::PassTtlExpired);
    }
    let strip = v.action == TurnAction::Strip as u16;
    if !strip && v.action != TurnAction::Renumber as u16 {
        return Err(Counter::PassTurnUnknownChannel);
    }
    let new_udp_len = if strip {
        UDP_HLEN as u16 + u16::from_be(len_be)
    } else {
        UDP_HLEN as u16 + f.payload_len
    };
    let route = route6(ctx, f, l3, v, new_udp_len, now)?;
    if strip {
        strip6(ctx, f, l3, v, (channel_be, len_be, pad), route, now)
    } else {
        renumber6(
            ctx,
            f,
            l3,
            v,
            (channel_be, u16::from_be(len_be)),
            route,
            now,
        )
    }
}

/// Next hop and way out of an IPv6 frame from `v.new_src` to `v.new_dst`; `plen` is the
/// new IPv6 payload length.
#[inline(always)]
fn route6(
    ctx: &XdpContext,
    f: &Frame6,
    l3: usize,
    v: &TurnValue,
    plen: u16,
    now: u64,
) -> Result<(NextHop, Out), Counter> {
    let hop = fib::next_hop_v6(
        ctx,
        &V6Flow {
            src: &v.new_src.addr,
            dst: &v.new_dst.addr,
            sport_be: v.new_src.port_be,
            dport_be: v.new_dst.port_be,
            flowinfo_be: f.ip6.vtc_flow & FLOW_LABEL_MASK_BE,
            tot_len: IPV6_HLEN as u16 + plen,
        },
        now,
    )?;
    let out = egress(ctx, l3 != ETH_HLEN, &hop).map_err(|e| e.pass_reason())?;
    Ok((hop, out))
}

/// The UDP checksum change of an IPv6 rewrite from the packet's addresses and ports to the
/// entry's.
#[inline(always)]
fn rewrite6_delta(ip: &Ipv6Hdr, udp: &UdpHdr, v: &TurnValue) -> CsumDelta {
    CsumDelta::new()
        .replace128(words(&ip.saddr), words(&v.new_src.addr))
        .replace128(words(&ip.daddr), words(&v.new_dst.addr))
        .replace16(udp.source, v.new_src.port_be)
        .replace16(udp.dest, v.new_dst.port_be)
}

/// The fresh headers of an IPv6 frame rebuilt after a resize.
#[inline(always)]
fn write6(
    ctx: &XdpContext,
    l3: usize,
    hop: &NextHop,
    tci: Option<u16>,
    (vtc_flow, hop_limit): (u32, u8),
    v: &TurnValue,
    (udp_len_be, udp_check): (u16, u16),
) -> Result<(), Counter> {
    // SAFETY: header types, bounds checked, at disjoint offsets (0..14, l3..l3 + 40,
    // l3 + 40..l3 + 48, l3 >= 14); the references taken before the resize are dead.
    let (eth, ip, udp) = unsafe {
        (
            mut_at::<EthHdr>(ctx, 0)?,
            mut_at::<Ipv6Hdr>(ctx, l3)?,
            mut_at::<UdpHdr>(ctx, l3 + IPV6_HLEN)?,
        )
    };
    write_l2(ctx, eth, hop, tci, ETH_P_IPV6)?;
    ip.vtc_flow = vtc_flow;
    ip.payload_len = udp_len_be;
    ip.nexthdr = IPPROTO_UDP;
    ip.hop_limit = hop_limit;
    ip.saddr = v.new_src.addr;
    ip.daddr = v.new_dst.addr;
    udp.source = v.new_src.port_be;
    udp.dest = v.new_dst.port_be;
    udp.len = udp_len_be;
    udp.check = udp_check;
    Ok(())
}

/// Strip over IPv6.
#[inline(always)]
fn strip6(
    ctx: &XdpContext,
    f: &mut Frame6,
    l3: usize,
    v: &TurnValue,
    (channel_be, len_be, pad): (u16, u16, u16),
    (hop, out): (NextHop, Out),
    now: u64,
) -> Result<Fwd, Counter> {
    let at = l3 + IPV6_HLEN + UDP_HLEN;
    let data_len = u16::from_be(len_be);
    let new_udp_len = UDP_HLEN as u16 + data_len;
    let removed = if pad > 0 {
        pad_sum(ctx, at, f.payload_len, pad)?
    } else {
        0
    };
    let new_udp_len = new_udp_len.to_be();
    let udp_check = rewrite6_delta(f.ip6, f.udp, v)
        .replace16(f.udp.len, new_udp_len)
        .replace16(f.udp.len, new_udp_len)
        .replace16(channel_be, 0)
        .replace16(len_be, 0)
        .replace16(removed, 0)
        .apply_udp(f.udp.check);
    let kept = (f.ip6.vtc_flow, f.ip6.hop_limit - 1);
    let tagged = l3 != ETH_HLEN;
    let tci = vlan_tci(ctx, tagged)?;
    shrink(ctx, pad)?;
    write6(
        ctx,
        l3,
        &hop,
        tagged.then_some(tci),
        kept,
        v,
        (new_udp_len, udp_check),
    )?;
    Ok(done(out, data_len, Kind::TurnToPeer, v.slot, now))
}

/// Renumber over IPv6, in place.
#[inline(always)]
fn renumber6(
    ctx: &XdpContext,
    f: &mut Frame6,
    l3: usize,
    v: &TurnValue,
    (channel_be, data_len): (u16, u16),
    (hop, out): (NextHop, Out),
    now: u64,
) -> Result<Fwd, Counter> {
    let at = l3 + IPV6_HLEN + UDP_HLEN;
    // SAFETY: the channel number, after the UDP header: no frame reference covers it.
    let ch: &mut u16 = unsafe { mut_at(ctx, at) }?;
    let (ip, udp) = (&mut *f.ip6, &mut *f.udp);
    udp.check = rewrite6_delta(ip, udp, v)
        .replace16(channel_be, v.channel_be)
        .apply_udp(udp.check);
    ip.hop_limit -= 1;
    ip.saddr = v.new_src.addr;
    ip.daddr = v.new_dst.addr;
    udp.source = v.new_src.port_be;
    udp.dest = v.new_dst.port_be;
    *ch = v.channel_be;
    f.eth.src = hop.smac;
    f.eth.dst = hop.dmac;
    Ok(done(out, data_len, Kind::TurnLocal, v.slot, now))
}

/// UDP from a peer to a TURN relayed IPv6 address (its port entry is flagged `LEG_F_TURN`).
#[inline(always)]
pub fn peer6(ctx: &XdpContext, f: &mut Frame6) -> Result<Fwd, Counter> {
    let (sport, dport) = (f.udp.source, f.udp.dest);
    let key = LegKey::channel(
        Endpoint::v6(f.ip6.daddr, u16::from_be(dport)),
        Endpoint::v6(f.ip6.saddr, u16::from_be(sport)),
    );
    let v = maps::turn_peer(&key).ok_or(Counter::PassTurnNoChannel)?;
    if v.action != TurnAction::Add as u16 {
        return Err(Counter::PassTurnNoChannel);
    }
    let now = coarse_ns();
    usable(v, Family::V6, now)?;
    let data_len = f.payload_len;
    if f.udp.len != f.ip6.payload_len || data_len > MAX_PAYLOAD {
        return Err(Counter::PassTurnBadLength);
    }
    if f.udp.check == 0 {
        return Err(Counter::PassUdp6ZeroChecksum);
    }
    if f.ip6.hop_limit <= 1 {
        return Err(Counter::PassTtlExpired);
    }
    let l3 = l3_of(f.vlan_tagged);
    let pad = data_len.wrapping_neg() & 3;
    let payload = HDR + data_len + pad;
    let new_udp_len = UDP_HLEN as u16 + payload;
    let (hop, out) = route6(ctx, f, l3, v, new_udp_len, now)?;
    let new_udp_len = new_udp_len.to_be();
    let udp_check = rewrite6_delta(f.ip6, f.udp, v)
        .replace16(f.udp.len, new_udp_len)
        .replace16(f.udp.len, new_udp_len)
        .replace16(0, v.channel_be)
        .replace16(0, data_len.to_be())
        .apply_udp(f.udp.check);
    let kept = (f.ip6.vtc_flow, f.ip6.hop_limit - 1);
    let tagged = l3 != ETH_HLEN;
    let tci = vlan_tci(ctx, tagged)?;
    grow(ctx, pad)?;
    write6(
        ctx,
        l3,
        &hop,
        tagged.then_some(tci),
        kept,
        v,
        (new_udp_len, udp_check),
    )?;
    write_channel_header(ctx, l3 + IPV6_HLEN + UDP_HLEN, v.channel_be, data_len, pad)?;
    Ok(done(out, data_len, Kind::TurnToClient, v.slot, now))
}
