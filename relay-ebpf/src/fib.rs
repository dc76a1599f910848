//! Next hop from the kernel FIB: egress interface and the MAC addresses to write, through the
//! next-hop cache (`relay_common::nexthop`): a usable cached entry answers without a FIB
//! lookup; otherwise the FIB does, and its answer is cached.
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_fib_lookup,
    },
    helpers::bpf_fib_lookup as fib_lookup,
    programs::XdpContext,
};
use aya_log_ebpf::warn;
use relay_common::{
    Counter,
    nexthop::{NEXTHOP_GEN_OFF, NextHopKey, NextHopValue},
};

use crate::{
    maps::{self, RELAY_EGRESS},
    stats::{count, may_log},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_UDP: u8 = 17;

pub struct NextHop {
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// `ifindex` is in the egress devmap (looked up once per FIB answer, cached with it).
    pub attached: bool,
}

/// Addresses and ports are in network byte order as in the packet; `tot_len` is host order
/// (the helper checks it against the egress MTU).
pub struct V4Flow {
    pub src: u32,
    pub dst: u32,
    pub sport_be: u16,
    pub dport_be: u16,
    pub tos: u8,
    pub tot_len: u16,
}

/// An IPv6 flow: addresses as in the header, flow label (network order, traffic class and
/// version masked off by the caller), and the packet length from the IPv6 header on.
pub struct V6Flow<'a> {
    pub src: &'a [u8; 16],
    pub dst: &'a [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    pub flowinfo_be: u32,
    pub tot_len: u16,
}

/// The next hop of an IPv4 leg's rewritten packet (`flow`) at `now_ns`.
#[inline(always)]
pub fn next_hop_v4(ctx: &XdpContext, flow: &V4Flow, now_ns: u64) -> Result<NextHop, Counter> {
    // Key, value and the FIB request live in per-CPU scratch: the paths' stacks are nearly
    // full. This CPU's entry of a one-entry per-CPU array always exists.
    let s = maps::scratch().ok_or(Counter::PassFibFailed)?;
    let k = &mut s.nh_key;
    k.family = AF_INET;
    k.tos = flow.tos;
    k.ingress_ifindex = ctx.ingress_ifindex() as u32;
    k.src = [0; 16];
    k.dst = [0; 16];
    k.src[..4].copy_from_slice(&flow.src.to_ne_bytes());
    k.dst[..4].copy_from_slice(&flow.dst.to_ne_bytes());
    let fib = &mut s.fib;
    cached(
        &s.nh_key,
        &mut s.nh_value,
        flow.tot_len,
        now_ns,
        // Inlined at every path (an outlined closure would add its frame to the chain).
        #[inline(always)]
        || lookup_v4_in(ctx, flow, fib),
    )
}

/// The next hop of an IPv6 leg's rewritten packet (`flow`) at `now_ns`.
#[inline(always)]
pub fn next_hop_v6(ctx: &XdpContext, flow: &V6Flow, now_ns: u64) -> Result<NextHop, Counter> {
    let s = maps::scratch().ok_or(Counter::PassFibFailed)?;
    let k = &mut s.nh_key;
    k.family = AF_INET6;
    k.tos = 0;
    k.ingress_ifindex = ctx.ingress_ifindex() as u32;
    k.src = *flow.src;
    k.dst = *flow.dst;
    let fib = &mut s.fib;
    cached(
        &s.nh_key,
        &mut s.nh_value,
        flow.tot_len,
        now_ns,
        #[inline(always)]
        || lookup_v6_in(ctx, flow, fib),
    )
}

/// The cache in front of `lookup`. The generation is read before the lookup, so a route or
/// neighbour change whose event bumps it after this point cannot leave this fill usable.
#[inline(always)]
fn cached(
    key: &NextHopKey,
    fill: &mut NextHopValue,
    len: u16,
    now_ns: u64,
    lookup: impl FnOnce() -> Result<NextHop, Counter>,
) -> Result<NextHop, Counter> {
    let generation = maps::nexthop_generation();
    let found = maps::nexthop(key);
    let mut max_len = len;
    if let Some(v) = found {
        if v.usable(generation, now_ns, len) {
            return Ok(NextHop {
                ifindex: v.ifindex,
                smac: v.smac,
                dmac: v.dmac,
                attached: v.attached != 0,
            });
        }
        // A longer packet of the same generation keeps what the entry already allowed.
        if v.generation == generation && v.max_len > len {
            max_len = v.max_len;
        }
        count(Counter::NextHopStale);
    }
    let hop = lookup()?;
    if generation != NEXTHOP_GEN_OFF {
        fill.filled_ns = now_ns;
        fill.generation = generation;
        fill.ifindex = hop.ifindex;
        fill.smac = hop.smac;
        fill.dmac = hop.dmac;
        fill.max_len = max_len;
        fill.attached = hop.attached as u8;
        fill._pad = 0;
        maps::nexthop_fill(key, fill);
        count(Counter::NextHopFill);
    }
    Ok(hop)
}

