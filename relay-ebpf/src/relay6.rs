//! The IPv6 leg fast path: the same lookup, checks and rewrite as the IPv4 one (relay4.rs),
//! on 16-byte addresses. There is no header checksum; the UDP checksum (mandatory over IPv6)
//! is updated incrementally over both addresses and ports, and the hop limit is decremented.
use aya_ebpf::programs::XdpContext;
use relay_common::{
    Counter, Endpoint, Family, LegKey,
    csum::CsumDelta,
    leg::{LEG_F_SHARED, LEG_F_TURN},
};

use crate::{
    egress::{Fwd, Kind, Leg, egress},
    fib::{self, V6Flow, words},
    maps,
    parse::{Frame6, IPV6_HLEN},
    stats::{coarse_ns, count, count_leg},
};

/// Version and traffic class bits of `vtc_flow`, in network byte order: what is left is the
/// flow label the FIB may hash on.
const FLOW_LABEL_MASK_BE: u32 = 0x000f_ffffu32.to_be();

#[inline(always)]
fn is_v6_at(e: &Endpoint, addr: &[u8; 16], port_be: u16) -> bool {
    e.family == Family::V6 as u8 && e.port_be == port_be && words(&e.addr) == words(addr)
}

/// Relay the IPv6 packet in `f` along its leg. `Err` is the pass reason.
#[inline(always)]
pub fn relay6(ctx: &XdpContext, f: &mut Frame6) -> Result<Leg, Counter> {
    // Addresses are read in place (packet and map value): the stack is 512 bytes and the
    // key and the FIB lookup struct already take 104 of them.
    let (ip, udp) = (&mut *f.ip6, &mut *f.udp);
    let (sport, dport, check) = (udp.source, udp.dest, udp.check);

    let mut key = LegKey::port(Endpoint::v6(ip.daddr, u16::from_be(dport)));
    let mut leg = maps::leg(&key).ok_or(Counter::PassUnknownLeg)?;
    if leg.flags & LEG_F_TURN != 0 {
        // A TURN relayed address: the peer's channel entry is in the TURN peers map.
        return Ok(Leg::Turn);
    }
    if leg.flags & LEG_F_SHARED != 0 {
        key.peer = Endpoint::v6(ip.saddr, u16::from_be(sport));
        leg = maps::leg(&key).ok_or(Counter::PassSharedNoChannel)?;
    }
    if leg.latched.is_none() {
        return Err(Counter::PassUnlatched);
    }
    if !is_v6_at(&leg.latched, &ip.saddr, sport) {
        return Err(Counter::PassSrcMismatch);
    }
    if leg.new_src.family != Family::V6 as u8 || leg.new_dst.family != Family::V6 as u8 {
        return Err(Counter::PassFamilyMismatch);
    }
    if check == 0 {
        return Err(Counter::PassUdp6ZeroChecksum);
    }
    if ip.hop_limit <= 1 {
        return Err(Counter::PassTtlExpired);
    }

    let (nsrc, ndst) = (&leg.new_src.addr, &leg.new_dst.addr);
    let (nsport, ndport) = (leg.new_src.port_be, leg.new_dst.port_be);

    let now = coarse_ns();
    let hop = fib::next_hop_v6(
        ctx,
        &V6Flow {
            src: nsrc,
            dst: ndst,
            sport_be: nsport,
            dport_be: ndport,
            flowinfo_be: ip.vtc_flow & FLOW_LABEL_MASK_BE,
            tot_len: IPV6_HLEN as u16 + f.payload_len + 8,
        },
        now,
    )?;
    let out = egress(ctx, f.vlan_tagged, &hop).map_err(|e| e.pass_reason())?;

    udp.check = CsumDelta::new()
        .replace128(words(&ip.saddr), words(nsrc))
        .replace128(words(&ip.daddr), words(ndst))
        .replace16(sport, nsport)
        .replace16(dport, ndport)
        .apply_udp(check);
    ip.hop_limit -= 1;
    ip.saddr = *nsrc;
    ip.daddr = *ndst;
    udp.source = nsport;
    udp.dest = ndport;
    f.eth.src = hop.smac;
    f.eth.dst = hop.dmac;
    if !count_leg(leg.slot, f.payload_len as u64, now) {
        count(Counter::LegSlotInvalid);
    }
    Ok(Leg::Fwd(Fwd {
        out,
        payload_len: f.payload_len,
        kind: Kind::Relay,
    }))
}
