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

/// Route `flow` as if it arrived on the ingress interface. Failures say why the packet goes to
/// the stack instead: no neighbour yet (the stack resolves it and the controller's socket
/// forwards this packet), forwarding disabled, or no usable route.
#[inline(always)]
pub fn lookup_v4(ctx: &XdpContext, flow: &V4Flow) -> Result<NextHop, Counter> {
    let mut p: bpf_fib_lookup = unsafe { zeroed() };
    p.family = AF_INET;
    p.l4_protocol = IPPROTO_UDP;
    p.sport = flow.sport_be;
    p.dport = flow.dport_be;
    p.__bindgen_anon_1.tot_len = flow.tot_len;
    p.ifindex = ctx.ingress_ifindex() as u32;
    p.__bindgen_anon_2.tos = flow.tos;
    p.__bindgen_anon_3.ipv4_src = flow.src;
    p.__bindgen_anon_4.ipv4_dst = flow.dst;

    let rc = unsafe {
        fib_lookup(
            ctx.ctx as *mut _,
            &mut p,
            size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
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
