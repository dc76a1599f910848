//! The IPv4 leg fast path: look up (relay address, relay port) and, on a shared port, the
//! channel of the packet's source; check the latched source, rewrite addresses, ports, TTL,
//! checksums and MACs, and say how the frame leaves (XDP_TX or XDP_REDIRECT).
//!
//! Every check happens before the first write, so a packet that goes to the stack is always
//! the packet that arrived.
use aya_ebpf::programs::XdpContext;
use relay_common::{
    Counter, Endpoint, LegKey,
    csum::CsumDelta,
    leg::{LEG_F_SHARED, LEG_F_TURN},
};

use crate::{
    egress::{Fwd, Kind, Leg, egress},
    fib::{self, V4Flow},
    maps,
    parse::Frame,
    stats::{coarse_ns, count, count_leg},
};

/// Relay the IPv4 packet in `f` along its leg. `Err` is the pass reason.
#[inline(always)]
pub fn relay(ctx: &XdpContext, f: &mut Frame) -> Result<Leg, Counter> {
    let (saddr, daddr, ttl, tos, tot_len) = (
        f.ip.saddr,
        f.ip.daddr,
        f.ip.ttl,
        f.ip.tos,
        u16::from_be(f.ip.tot_len),
    );
    let (sport, dport) = (f.udp.source, f.udp.dest);

    // One key on the stack, reused for the channel lookup (the stack is 512 bytes).
    let mut key = LegKey::port(Endpoint::v4(daddr.to_ne_bytes(), u16::from_be(dport)));
    let mut leg = maps::leg(&key).ok_or(Counter::PassUnknownLeg)?;
    if leg.flags & LEG_F_TURN != 0 {
        // A TURN relayed address: the peer's channel entry is in the TURN peers map.
        return Ok(Leg::Turn);
    }
    if leg.flags & LEG_F_SHARED != 0 {
        // Both channels send to this port: the source picks the entry. Exactly one extra
        // lookup, never a chain (a channel entry's flags are not looked at).
        key.peer = Endpoint::v4(saddr.to_ne_bytes(), u16::from_be(sport));
        leg = maps::leg(&key).ok_or(Counter::PassSharedNoChannel)?;
    }

    if leg.latched.is_none() {
        return Err(Counter::PassUnlatched);
    }
    if !leg.latched.is_v4() || leg.latched.v4_raw() != saddr || leg.latched.port_be != sport {
        return Err(Counter::PassSrcMismatch);
    }
    if !leg.new_src.is_v4() || !leg.new_dst.is_v4() {
        return Err(Counter::PassFamilyMismatch);
    }
    if ttl <= 1 {
        return Err(Counter::PassTtlExpired);
    }

    let (nsrc, ndst) = (leg.new_src.v4_raw(), leg.new_dst.v4_raw());
    let (nsport, ndport) = (leg.new_src.port_be, leg.new_dst.port_be);
    let slot = leg.slot;
    let now = coarse_ns();

    let hop = fib::next_hop_v4(
        ctx,
        &V4Flow {
            src: nsrc,
            dst: ndst,
            sport_be: nsport,
            dport_be: ndport,
            tos,
            tot_len,
        },
        now,
    )?;
    let out = egress(ctx, f.vlan_tagged, &hop).map_err(|e| e.pass_reason())?;

    rewrite(f, nsrc, ndst, nsport, ndport, &hop);
    if !count_leg(slot, f.payload_len as u64, now) {
        count(Counter::LegSlotInvalid);
    }
    Ok(Leg::Fwd(Fwd {
        out,
        payload_len: f.payload_len,
        kind: Kind::Relay,
    }))
}

/// Write the new addresses, ports, TTL and MACs and fix both checksums incrementally.
#[inline(always)]
fn rewrite(f: &mut Frame, nsrc: u32, ndst: u32, nsport: u16, ndport: u16, hop: &fib::NextHop) {
    let (ip, udp) = (&mut *f.ip, &mut *f.udp);

    // TTL shares a 16-bit word with the protocol; replace that word in the checksum.
    let ttl_word = u16::from_ne_bytes([ip.ttl, ip.protocol]);
    let new_ttl = ip.ttl - 1;
    let addrs = CsumDelta::new()
        .replace32(ip.saddr, nsrc)
        .replace32(ip.daddr, ndst);
    ip.check = addrs
        .replace16(ttl_word, u16::from_ne_bytes([new_ttl, ip.protocol]))
        .apply(ip.check);
    udp.check = addrs
        .replace16(udp.source, nsport)
        .replace16(udp.dest, ndport)
        .apply_udp(udp.check);

    ip.ttl = new_ttl;
    ip.saddr = nsrc;
    ip.daddr = ndst;
    udp.source = nsport;
    udp.dest = ndport;

    f.eth.src = hop.smac;
    f.eth.dst = hop.dmac;
}
