//! `relay-bench incumbent`: our XDP relay against rtpengine's kernel fast path
//! (xt_RTPENGINE), run inside the Debian 6.1 guest that `cargo xtask bench --incumbent`
//! boots with the module loaded (bench/README.md, "Against rtpengine's kernel module").
//!
//! Same topology as the host throughput runs (topo.rs: gen -> relay -> sink over veth), same
//! generator, same counter at the end: s0's counting program sees every frame either relay
//! delivers. Per stream count N, two blocks:
//!
//! 1. kernel module: iptables rule, rtpengine with `--table`, N calls over ng, each stream
//!    primed until the module forwards it; then per repetition and frame size a module run
//!    and a baseline run (bench_redirect attached to r0, so the stack never sees the frames).
//! 2. ours: the daemon, N sessions through its API, latched; per repetition and size our run
//!    and a baseline run (bench_redirect swapped behind the daemon's r0 link and back).
//!
//! Each block carries its own baseline runs, interleaved with the relay's, so drift of a
//! shared machine shows up in both and the ratios stay comparable.
use std::{fs, path::Path, time::Instant};

use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};

mod baseline;
mod chart;
mod kmod;
mod report;

use crate::{
    cpu,
    generator::Load,
    progs,
    topo::{self, RELAY_A, Topo},
    tput::{self, RelayDaemon},
};
use baseline::Baseline;

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq, Debug)]
pub enum Mode {
    /// N in {1, 100, 10000}, 64 and 214-byte frames, 5 repetitions of 2 s.
    Full,
    /// One stream, both sizes, one repetition of 1 s: the harness cannot rot (CI).
    Smoke,
}

/// Which rtpengine and which of its kernel modules the guest runs.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq, Debug)]
pub enum Flavor {
    /// rtpengine 10.5 (Debian 12) with xt_RTPENGINE behind an `iptables-legacy` rule.
    Xt,
    /// rtpengine 26.3 with nft_rtpengine: the daemon adds its own nftables chain and rule.
    Nft,
}

impl Flavor {
    pub fn module(self) -> &'static str {
        match self {
            Flavor::Xt => "xt_RTPENGINE",
            Flavor::Nft => "nft_rtpengine",
        }
    }

    /// What the results' file names say after the date.
    fn tag(self) -> &'static str {
        match self {
            Flavor::Xt => "incumbent-vm",
            Flavor::Nft => "incumbent26-vm",
        }
    }
}

/// The incumbent under test: its flavour and its daemon's binary.
#[derive(Clone, Debug)]
pub struct Incumbent {
    pub flavor: Flavor,
    pub bin: String,
}

struct Plan {
    streams: &'static [u32],
    sizes: &'static [usize],
    reps: u32,
    secs: f64,
}

fn plan(mode: Mode) -> Plan {
    match mode {
        Mode::Full => Plan {
            streams: &[1, 100, 10_000],
            sizes: &[64, 214],
            reps: 5,
            secs: 2.0,
        },
        Mode::Smoke => Plan {
            streams: &[1],
            sizes: &[64, 214],
            reps: 1,
            secs: 1.0,
        },
    }
}

/// One measured run.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Run {
    /// `rtpengine_kmod`, `relay_xdp`, `baseline` or `generator_ceiling`.
    pub variant: String,
    /// Which block it ran in: `kmod` or `ours` (the baseline runs in both).
    pub block: String,
    pub streams: u32,
    pub frame_bytes: usize,
    pub rep: u32,
    pub sent: u64,
    pub delivered: u64,
    pub secs: f64,
    pub delivered_pps: f64,
    pub loss: f64,
    /// Relay-side CPU (r0's NAPI thread, the relay's daemon, ksoftirqd) per delivered packet.
    pub cpu_ns_per_pkt: f64,
    /// CPU seconds of the generating thread (it also runs softirq work raised on its CPU).
    pub generator_cpu_secs: f64,
    /// Busy CPU seconds of the whole guest meanwhile.
    pub machine_busy_secs: f64,
    /// What the relay itself says it forwarded meanwhile (module's target counters, our
    /// daemon's XDP statistics); none for the baseline.
    pub relay_forwarded: Option<u64>,
}

