//! Traffic generator: `bench_gen` run with BPF_PROG_RUN in live-frames mode on g0 (inside the
//! generator namespace). Every frame is XDP_TX'd out of g0, i.e. into r0. The host kernel has
//! no pktgen; this is the fastest sender available here (no skb, no qdisc on the send side).
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use aya::{
    maps::Array,
    programs::{TestRun, TestRunAttrs, TestRunOptions},
};
use relay_ctl::netlink::ifindex;

use crate::{frames, progs, topo};

/// Header template layout of bench-ebpf's GenConfig.
#[repr(C)]
#[derive(Clone, Copy)]
struct GenConfig {
    hdr: [u8; 42],
    lead_bytes: [u8; 4],
    _pad: [u8; 2],
    flows: u32,
    lead: u32,
}
// SAFETY: repr(C), no padding left implicit, plain bytes.
unsafe impl aya::Pod for GenConfig {}

/// The idle veth (peer `gh1`) a `hold_dispatcher` load attaches its program to; g0 has one.
pub const HOLD_IF: &str = "gh0";

/// What each frame carries and how the sending calls start.
pub struct Load {
    /// UDP payload (the generator writes only the 42 header bytes in front of it).
    pub payload: Vec<u8>,
    /// Frames in the first live-frames call; calls then grow until one takes ~0.4 s. A slow
    /// machine (a TCG guest) starts small, or the first call alone overshoots the time bound.
    pub first_batch: u32,
    /// Keep the generating program in the kernel's XDP dispatcher for the whole send (attached
    /// to `HOLD_IF`, an idle veth the caller made in the sender's namespace): each live-frames call otherwise adds it to the
    /// dispatcher and removes it again, re-patching the dispatcher's code while other CPUs run
    /// XDP through it. On 6.12 under TCG that oopsed the guest (int3 in
    /// bpf_dispatcher_xdp_func) a couple of minutes into a run. The incumbent guest sets it.
    pub hold_dispatcher: bool,
    /// Write the payload's first 4 bytes into every frame too: the TURN Strip path removes
    /// the ChannelData header from the (recycled) page, the header template alone would then
    /// send frames without it.
    pub rewrite_lead: bool,
}

impl Load {
    /// The host runs: a 200-byte IP packet, large first calls.
    pub fn host() -> Load {
        Load {
            payload: frames::rtp_payload(),
            first_batch: 100_000,
            hold_dispatcher: false,
            rewrite_lead: false,
        }
    }
}

pub struct Sent {
    pub frames: u64,
    pub secs: f64,
    /// CPU time of the generating thread (includes the softirq work it triggers inline).
    pub thread_cpu_secs: f64,
}

fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Send `load` to `dst` for `secs` (and at most `max_frames`), cycling through `flows`
/// (source port, destination port). Runs in the calling thread: call it in the gen netns.
pub fn send(
    dst: std::net::Ipv4Addr,
    flows: &[(u16, u16)],
    load: &Load,
    secs: f64,
    max_frames: u64,
) -> Result<Sent> {
    send_on(
        dst,
        flows,
        load,
        secs,
        max_frames,
        (crate::cpu::GEN_CPU, crate::cpu::RT_PRIO),
    )
}

/// `send` from the calling thread pinned to CPU `on.0` at SCHED_FIFO priority `on.1`. A
/// frame the generator XDP_TXes into r0 lands in r0's receive queue (sending CPU) % (r0's
/// queues) (veth_select_rxq): the CPU picks the relay's queue (multicore.rs).
pub fn send_on(
    dst: std::net::Ipv4Addr,
    flows: &[(u16, u16)],
    load: &Load,
    secs: f64,
    max_frames: u64,
    on: (usize, i32),
) -> Result<Sent> {
    ensure!(
        !flows.is_empty() && flows.len() <= 65_536,
        "1 to 65536 flows"
    );
    let mut ebpf = progs::load(progs::GEN)?;
    let tmpl = frames::udp4(
        (topo::G0_MAC, topo::R0_MAC),
        (topo::GEN_IP.octets(), 1),
        (dst.octets(), 1),
        64,
        &load.payload,
        true,
    )?;
    let mut hdr = [0u8; 42];
    hdr.copy_from_slice(&tmpl[..42]);
    let mut lead_bytes = [0u8; 4];
    if load.rewrite_lead {
        ensure!(
            load.payload.len() >= 4,
            "rewrite_lead needs 4 payload bytes"
        );
        lead_bytes.copy_from_slice(&tmpl[42..46]);
    }
    {
        let mut flow_map: Array<_, [u16; 2]> =
            Array::try_from(ebpf.map_mut("BENCH_FLOWS").context("flows map")?)?;
        for (i, (s, d)) in flows.iter().enumerate() {
            flow_map.set(i as u32, &[*s, *d], 0)?;
        }
        let mut cfg: Array<_, GenConfig> =
            Array::try_from(ebpf.map_mut(progs::GEN_MAP).context("gen map")?)?;
        cfg.set(
            0,
            &GenConfig {
                hdr,
                lead_bytes,
                _pad: [0; 2],
                flows: flows.len() as u32,
                lead: u32::from(load.rewrite_lead),
            },
            0,
        )?;
    }
    let prog = progs::program(&mut ebpf, progs::GEN)?;
    let g0 = ifindex("g0")?;
    let held = if load.hold_dispatcher {
        Some(
            prog.attach(ifindex(HOLD_IF)?, aya::programs::XdpMode::Driver)
                .with_context(|| {
                    format!("attaching the generator to {HOLD_IF} (holds the XDP dispatcher)")
                })?,
        )
    } else {
        None
    };
    let ctx = progs::xdp_md(tmpl.len(), g0);
    // Each live-frames call has a fixed cost of some 25 ms here (page pool and rxq set-up
    // and teardown), so calls grow until one takes about 0.4 s; the time bound overshoots by
    // at most one call.
    crate::cpu::pin_prio(0, on.0, on.1);
    let mut batch: u32 = load.first_batch.max(1);
    let (start, cpu0) = (Instant::now(), thread_cpu());
    let limit = Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while start.elapsed() < limit && sent < max_frames {
        let t = Instant::now();
        prog.test_run(TestRunOptions {
            data_in: Some(&tmpl),
            ctx_in: Some(&ctx),
            repeat: batch,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        })
        .context("live-frames test_run (kernel 5.18+)")?;
        sent += u64::from(batch);
        if t.elapsed() < Duration::from_millis(400) && batch < 16_000_000 {
            batch *= 2;
        }
    }
    let out = Sent {
        frames: sent,
        secs: start.elapsed().as_secs_f64(),
        thread_cpu_secs: thread_cpu() - cpu0,
    };
    if let Some(id) = held {
        // The last call's frames are through r0 before the dispatcher changes again.
        std::thread::sleep(Duration::from_millis(300));
        prog.detach(id)
            .with_context(|| format!("detaching the generator from {HOLD_IF}"))?;
    }
    Ok(out)
}
