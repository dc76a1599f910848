//! The dispatcher: parse the frame, route it to a path (IPv4 leg, IPv6 leg, reflector, STUN,
//! TURN ChannelData)
//! and turn the path's answer into the verdict, counting it (and, for a pass or drop, its
//! reason). The only module that knows every path; the paths know none of it.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use relay_common::{
    Counter,
    reflector::{DataPlaneConfig, v4_mapped},
};

use crate::{
    egress::{Fwd, Kind, Leg, Out},
    maps::{RELAY_CONFIG, RELAY_EGRESS, RELAY_OWN_ADDRS},
    parse::{
        ETH_HLEN, Frame, Frame6, IPV4_HLEN, IPV6_HLEN, Parsed, UDP_HLEN, VLAN_HLEN, parse, ref_at,
    },
    reflect, relay4, relay6,
    stats::{add, count},
    stun, turn,
};

/// Not forwarded: to the stack or dropped, with the reason.
enum Refused {
    Pass(Counter),
    Drop(Counter),
}

/// Entry point: always returns a verdict, counting it (and, for a pass or drop, its reason).
/// The reflector, STUN and TURN ports (when configured, and only on our own addresses:
/// transit traffic to those ports is not ours) take precedence over relay legs.
#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    // SAFETY: the one parse of this packet; the frame goes to exactly one path, and the
    // paths that resize the frame use it only before the resize (parse.rs contract).
    let mut f = match unsafe { parse(ctx) } {
        Ok(Parsed::V4(f)) => f,
        // The reflector and STUN responder are IPv4 (their headers carry room for IPv6);
        // TURN is both.
        Ok(Parsed::V6(mut f)) => return v6(ctx, &mut f),
        Err(reason) => return pass(reason),
    };
    if let Some(cfg) = RELAY_CONFIG.get(0) {
        let dport = u16::from_be(f.udp.dest);
        let turn = cfg.turn_port != 0 && dport == cfg.turn_port;
        let ours = dport != 0 && (dport == cfg.reflector_port || dport == cfg.stun_port || turn);
        let daddr = f.ip.daddr;
        if ours
            && RELAY_OWN_ADDRS
                .get_ptr(&v4_mapped(daddr.to_ne_bytes()))
                .is_some()
        {
            if dport == cfg.reflector_port {
                return reflect_path(ctx, &f, cfg);
            }
            // ChannelData first: on a port shared with STUN the first byte tells them apart.
            if turn && channel_data(ctx, f.l3 + IPV4_HLEN + UDP_HLEN, f.payload_len) {
                return turn4_path(ctx, &mut f);
            }
            if dport == cfg.stun_port {
                return stun_path(ctx, &f);
            }
            return pass(Counter::PassTurnControl);
        }
    }
    match relay4_path(ctx, &mut f) {
        TURN_PEER => turn_peer4_path(ctx, &mut f),
        verdict => verdict,
    }
}

/// What a relay leg path returns instead of a verdict for a TURN relayed port: the
/// dispatcher then calls the TURN peer path itself, so the two paths' stack frames do not
/// add up in one call chain. Not an XDP action.
const TURN_PEER: u32 = u32::MAX;

/// IPv6: ChannelData to the TURN port of one of our addresses takes the TURN path; the rest
/// of that port's traffic is the controller's; everything else is for the relay legs.
#[inline(always)]
fn v6(ctx: &XdpContext, f: &mut Frame6) -> u32 {
    if let Some(cfg) = RELAY_CONFIG.get(0)
        && cfg.turn_port != 0
        && u16::from_be(f.udp.dest) == cfg.turn_port
        && RELAY_OWN_ADDRS.get_ptr(&f.ip6.daddr).is_some()
    {
        let l3 = if f.vlan_tagged {
            ETH_HLEN + VLAN_HLEN
        } else {
            ETH_HLEN
        };
        if channel_data(ctx, l3 + IPV6_HLEN + UDP_HLEN, f.payload_len) {
            return turn6_path(ctx, f);
        }
        return pass(Counter::PassTurnControl);
    }
    match relay6_path(ctx, f) {
        TURN_PEER => turn_peer6_path(ctx, f),
        verdict => verdict,
    }
}

/// The UDP payload at `at` (`len` bytes) starts like ChannelData: channel numbers are
/// 0x4000..=0x7fff (RFC 5766's range, which holds RFC 8656's; `relay_common::turn`), the
/// top two bits 01, where STUN messages start with two zero bits.
#[inline(always)]
fn channel_data(ctx: &XdpContext, at: usize, len: u16) -> bool {
    if len == 0 {
        return false;
    }
    // SAFETY: one byte after the UDP header, which no frame reference covers; copied out.
    match unsafe { ref_at::<u8>(ctx, at) } {
        Ok(b) => *b & 0xc0 == 0x40,
        Err(_) => false,
    }
}

// The paths are BPF subprograms, not inlined: each gets its own stack frame, so their
// buffers do not add up in one frame (the verifier allows 512 bytes along a call chain).
#[inline(never)]
fn relay4_path(ctx: &XdpContext, f: &mut Frame) -> u32 {
    match relay4::relay(ctx, f) {
        Ok(Leg::Fwd(fwd)) => finish(Ok(fwd)),
        Ok(Leg::Turn) => TURN_PEER,
        Err(reason) => pass(reason),
    }
}

#[inline(never)]
fn relay6_path(ctx: &XdpContext, f: &mut Frame6) -> u32 {
    match relay6::relay6(ctx, f) {
        Ok(Leg::Fwd(fwd)) => finish(Ok(fwd)),
        Ok(Leg::Turn) => TURN_PEER,
        Err(reason) => pass(reason),
    }
}

#[inline(never)]
fn turn4_path(ctx: &XdpContext, f: &mut Frame) -> u32 {
    finish(turn::channel4(ctx, f).map_err(Refused::Pass))
}

#[inline(never)]
fn turn6_path(ctx: &XdpContext, f: &mut Frame6) -> u32 {
    finish(turn::channel6(ctx, f).map_err(Refused::Pass))
}

#[inline(never)]
fn turn_peer4_path(ctx: &XdpContext, f: &mut Frame) -> u32 {
    finish(turn::peer4(ctx, f).map_err(Refused::Pass))
}

#[inline(never)]
fn turn_peer6_path(ctx: &XdpContext, f: &mut Frame6) -> u32 {
    finish(turn::peer6(ctx, f).map_err(Refused::Pass))
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
        Kind::TurnToPeer => count(Counter::TurnChannelToPeer),
        Kind::TurnToClient => count(Counter::TurnPeerToChannel),
        Kind::TurnLocal => count(Counter::TurnChannelLocal),
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