use report::Results;

/// An RTP packet's UDP payload of `len` bytes: version 2, PCMU, SSRC 1, the same 12-byte
/// header the priming datagrams carry (tput::latch), so the module's SSRC check passes.
pub fn rtp_payload(len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    // 0xff: PCMU silence.
    p.resize(len.max(12), 0xff);
    p
}

/// Frame bytes on the wire (no FCS) -> UDP payload bytes (Ethernet 14, IPv4 20, UDP 8).
fn payload_len(frame: usize) -> usize {
    frame.saturating_sub(42)
}

fn log(msg: &str) {
    eprintln!("incumbent: {msg}");
}

pub fn run(mode: Mode, inc: &Incumbent, out: &Path, relay_ctl: &Path) -> Result<()> {
    let start = Instant::now();
    let p = plan(mode);
    // 10k streams are 40k bound sockets in each relay; the guest's PID 1 hands down the
    // kernel's default hard limit of 4096. Children (both daemons) inherit this.
    raise_hard_nofile(1 << 20);
    let t = Topo::build()?;
    // Where the generator holds its program in the XDP dispatcher (generator::Load); gone
    // with the namespace.
    let hold = crate::generator::HOLD_IF;
    t.sender.exec(
        "ip",
        &["link", "add", hold, "type", "veth", "peer", "name", "gh1"],
    )?;
    t.sender.exec("ip", &["link", "set", "gh1", "up"])?;
    t.sender.exec("ip", &["link", "set", hold, "up"])?;
    // r0 receives the generator's XDP_TX frames only with NAPI; without XDP (the module's
    // block) GRO requested provides it, and it stays on for every variant.
    topo::napi_without_xdp(&t.relay, "r0")?;
    // The counting sink's NAPI thread goes to the generator's vCPU, so the relay's vCPU does
    // relay work only: frames the module sends through the stack reach s0 as skbs, which s0
    // must copy into XDP buffers to count, while XDP-redirected frames arrive ready. On the
    // relay's vCPU that copy would slow the module's path for a reason of the meter's.
    topo::threaded_napi_on(&t.sink, "s0", cpu::GEN_CPU, cpu::RT_PRIO_SINK)?;
    let mut baseline = Baseline::load(&t)?;
    let mut runs = vec![];
    for &n in p.streams {
        runs.extend(kmod_block(&t, &p, n, inc, &mut baseline)?);
        runs.extend(ours_block(&t, &p, n, relay_ctl, &mut baseline)?);
    }
    let results = report::Results::new(mode, inc, runs, start.elapsed().as_secs_f64());
    check(&results)?;
    fs::create_dir_all(out)?;
    let suffix = if mode == Mode::Smoke { "-smoke" } else { "" };
    write(
        &results,
        &out.join(format!("{}-{}{suffix}", results.day, inc.flavor.tag())),
    )
}

/// `<base>.json`, `.md` and `.png`.
fn write(results: &Results, base: &Path) -> Result<()> {
    fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(results)?,
    )?;
    fs::write(base.with_extension("md"), report::markdown(results))?;
    chart::render(results, &base.with_extension("png"))?;
    log(&format!(
        "wrote {}.{{json,md,png}} ({:.0} s run)",
        base.display(),
        results.wall_secs
    ));
    Ok(())
}

/// Renders a run's JSON again: summary, ratios, notes, markdown and chart from its runs and
/// guest facts (the measurements are never touched), next to the JSON.
pub fn render(json: &Path) -> Result<()> {
    let text = fs::read_to_string(json)?;
    let r: Results = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not an incumbent result: {e}", json.display()))?;
    let again = Results::derive(r.date, r.mode, r.guest, r.runs, r.wall_secs);
    check(&again)?;
    write(&again, &json.with_extension(""))
}

