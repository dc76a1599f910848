//! The relay leg fast path: look up (relay address, relay port) and, on a shared port, the
//! channel of the packet's source; check the latched source, rewrite addresses, ports, TTL,
//! checksums and MACs, then XDP_TX or XDP_REDIRECT.
//!
//! Every check happens before the first write, so a packet that goes to the stack is always
//! the packet that arrived. `run` also dispatches the reflector and STUN ports.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use relay_common::{
    Counter, Endpoint, LegKey,
    csum::CsumDelta,
    leg::LEG_F_SHARED,
    reflector::{DataPlaneConfig, v4_mapped},
};

use crate::{
    fib::{self, V4Flow},
    maps::{RELAY_CONFIG, RELAY_EGRESS, RELAY_LEGS, RELAY_OWN_ADDRS},
    parse::{Frame, Frame6, Parsed, parse},
    reflect, relay6,
    stats::{add, count, count_leg},
    stun,
};

pub enum Out {
    Tx,
    Redirect(u32),
}

/// Why a rewritten frame cannot leave by the next hop's interface.
pub enum NoEgress {
    /// VLAN-tagged, but the route leaves by another interface (the tag belongs to ingress).
    VlanCrossIf,
    /// The interface is not in the egress devmap (the relay is not attached there).
    NotAttached,
}

/// How a frame for `hop` leaves: back out the ingress (XDP_TX) or redirected through the
/// devmap. Shared by the relay and reflector paths, which count the refusals differently.
#[inline(always)]
pub fn egress(ctx: &XdpContext, vlan_tagged: bool, hop: &fib::NextHop) -> Result<Out, NoEgress> {
    if hop.ifindex == ctx.ingress_ifindex() as u32 {
        Ok(Out::Tx)
    } else if vlan_tagged {
        Err(NoEgress::VlanCrossIf)
    } else if RELAY_EGRESS.get(hop.ifindex).is_none() {
        Err(NoEgress::NotAttached)
    } else {
        Ok(Out::Redirect(hop.ifindex))
    }
}

/// Which path produced a frame: decides the extra counter and what a failed redirect means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Relay,
    Reflect,
    Stun,
}

/// A rewritten frame and how it leaves; `payload_len` feeds `FwdBytes` once the verdict is
/// final (a failed redirect turns into a pass, or for the reflector a drop).
pub struct Fwd {
    pub out: Out,
    pub payload_len: u16,
    pub kind: Kind,
}

/// Not forwarded: to the stack or dropped, with the reason.
enum Refused {
    Pass(Counter),
    Drop(Counter),
}

/// Entry point: always returns a verdict, counting it (and, for a pass or drop, its reason).
/// The reflector and STUN ports (when configured, and only on our own addresses: transit
/// traffic to those ports is not ours) take precedence over relay legs.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    let f = match parse(ctx) {
        Ok(Parsed::V4(f)) => f,
        // The reflector and STUN responder are IPv4 (their headers carry room for IPv6).
        Ok(Parsed::V6(f)) => return relay6_path(ctx, &f),
        Err(reason) => return pass(reason),
    };
    if let Some(cfg) = RELAY_CONFIG.get(0) {
        let dport = u16::from_be(unsafe { (*f.udp).dest });
        let ours = dport != 0 && (dport == cfg.reflector_port || dport == cfg.stun_port);
        let daddr = unsafe { (*f.ip).daddr };
        if ours && unsafe { RELAY_OWN_ADDRS.get(&v4_mapped(daddr.to_ne_bytes())) }.is_some() {
            if dport == cfg.reflector_port {
                return reflect_path(ctx, &f, cfg);
            }
            return stun_path(ctx, &f);
        }
    }
    relay_path(ctx, &f)
}

// The paths are BPF subprograms, not inlined: each gets its own stack frame, so their
// buffers do not add up in one frame (the verifier allows 512 bytes along a call chain).
#[inline(never)]
fn relay_path(ctx: &XdpContext, f: &Frame) -> u32 {
    finish(relay(ctx, f).map_err(Refused::Pass))
}

#[inline(never)]
fn relay6_path(ctx: &XdpContext, f: &Frame6) -> u32 {
    finish(relay6::relay6(ctx, f).map_err(Refused::Pass))
}

#[inline(never)]
fn reflect_path(ctx: &XdpContext, f: &Frame, cfg: &DataPlaneConfig) -> u32 {
    finish(reflect::reflect(ctx, f, cfg).map_err(Refused::Drop))
}

#[inline(never)]
fn stun_path(ctx: &XdpContext, f: &Frame) -> u32 {
    finish(stun::answer(ctx, f).map_err(Refused::Pass))
}

/// Count and return the verdict for a forwarded or refused frame.
#[inline(always)]
fn finish(r: Result<Fwd, Refused>) -> u32 {
    let fwd = match r {
        Ok(fwd) => fwd,
        Err(Refused::Pass(reason)) => return pass(reason),
        Err(Refused::Drop(reason)) => return drop(reason),
    };
    let action = match fwd.out {
        Out::Tx => {
            count(Counter::VerdictTx);
            xdp_action::XDP_TX
        }
        Out::Redirect(ifindex) => match RELAY_EGRESS.redirect(ifindex, 0) {
            Ok(action) => {
                count(Counter::VerdictRedirect);
                action
            }
            // The interface left the devmap between the check and now: the frame is already
            // rewritten, so the stack may route a relayed one like any other transit packet;
            // a reflected one is refused like any other unroutable ticket.
            Err(_) if fwd.kind == Kind::Reflect => return drop(Counter::DropReflectNoRoute),
            Err(_) => return pass(Counter::PassEgressNotAttached),
        },
    };
    match fwd.kind {
        Kind::Relay => {}
        Kind::Reflect => count(Counter::Reflected),
        Kind::Stun => count(Counter::StunAnswered),
    }
    // An answer is not forwarded traffic.
    if fwd.kind != Kind::Stun {
        add(Counter::FwdBytes, fwd.payload_len as u64);
    }
    action
}

#[inline(always)]
fn pass(reason: Counter) -> u32 {
    count(Counter::VerdictPass);
    count(reason);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn drop(reason: Counter) -> u32 {
    count(Counter::VerdictDrop);
    count(reason);
    xdp_action::XDP_DROP
}

#[inline(always)]
fn relay(ctx: &XdpContext, f: &Frame) -> Result<Fwd, Counter> {
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
    let out = egress(ctx, f.vlan_tagged, &hop).map_err(|e| match e {
        NoEgress::VlanCrossIf => Counter::PassVlanCrossIf,
        NoEgress::NotAttached => Counter::PassEgressNotAttached,
    })?;

    rewrite(f, nsrc, ndst, nsport, ndport, &hop);
    if !count_leg(slot, f.payload_len as u64) {
        count(Counter::LegSlotInvalid);
    }
    Ok(Fwd {
        out,
        payload_len: f.payload_len,
        kind: Kind::Relay,
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