/// `lookup_v4_in` for IPv6 (the helper reads `net.ipv6.conf.<ingress>.forwarding`).
#[inline(always)]
fn lookup_v6_in(
    ctx: &XdpContext,
    flow: &V6Flow,
    p: &mut bpf_fib_lookup,
) -> Result<NextHop, Counter> {
    request(ctx, p, AF_INET6, flow.sport_be, flow.dport_be, flow.tot_len);
    p.__bindgen_anon_2.flowinfo = flow.flowinfo_be;
    p.__bindgen_anon_3.ipv6_src = words(flow.src);
    p.__bindgen_anon_4.ipv6_dst = words(flow.dst);
    result(ctx, p)
}

/// Four 32-bit words in memory order, as the helper's struct holds an IPv6 address.
#[inline(always)]
pub fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_ne_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_ne_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// Route `flow` as if it arrived on the ingress interface. Failures say why the packet goes to
/// the stack instead: no neighbour yet (the stack resolves it and the controller's socket
/// forwards this packet), forwarding disabled, or no usable route.
/// The request is built on the stack (the reflector's, which has room); the cached paths
/// use `lookup_v4_in` with per-CPU scratch.
#[inline(always)]
pub fn lookup_v4(ctx: &XdpContext, flow: &V4Flow) -> Result<NextHop, Counter> {
    // SAFETY: integers and unions of integers, for which all-zero bytes are valid.
    let mut p: bpf_fib_lookup = unsafe { zeroed() };
    lookup_v4_in(ctx, flow, &mut p)
}

/// `lookup_v4` with the request in `p` (overwritten whole).
#[inline(always)]
fn lookup_v4_in(
    ctx: &XdpContext,
    flow: &V4Flow,
    p: &mut bpf_fib_lookup,
) -> Result<NextHop, Counter> {
    request(ctx, p, AF_INET, flow.sport_be, flow.dport_be, flow.tot_len);
    p.__bindgen_anon_2.tos = flow.tos;
    p.__bindgen_anon_3.ipv4_src = flow.src;
    p.__bindgen_anon_4.ipv4_dst = flow.dst;
    result(ctx, p)
}

/// Write into `p` a lookup for a UDP flow of `family` as if it arrived on the ingress
/// interface, all else 0.
#[inline(always)]
fn request(
    ctx: &XdpContext,
    p: &mut bpf_fib_lookup,
    family: u8,
    sport_be: u16,
    dport_be: u16,
    tot_len: u16,
) {
    // SAFETY: integers and unions of integers, for which all-zero bytes are valid.
    *p = unsafe { zeroed() };
    p.family = family;
    p.l4_protocol = IPPROTO_UDP;
    p.sport = sport_be;
    p.dport = dport_be;
    p.__bindgen_anon_1.tot_len = tot_len;
    p.ifindex = ctx.ingress_ifindex() as u32;
}

/// Call the helper and map its answer to a next hop or the reason to pass.
#[inline(always)]
fn result(ctx: &XdpContext, p: &mut bpf_fib_lookup) -> Result<NextHop, Counter> {
    // SAFETY: the context XDP handed us, and `p`, a whole `bpf_fib_lookup` of the size passed,
    // borrowed mutably for the call.
    let rc = unsafe { fib_lookup(ctx.ctx as *mut _, p, size_of::<bpf_fib_lookup>() as i32, 0) };
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        // SAFETY: a union of integer fields (any bytes valid); on success the helper has
        // filled in this member, the MAC addresses.
        let macs = unsafe { p.__bindgen_anon_6.__bindgen_anon_2 };
        return Ok(NextHop {
            ifindex: p.ifindex,
            smac: macs.smac,
            dmac: macs.dmac,
            attached: RELAY_EGRESS.get(p.ifindex).is_some(),
        });
    }
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        return Err(Counter::PassFibNoNeigh);
    }
    if rc == BPF_FIB_LKUP_RET_FWD_DISABLED as i64 {
        return Err(Counter::PassFibFwdDisabled);
    }
    if may_log() {
        warn!(
            ctx,
            "relay: fib lookup failed rc={} ifindex={}",
            rc,
            ctx.ingress_ifindex()
        );
    }
    Err(Counter::PassFibFailed)
}