/// Both relays' daemons are control planes here: on the relay's vCPU (their CPU counts) at
/// normal priority, below the NAPI thread that forwards. (rtpengine's userspace relay in the
/// host benchmark runs above it instead: there it is the data path.)
fn pin_daemon(pid: u32) {
    cpu::pin_all(pid, cpu::RELAY_CPU, 0);
}

fn raise_hard_nofile(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: valid pointer; needs CAP_SYS_RESOURCE (the bench runs as root).
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        log(&format!(
            "cannot raise the open-files limit to {n}: {}",
            std::io::Error::last_os_error()
        ));
    }
}

/// What must hold for the numbers to mean anything; a failure fails the run (and CI's smoke).
fn check(r: &Results) -> Result<()> {
    for x in &r.runs {
        let what = format!(
            "{} ({} block, {} streams, {} B, rep {})",
            x.variant, x.block, x.streams, x.frame_bytes, x.rep
        );
        ensure!(x.delivered > 0, "{what}: nothing reached the sink");
        ensure!(
            x.delivered <= x.sent,
            "{what}: the sink counted {} frames but {} were sent",
            x.delivered,
            x.sent
        );
        if let Some(f) = x.relay_forwarded {
            // Every frame at the sink went through the measured fast path: had userspace
            // relayed some (rtpengine falls back for packets its module rejects), the sink
            // would count more than the fast path forwarded.
            ensure!(
                x.delivered <= f,
                "{what}: the sink counted {} frames but the fast path forwarded only {f}",
                x.delivered
            );
        }
    }
    Ok(())
}

/// The XDP program whose in-kernel time a variant's run reads (none for rtpengine's module).
fn xdp_prog_of(variant: &str) -> Option<&'static str> {
    match variant {
        "relay_xdp" => Some(relay_common::PROGRAM_NAME),
        "baseline" => Some(progs::REDIRECT),
        "generator_ceiling" => Some(progs::COUNT_DROP),
        _ => None,
    }
}

/// Which run: the labels a `Run` carries.
#[derive(Clone, Copy)]
struct Case<'a> {
    variant: &'a str,
    block: &'a str,
    n: u32,
    size: usize,
    rep: u32,
}

/// How a run is counted: frames at the end, and the relay's own forwarded counter if any.
struct Meters<'a> {
    delivered: &'a dyn Fn() -> Result<u64>,
    forwarded: Option<&'a dyn Fn() -> Result<u64>>,
}

fn measure(
    t: &Topo,
    c: Case<'_>,
    flows: &[(u16, u16)],
    secs: f64,
    pids: &[u32],
    m: Meters<'_>,
) -> Result<Run> {
    let load = Load {
        payload: rtp_payload(payload_len(c.size)),
        // A TCG guest sends some 10^5 frames/s: small first calls keep the time bound.
        first_batch: 4_096,
        hold_dispatcher: true,
        rewrite_lead: false,
    };
    let f0 = m.forwarded.map(|f| f()).transpose()?;
    let v = tput::drive(
        t,
        c.variant,
        RELAY_A,
        flows,
        &load,
        secs,
        m.delivered,
        pids,
        0,
        xdp_prog_of(c.variant),
        "",
    )?;
    let relay_forwarded = match (m.forwarded, f0) {
        (Some(f), Some(f0)) => Some(f()?.saturating_sub(f0)),
        _ => None,
    };
    let r = Run {
        variant: c.variant.to_owned(),
        block: c.block.to_owned(),
        streams: c.n,
        frame_bytes: c.size,
        rep: c.rep,
        sent: v.sent,
        delivered: v.delivered,
        secs: v.secs,
        delivered_pps: v.delivered_pps,
        loss: v.loss,
        cpu_ns_per_pkt: v.cpu_ns_per_pkt,
        generator_cpu_secs: v.generator_cpu_secs,
        machine_busy_secs: v.machine_busy_secs,
        relay_forwarded,
    };
    log(&format!(
        "{:>17} n={:<5} {:>3} B rep {}: {:>8.0} pps delivered, loss {:.1}%, {:.0} ns CPU/pkt, gen cpu {:.2} s, busy {:.2} s{}",
        c.variant,
        c.n,
        c.size,
        c.rep,
        r.delivered_pps,
        100.0 * r.loss,
        r.cpu_ns_per_pkt,
        r.generator_cpu_secs,
        r.machine_busy_secs,
        r.relay_forwarded
            .map(|f| format!(", relay forwarded {f}"))
            .unwrap_or_default()
    ));
    Ok(r)
}

