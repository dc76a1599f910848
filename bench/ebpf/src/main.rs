//! XDP programs of the benchmark harness (bench/README.md), built like relay-ebpf (pinned
//! nightly, aya-build from bench/build.rs):
//!
//! - `bench_swap_tx`: the baseline. Swaps the Ethernet addresses and returns XDP_TX; the
//!   least any XDP forwarder can do, so the relay's cost is reported as a ratio to it.
//! - `bench_count_drop`: the sink. Counts frames per CPU and drops them, so a receiver
//!   namespace counts at the earliest point and costs the system nothing more.
//! - `bench_gen`: the traffic generator, run with BPF_PROG_RUN in live-frames mode on the
//!   generator's veth. It writes a header template and the leg's ports (and, if asked, the
//!   first 4 payload bytes), then XDP_TX.
//! - `bench_redirect`: the forwarding baseline for paths that end on another interface (the
//!   incumbent comparison): writes two configured MAC addresses and XDP_REDIRECTs to a
//!   configured ifindex; no IP/UDP work, no lookup.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

/// Bytes of header the generator writes: Ethernet + IPv4 (no options) + UDP.
const HDR_LEN: usize = 42;

/// Generator configuration, written by the harness before a run.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GenConfig {
    /// Ethernet/IPv4/UDP header written in front of every frame (ports are set per frame;
    /// the UDP checksum is 0, "none", so changing ports keeps the frame valid).
    pub hdr: [u8; HDR_LEN],
    /// The first 4 payload bytes, written too when `lead` is 1: a relay that strips them
    /// (TURN ChannelData -> UDP) leaves the recycled page without them otherwise.
    pub lead_bytes: [u8; LEAD_LEN],
    pub _pad: [u8; 2],
    /// Frame n uses the ports of `BENCH_FLOWS[n % flows]`.
    pub flows: u32,
    pub lead: u32,
}

/// Payload bytes `GenConfig::lead` rewrites.
const LEAD_LEN: usize = 4;

/// Most flows the generator cycles through.
const MAX_FLOWS: u32 = 65_536;

#[map]
static BENCH_GEN: Array<GenConfig> = Array::with_max_entries(1, 0);

/// (source port, destination port) of each flow, host byte order.
#[map]
static BENCH_FLOWS: Array<[u16; 2]> = Array::with_max_entries(MAX_FLOWS, 0);

/// `bench_redirect`'s target: Ethernet destination and source, then the egress ifindex.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RedirectConfig {
    pub macs: [u8; 12],
    pub ifindex: u32,
}

#[map]
static BENCH_REDIRECT: Array<RedirectConfig> = Array::with_max_entries(1, 0);

/// Per CPU: frames counted by `bench_count_drop` (index 0) and the generator's sequence (1).
#[map]
static BENCH_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

#[xdp]
pub fn bench_swap_tx(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 14 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    let eth = start as *mut [u8; 6];
    unsafe {
        let dst = *eth;
        *eth = *eth.add(1);
        *eth.add(1) = dst;
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn bench_redirect(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    let Some(cfg) = BENCH_REDIRECT.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe { *(start as *mut [u8; 12]) = cfg.macs };
    unsafe { aya_ebpf::helpers::bpf_redirect(cfg.ifindex, 0) as u32 }
}

#[xdp]
pub fn bench_count_drop(_ctx: XdpContext) -> u32 {
    if let Some(p) = BENCH_COUNT.get_ptr_mut(0) {
        unsafe { *p += 1 };
    }
    xdp_action::XDP_DROP
}

#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + HDR_LEN > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let (Some(cfg), Some(seq)) = (BENCH_GEN.get(0), BENCH_COUNT.get_ptr_mut(1)) else {
        return xdp_action::XDP_ABORTED;
    };
    let flows = if cfg.flows == 0 { 1 } else { cfg.flows };
    let n = unsafe {
        let n = *seq;
        *seq = n + 1;
        (n % flows as u64) as u32
    };
    // The frame's page is recycled after the relay rewrote it: write the whole header again.
    let Some(ports) = BENCH_FLOWS.get(n) else {
        return xdp_action::XDP_ABORTED;
    };
    let hdr = start as *mut [u8; HDR_LEN];
    unsafe {
        *hdr = cfg.hdr;
        let udp = (start + 34) as *mut [u16; 2];
        (*udp)[0] = ports[0].to_be();
        (*udp)[1] = ports[1].to_be();
    }
    if cfg.lead == 1 {
        if start + HDR_LEN + LEAD_LEN > ctx.data_end() {
            return xdp_action::XDP_ABORTED;
        }
        unsafe { *((start + HDR_LEN) as *mut [u8; LEAD_LEN]) = cfg.lead_bytes };
    }
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
