//! The relay leg fast path: look up (relay address, relay port) and, on a shared port, the
//! channel of the packet's source; check the latched source, rewrite addresses, ports, TTL,
//! checksums and MACs, then XDP_TX or XDP_REDIRECT.
//!
//! Every check happens before the first write, so a packet that goes to the stack is always
//! the packet that arrived.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use relay_common::{Counter, Endpoint, LegKey, csum::CsumDelta, leg::LEG_F_SHARED};

use crate::{
    fib::{self, V4Flow},
    maps::{RELAY_EGRESS, RELAY_LEGS},
    parse::{Frame, parse},
    stats::{add, count, count_leg},
};

enum Out {
    Tx,
    Redirect(u32),
}

/// A rewritten frame and how it leaves; `payload_len` feeds `FwdBytes` once the verdict is
/// final (a failed redirect turns into a pass).
struct Fwd {
    out: Out,
    payload_len: u16,
}

/// Entry point: always returns a verdict, counting it (and, for a pass, its reason).
#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    match relay(ctx) {
        Ok(Fwd {
            out: Out::Tx,
            payload_len,
        }) => {
            count(Counter::VerdictTx);
            add(Counter::FwdBytes, payload_len as u64);
            xdp_action::XDP_TX
        }
        Ok(Fwd {
            out: Out::Redirect(ifindex),
            payload_len,
        }) => match RELAY_EGRESS.redirect(ifindex, 0) {
            Ok(action) => {
                count(Counter::VerdictRedirect);
                add(Counter::FwdBytes, payload_len as u64);
                action
            }
            // The interface left the devmap between the check and now: the frame is already
            // rewritten, so the stack may route it like any other transit packet.
            Err(_) => pass(Counter::PassEgressNotAttached),
        },
        Err(reason) => pass(reason),
    }
}

#[inline(always)]
fn pass(reason: Counter) -> u32 {
    count(Counter::VerdictPass);
    count(reason);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn relay(ctx: &XdpContext) -> Result<Fwd, Counter> {
    let f = parse(ctx)?;
    let (saddr, daddr, ttl, tos, tot_len) = unsafe {
        let ip = &*f.ip;
        (ip.saddr, ip.daddr, ip.ttl, ip.tos, u16::from_be(ip.tot_len))
    };
    let (sport, dport) = unsafe { ((*f.udp).source, (*f.udp).dest) };

    // One key on the stack, reused for the channel lookup (the stack is 512 bytes).
    let mut key = LegKey::port(Endpoint::v4(daddr.to_ne_bytes(), u16::from_be(dport)));
    let mut leg = unsafe { RELAY_LEGS.get(&key) }.ok_or(Counter::PassUnknownLeg)?;
    if leg.flags & LEG_F_SHARED != 0 {
        // Both channels send to this port: the source picks the entry. Exactly one extra
        // lookup, never a chain (a channel entry's flags are not looked at).
        key.peer = Endpoint::v4(saddr.to_ne_bytes(), u16::from_be(sport));
        leg = unsafe { RELAY_LEGS.get(&key) }.ok_or(Counter::PassSharedNoChannel)?;
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

    let hop = fib::lookup_v4(
        ctx,
        &V4Flow {
            src: nsrc,
            dst: ndst,
            sport_be: nsport,
            dport_be: ndport,
            tos,
            tot_len,
        },
    )?;
    let ingress = ctx.ingress_ifindex() as u32;
    let out = if hop.ifindex == ingress {
        Out::Tx
    } else if f.vlan_tagged {
        // The tag belongs to the ingress link; another interface would need another tag.
        return Err(Counter::PassVlanCrossIf);
    } else if RELAY_EGRESS.get(hop.ifindex).is_none() {
        return Err(Counter::PassEgressNotAttached);
    } else {
        Out::Redirect(hop.ifindex)
    };

    rewrite(&f, nsrc, ndst, nsport, ndport, &hop);
    if !count_leg(slot, f.payload_len as u64) {
        count(Counter::LegSlotInvalid);
    }
    Ok(Fwd {
        out,
        payload_len: f.payload_len,
    })
}

/// Write the new addresses, ports, TTL and MACs and fix both checksums incrementally.
#[inline(always)]
fn rewrite(f: &Frame, nsrc: u32, ndst: u32, nsport: u16, ndport: u16, hop: &fib::NextHop) {
    unsafe {
        let ip = &mut *f.ip;
        let udp = &mut *f.udp;

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

        let eth = &mut *f.eth;
        eth.src = hop.smac;
        eth.dst = hop.dmac;
    }
}