fn sink_count(t: &Topo) -> Result<u64> {
    Ok(t.delivered()?.1)
}

fn kmod_block(
    t: &Topo,
    p: &Plan,
    n: u32,
    inc: &Incumbent,
    baseline: &mut Baseline,
) -> Result<Vec<Run>> {
    let k = kmod::start(t, n, inc, log)?;
    pin_daemon(k.rtpengine.pid());
    let mut runs = vec![];
    let at_sink = || sink_count(t);
    // What the generator can put into r0 at all (a counting drop program there), once per
    // size: a variant delivering about this much is limited by the generator, not itself.
    for &size in p.sizes {
        let drop_r0 = t.relay.run(|| topo::attach(progs::COUNT_DROP, "r0"))??;
        let napi = topo::threaded_napi(&t.relay, "r0")?;
        let at_r0 = || tput::count(&drop_r0);
        let case = Case {
            variant: "generator_ceiling",
            block: "kmod",
            n,
            size,
            rep: 0,
        };
        let m = Meters {
            delivered: &at_r0,
            forwarded: None,
        };
        runs.push(measure(t, case, &k.flows, p.secs, &napi, m)?);
    }
    let fwd = || k.forwarded();
    for rep in 0..p.reps {
        for &size in p.sizes {
            let mut pids = topo::threaded_napi(&t.relay, "r0")?;
            pids.push(k.rtpengine.pid());
            let case = Case {
                variant: "rtpengine_kmod",
                block: "kmod",
                n,
                size,
                rep,
            };
            let m = Meters {
                delivered: &at_sink,
                forwarded: Some(&fwd),
            };
            runs.push(measure(t, case, &k.flows, p.secs, &pids, m)?);
            runs.push(baseline.attached(t, || {
                let pids = topo::threaded_napi(&t.relay, "r0")?;
                let case = Case {
                    variant: "baseline",
                    ..case
                };
                let m = Meters {
                    delivered: &at_sink,
                    forwarded: None,
                };
                measure(t, case, &k.flows, p.secs, &pids, m)
            })?);
        }
    }
    Ok(runs)
}

fn ours_block(
    t: &Topo,
    p: &Plan,
    n: u32,
    relay_ctl: &Path,
    baseline: &mut Baseline,
) -> Result<Vec<Run>> {
    let t0 = Instant::now();
    let d = RelayDaemon::start(t, n, relay_ctl)?;
    log(&format!(
        "ours: {n} sessions created and latched into XDP in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    pin_daemon(d.daemon.pid());
    let mut pids = topo::threaded_napi(&t.relay, "r0")?;
    pids.push(d.daemon.pid());
    let instance = d.daemon.instance().clone();
    let fwd = || d.kernel_forwarded(t);
    let at_sink = || sink_count(t);
    let mut runs = vec![];
    for rep in 0..p.reps {
        for &size in p.sizes {
            let case = Case {
                variant: "relay_xdp",
                block: "ours",
                n,
                size,
                rep,
            };
            let m = Meters {
                delivered: &at_sink,
                forwarded: Some(&fwd),
            };
            runs.push(measure(t, case, &d.flows, p.secs, &pids, m)?);
            runs.push(baseline.swapped_into(
                &instance.link_path("r0"),
                &instance.prog_path(),
                || {
                    let case = Case {
                        variant: "baseline",
                        ..case
                    };
                    let m = Meters {
                        delivered: &at_sink,
                        forwarded: None,
                    };
                    measure(t, case, &d.flows, p.secs, &pids, m)
                },
            )?);
        }
    }
    Ok(runs)
}
