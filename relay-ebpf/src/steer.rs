//! Socket steering (`sk_lookup`): a UDP packet the stack is about to deliver to a relay
//! address, on a port inside the relay range, goes to the controller's one receive socket for
//! that address, whatever the port. So a call costs the controller no socket (it used to cost
//! four): only the packets XDP passes up (before latching, or off the fast path) arrive here,
//! and the controller learns the port from the packet's original destination.
//!
//! Anything else (other protocols, addresses, ports; or no socket at that index) falls through
//! to the stack's ordinary lookup.
use aya_ebpf::{bindings::sk_action::SK_PASS, programs::SkLookupContext};
use relay_common::steer::SteerKey;

use crate::maps::{RELAY_STEER_SOCKS, steer_range};

const IPPROTO_UDP: u32 = 17;

pub fn run(ctx: &SkLookupContext) -> u32 {
    // SAFETY: the kernel hands the program a valid `bpf_sk_lookup` for its run; these are
    // aligned u32 field reads, which the verifier allows in this context.
    let (family, protocol, port, ip4, ip6) = unsafe {
        let l = &*ctx.lookup;
        (l.family, l.protocol, l.local_port, l.local_ip4, l.local_ip6)
    };
    if protocol != IPPROTO_UDP {
        return SK_PASS;
    }
    let addr = if family == relay_common::steer::AF_INET {
        [ip4, 0, 0, 0]
    } else {
        ip6
    };
    let Some(range) = steer_range(&SteerKey { family, addr }) else {
        return SK_PASS;
    };
    if !range.covers(port) {
        return SK_PASS;
    }
    // No socket there (the controller is between restarts): the ordinary lookup decides.
    let _ = RELAY_STEER_SOCKS.redirect_sk_lookup(ctx, range.index, 0);
    SK_PASS
}
