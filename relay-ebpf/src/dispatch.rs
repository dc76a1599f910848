//! The dispatcher: parse the frame, route it to a path (IPv4 leg, IPv6 leg, reflector, STUN)
//! and turn the path's answer into the verdict, counting it (and, for a pass or drop, its
//! reason). The only module that knows every path; the paths know none of it.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use relay_common::{
    Counter,
    reflector::{DataPlaneConfig, v4_mapped},
};

use crate::{
    egress::{Fwd, Kind, Out},
    maps::{RELAY_CONFIG, RELAY_EGRESS, RELAY_OWN_ADDRS},
    parse::{Frame, Frame6, Parsed, parse},
    reflect, relay4, relay6,
    stats::{add, count},
    stun,
};

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
    // SAFETY: the one parse of this packet; the frame goes to exactly one path, and the
    // paths that resize the frame use it only before the resize (parse.rs contract).
    let mut f = match unsafe { parse(ctx) } {
        Ok(Parsed::V4(f)) => f,
        // The reflector and STUN responder are IPv4 (their headers carry room for IPv6).
        Ok(Parsed::V6(mut f)) => return relay6_path(ctx, &mut f),
        Err(reason) => return pass(reason),
    };
    if let Some(cfg) = RELAY_CONFIG.get(0) {
        let dport = u16::from_be(f.udp.dest);
        let ours = dport != 0 && (dport == cfg.reflector_port || dport == cfg.stun_port);
        let daddr = f.ip.daddr;
        if ours
            && RELAY_OWN_ADDRS
                .get_ptr(&v4_mapped(daddr.to_ne_bytes()))
                .is_some()
        {
            if dport == cfg.reflector_port {
                return reflect_path(ctx, &f, cfg);
            }
            return stun_path(ctx, &f);
        }
    }
    relay4_path(ctx, &mut f)
}

// The paths are BPF subprograms, not inlined: each gets its own stack frame, so their
// buffers do not add up in one frame (the verifier allows 512 bytes along a call chain).
#[inline(never)]
fn relay4_path(ctx: &XdpContext, f: &mut Frame) -> u32 {
    finish(relay4::relay(ctx, f).map_err(Refused::Pass))
}

#[inline(never)]
fn relay6_path(ctx: &XdpContext, f: &mut Frame6) -> u32 {
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
