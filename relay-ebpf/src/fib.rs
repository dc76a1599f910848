//! Next hop from the kernel FIB: egress interface and the MAC addresses to write.
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
use relay_common::Counter;

use crate::stats::may_log;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_UDP: u8 = 17;

pub struct NextHop {
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
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

/// `lookup_v4` for IPv6 (the helper reads `net.ipv6.conf.<ingress>.forwarding`).
#[inline(always)]
pub fn lookup_v6(ctx: &XdpContext, flow: &V6Flow) -> Result<NextHop, Counter> {
    let mut p = request(ctx, AF_INET6, flow.sport_be, flow.dport_be, flow.tot_len);
    p.__bindgen_anon_2.flowinfo = flow.flowinfo_be;
    p.__bindgen_anon_3.ipv6_src = words(flow.src);
    p.__bindgen_anon_4.ipv6_dst = words(flow.dst);
    result(ctx, &mut p)
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
#[inline(always)]
pub fn lookup_v4(ctx: &XdpContext, flow: &V4Flow) -> Result<NextHop, Counter> {
    let mut p = request(ctx, AF_INET, flow.sport_be, flow.dport_be, flow.tot_len);
    p.__bindgen_anon_2.tos = flow.tos;
    p.__bindgen_anon_3.ipv4_src = flow.src;
    p.__bindgen_anon_4.ipv4_dst = flow.dst;
    result(ctx, &mut p)
}

/// A lookup for a UDP flow of `family` as if it arrived on the ingress interface, all else 0.
#[inline(always)]
fn request(
    ctx: &XdpContext,
    family: u8,
    sport_be: u16,
    dport_be: u16,
    tot_len: u16,
) -> bpf_fib_lookup {
    // SAFETY: integers and unions of integers, for which all-zero bytes are valid.
    let mut p: bpf_fib_lookup = unsafe { zeroed() };
    p.family = family;
    p.l4_protocol = IPPROTO_UDP;
    p.sport = sport_be;
    p.dport = dport_be;
    p.__bindgen_anon_1.tot_len = tot_len;
    p.ifindex = ctx.ingress_ifindex() as u32;
    p
}

/// Call the helper and map its answer to a next hop or the reason to pass.
#[inline(always)]
fn result(ctx: &XdpContext, p: &mut bpf_fib_lookup) -> Result<NextHop, Counter> {
    // SAFETY: the context XDP handed us, and `p`, a whole `bpf_fib_lookup` of the size passed,
    // borrowed mutably for the call.
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
