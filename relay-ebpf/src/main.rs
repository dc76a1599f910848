//! XDP fast path of the media relay.
//!
//! One program, `relay_xdp`, sees every frame on the relay's interfaces. Modules, top down
//! (imports only go down, never back up or across between paths):
//! - `dispatch`: parse, route to a path, count the final verdict (pass, drop, TX, redirect);
//! - the paths: `relay4` and `relay6` (leg lookup, latch check, rewrite), `reflect` (ticket
//!   checks, header strip), `stun` (Binding answered in place), `turn` (TURN ChannelData:
//!   header stripped, added or renumbered);
//! - what the paths share: `egress` (how a rewritten frame leaves: `Fwd`, `Out`, `egress()`),
//!   `fib` (next hop and MACs), `parse` (headers, and the contract every packet access
//!   follows), `maps` (map declarations, leg lookup), `stats` (counters, rate-limited logs).
//!
//! A second, small program, `relay_steer` (`steer.rs`, sk_lookup), hands what XDP passes up
//! on relay ports to the controller's one receive socket per relay address.
//!
//! Every `unsafe` block says why it is sound (`// SAFETY:`): packet access under `parse`'s
//! contract, map values valid for the program run, this CPU's per-CPU slots, BPF helpers.
//!
//! Checksum arithmetic lives in `relay_common::csum` so it is unit-tested on the host.
#![no_std]
#![no_main]
// Atomic adds on the shared per-leg counters (stats.rs): core's atomics lack fetch_add here.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod dispatch;
mod egress;
mod fib;
mod maps;
mod parse;
mod reflect;
mod relay4;
mod relay6;
mod stats;
mod steer;
mod stun;
mod turn;

use aya_ebpf::{
    macros::{sk_lookup, xdp},
    programs::{SkLookupContext, XdpContext},
};

#[xdp]
pub fn relay_xdp(ctx: XdpContext) -> u32 {
    dispatch::run(&ctx)
}

/// Attached to the daemon's network namespace, not an interface: see `steer.rs`.
#[sk_lookup]
pub fn relay_steer(ctx: SkLookupContext) -> u32 {
    steer::run(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that could get here.
    loop {}
}

/// GPL-compatible so every helper is available; the source is MIT OR GPL-2.0.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
