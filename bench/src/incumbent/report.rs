//! The incumbent comparison's results: every run, medians and spreads per variant, the ratios,
//! the guest's facts, and the notes that say what the numbers can and cannot mean.
use std::{collections::BTreeMap, fmt::Write, fs};

use serde::{Deserialize, Serialize};

use super::{Incumbent, Mode, Run};
use crate::report::si;

#[derive(Serialize, Deserialize, Clone)]
pub struct Guest {
    pub kernel: String,
    pub cpus: u32,
    pub cpu_model: String,
    /// How QEMU ran the guest (`tcg` or `kvm`, from the kernel command line the host set).
    pub accel: String,
    pub rtpengine: String,
    /// The kernel module's version as it logged it on load (the field's name is from when
    /// xt_RTPENGINE was the only one; `kernel_module` says which).
    pub xt_rtpengine: String,
    /// `xt_RTPENGINE` (rtpengine up to 12.x, iptables) or `nft_rtpengine` (nftables, 26.x).
    #[serde(default = "xt_module")]
    pub kernel_module: String,
}

fn xt_module() -> String {
    "xt_RTPENGINE".into()
}

/// Median and spread of one variant's runs at one stream count and frame size.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Summary {
    pub streams: u32,
    pub frame_bytes: usize,
    pub variant: String,
    pub block: String,
    pub runs: usize,
    pub median_pps: f64,
    pub min_pps: f64,
    pub max_pps: f64,
    /// (max - min) / median.
    pub spread: f64,
    pub median_cpu_ns_per_pkt: f64,
    pub median_loss: f64,
}

/// The comparison at one stream count and frame size (medians over the repetitions).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Ratio {
    pub streams: u32,
    pub frame_bytes: usize,
    /// Delivered pps, ours / rtpengine's module.
    pub ours_over_kmod: f64,
    /// The same per repetition (paired by repetition), min and max.
    pub ours_over_kmod_min: f64,
    pub ours_over_kmod_max: f64,
    /// Relay-side CPU per packet, the module's / ours: how many times less CPU a packet costs us.
    pub kmod_cpu_over_ours: f64,
    /// Ours / the baseline runs interleaved with ours.
    pub ours_over_baseline: f64,
    /// The module / the baseline runs interleaved with the module's.
    pub kmod_over_baseline: f64,
    /// ours_over_baseline / kmod_over_baseline: the comparison with each block's drift divided out.
    pub normalised_ours_over_kmod: f64,
    /// The generator's ceiling: a variant near it was limited by the generator.
    pub generator_ceiling_pps: f64,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Results {
    pub date: String,
    #[serde(skip)]
    pub day: String,
    pub mode: String,
    pub guest: Guest,
    pub generator: String,
    pub summary: Vec<Summary>,
    pub ratios: Vec<Ratio>,
    pub runs: Vec<Run>,
    pub wall_secs: f64,
    pub notes: Vec<String>,
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn summarise(runs: &[Run]) -> Vec<Summary> {
    let mut groups: BTreeMap<(u32, usize, String, String), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((r.streams, r.frame_bytes, r.block.clone(), r.variant.clone()))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((streams, frame_bytes, block, variant), rs)| {
            let mut pps: Vec<f64> = rs.iter().map(|r| r.delivered_pps).collect();
            let mut cpu: Vec<f64> = rs.iter().map(|r| r.cpu_ns_per_pkt).collect();
            let mut loss: Vec<f64> = rs.iter().map(|r| r.loss).collect();
            let min = pps.iter().copied().fold(f64::INFINITY, f64::min);
            let max = pps.iter().copied().fold(0.0, f64::max);
            let med = median(&mut pps);
            Summary {
                streams,
                frame_bytes,
                variant,
                block,
                runs: rs.len(),
                median_pps: med,
                min_pps: min,
                max_pps: max,
                spread: if med > 0.0 { (max - min) / med } else { 0.0 },
                median_cpu_ns_per_pkt: median(&mut cpu),
                median_loss: median(&mut loss),
            }
        })
        .collect()
}

fn find<'a>(
    s: &'a [Summary],
    n: u32,
    size: usize,
    variant: &str,
    block: &str,
) -> Option<&'a Summary> {
    s.iter().find(|x| {
        x.streams == n && x.frame_bytes == size && x.variant == variant && x.block == block
    })
}

fn div(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn ratios(s: &[Summary], runs: &[Run]) -> Vec<Ratio> {
    let mut out = vec![];
    let mut keys: Vec<(u32, usize)> = s.iter().map(|x| (x.streams, x.frame_bytes)).collect();
    keys.dedup();
    for (n, size) in keys {
        let (Some(k), Some(o), Some(bk), Some(bo)) = (
            find(s, n, size, "rtpengine_kmod", "kmod"),
            find(s, n, size, "relay_xdp", "ours"),
            find(s, n, size, "baseline", "kmod"),
            find(s, n, size, "baseline", "ours"),
        ) else {
            continue;
        };
        let pps = |variant: &str, rep: u32| {
            runs.iter()
                .find(|r| {
                    r.streams == n && r.frame_bytes == size && r.variant == variant && r.rep == rep
                })
                .map(|r| r.delivered_pps)
        };
        let paired: Vec<f64> = (0..o.runs.max(k.runs) as u32)
            .filter_map(|rep| Some(div(pps("relay_xdp", rep)?, pps("rtpengine_kmod", rep)?)))
            .collect();
        let ceiling = find(s, n, size, "generator_ceiling", "kmod")
            .map(|c| c.median_pps)
            .unwrap_or(0.0);
        let ours_over_baseline = div(o.median_pps, bo.median_pps);
        let kmod_over_baseline = div(k.median_pps, bk.median_pps);
        out.push(Ratio {
            streams: n,
            frame_bytes: size,
            ours_over_kmod: div(o.median_pps, k.median_pps),
            ours_over_kmod_min: paired.iter().copied().fold(f64::INFINITY, f64::min),
            ours_over_kmod_max: paired.iter().copied().fold(0.0, f64::max),
            kmod_cpu_over_ours: div(k.median_cpu_ns_per_pkt, o.median_cpu_ns_per_pkt),
            ours_over_baseline,
            kmod_over_baseline,
            normalised_ours_over_kmod: div(ours_over_baseline, kmod_over_baseline),
            generator_ceiling_pps: ceiling,
        });
    }
    out
}

fn guest(inc: &Incumbent) -> Guest {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_owned();
    let m = crate::run::machine();
    let accel = read("/proc/cmdline")
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mr.accel=").map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    let rtpengine = std::process::Command::new(&inc.bin)
        .arg("--version")
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_owned()
        })
        .unwrap_or_default();
    Guest {
        kernel: m.kernel,
        cpus: m.cpus,
        cpu_model: m.cpu_model,
        accel,
        rtpengine,
        xt_rtpengine: module_version(inc.flavor.module()),
        kernel_module: inc.flavor.module().into(),
    }
}

/// The module declares no MODULE_VERSION; it logs the version it was built with on load.
fn module_version(module: &str) -> String {
    let marker = format!("Registering {module} module - version ");
    std::process::Command::new("dmesg")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                l.split_once(marker.as_str())
                    .map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

const GENERATOR: &str = "bench_gen: BPF_PROG_RUN in live-frames mode on g0 (XDP_TX into r0), in the guest's kernel, cycling over the N streams' (source port, relay port) pairs; valid RTP (version 2, PCMU, SSRC 1, the header the priming datagrams carried), UDP checksum 0. Not pktgen: pktgen steps source and destination ports independently, so it cannot send N streams to ports each relay allocated itself, and its payload starts with a magic number that parses as an RTP header with 14 CSRCs and an extension, which the module rejects as an SSRC mismatch on RTP/AVP streams above ~113 bytes.";

impl Results {
    pub fn new(mode: Mode, inc: &Incumbent, runs: Vec<Run>, wall_secs: f64) -> Results {
        let (date, _) = crate::run::today();
        Results::derive(
            date,
            format!("{mode:?}").to_lowercase(),
            guest(inc),
            runs,
            wall_secs,
        )
    }

    /// Everything but the runs and the guest's facts is derived from them: a run's JSON can be
    /// rendered again (`relay-bench incumbent-render`) with the same numbers.
    pub fn derive(
        date: String,
        mode: String,
        guest: Guest,
        runs: Vec<Run>,
        wall_secs: f64,
    ) -> Results {
        let summary = summarise(&runs);
        let ratios = ratios(&summary, &runs);
        let mut notes = notes(&guest);
        notes.extend(limited_notes(&ratios));
        Results {
            day: date.chars().take(10).collect(),
            date,
            mode,
            guest,
            generator: GENERATOR.to_owned(),
            summary,
            ratios,
            runs,
            wall_secs,
            notes,
        }
    }
}

/// Where a variant delivered about as much as its block's baseline, what limited it was the
/// load (the generator and the veth ring in front of the relay), not its own CPU.
fn limited_notes(ratios: &[Ratio]) -> Vec<String> {
    ratios
        .iter()
        .filter(|x| x.ours_over_baseline >= 0.85)
        .map(|x| {
            format!(
                "{} streams, {} B: ours delivered {:.0}% of the baseline's rate, so the load limited it there, not its CPU: the delivered ratio to the module ({:.2}x) understates the difference; relay CPU per packet ({:.2}x less than the module's) is the measure of capacity.",
                x.streams,
                x.frame_bytes,
                100.0 * x.ours_over_baseline,
                x.ours_over_kmod,
                x.kmod_cpu_over_ours
            )
        })
        .collect()
}

fn notes(g: &Guest) -> Vec<String> {
    let mut n = vec![
        format!("One guest ({} kernel {}, {} vCPUs, {}), one run: the module's block and ours ran one after the other at each stream count, each with its own baseline runs interleaved run by run. Only ratios inside this run mean anything.", if g.accel == "tcg" { "QEMU TCG" } else { "QEMU" }, g.kernel, g.cpus, g.accel),
        "What TCG distorts: every guest instruction is translated and runs as several host instructions, guest memory goes through a software TLB, atomics and the guest's timers are emulated. Absolute rates are some 100x below hardware, and not every kind of work slows down by the same factor: the module's path (netfilter, the IP stack's receive and output, an skb per packet) and ours (one XDP program on the driver's frame) are both instruction- and memory-bound, but their ratio on hardware can differ from the ratio here. Treat ratios as a same-kernel, same-load comparison, not as a hardware prediction.".to_owned(),
        "CPUs: vCPU 1 does the relay's work and nothing else: r0's NAPI runs threaded there (SCHED_FIFO), with the module inside netfilter's INPUT hook or our program in XDP, and the relay's daemon. vCPU 0 runs the generator and, above it, s0's counting NAPI thread (frames the module sends through the stack reach s0 as skbs that s0 copies before counting; on the relay's vCPU that copy would slow the module's path). CPU ns/packet counts r0's NAPI thread, ksoftirqd and the relay's daemon per delivered packet.".to_owned(),
        "Same load, same end: byte-identical frames from one generator, counted by one XDP program on s0, whichever relay sent them; the check that every frame counted at s0 went through the measured fast path (the module's target counters, our XDP statistics) passed for every run.".to_owned(),
        "A relay's runs count its daemon's CPU (rtpengine's, ours). The baseline runs in our block count our daemon too (it keeps running while the baseline sits behind its link); those in the module's block count r0's NAPI thread and ksoftirqd only, though rtpengine keeps running there as well. So the difference between the two blocks' baseline CPU is our daemon's idle cost: at 10k sessions mostly its once-a-second sweep over its sessions (it reads a session's kernel statistics only when its last reading would let it expire).".to_owned(),
        format!("The module's path is its lightest here: no conntrack loaded, {}, RTP/AVP without SRTP or recording. A carrier box with conntrack would add cost to the module's path, not to ours.", if g.kernel_module == "nft_rtpengine" { "one nftables base chain (table filter, hook input) jumping to rtpengine's own chain with its `rtpengine` expression, both added by the daemon" } else { "one iptables rule" }),
        "baseline: bench_redirect on r0 (two MAC addresses, XDP_REDIRECT to r1; no IP/UDP work, no lookup). In the module's block it is attached to r0 for its runs; in ours it replaces our program behind the daemon's pinned r0 link (BPF_LINK_UPDATE) and our program is put back after each run.".to_owned(),
    ];
    if g.accel != "tcg" {
        n.retain(|x| !x.starts_with("What TCG"));
    }
    n
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let g = &r.guest;
    let _ = writeln!(
        s,
        "# Against rtpengine's kernel module: {} ({} mode)\n",
        r.date, r.mode
    );
    let _ = writeln!(
        s,
        "Guest: Debian kernel {}, {} x {}, accel {}. rtpengine: `{}`, {} {}. Wall time {:.0} s.\n",
        g.kernel,
        g.cpus,
        g.cpu_model,
        g.accel,
        g.rtpengine,
        g.kernel_module,
        g.xt_rtpengine,
        r.wall_secs
    );
    let _ = writeln!(s, "## Ratios (medians of the repetitions)\n");
    let _ = writeln!(
        s,
        "| streams | frame | ours / module (per-rep range) | module CPU/pkt ÷ ours | ours / baseline | module / baseline | normalised ours / module |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    for x in &r.ratios {
        let _ = writeln!(
            s,
            "| {} | {} B | **{:.2}x** ({:.2} - {:.2}) | {:.2}x | {:.0}% | {:.0}% | {:.2}x |",
            x.streams,
            x.frame_bytes,
            x.ours_over_kmod,
            x.ours_over_kmod_min,
            x.ours_over_kmod_max,
            x.kmod_cpu_over_ours,
            100.0 * x.ours_over_baseline,
            100.0 * x.kmod_over_baseline,
            x.normalised_ours_over_kmod
        );
    }
    let _ = writeln!(s, "\n## Delivered packets per second\n");
    let _ = writeln!(
        s,
        "| streams | frame | variant | block | runs | median pps | min - max | spread | CPU ns/pkt | loss |"
    );
    let _ = writeln!(s, "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|");
    for x in &r.summary {
        let _ = writeln!(
            s,
            "| {} | {} B | {} | {} | {} | {} | {} - {} | {:.0}% | {:.0} | {:.1}% |",
            x.streams,
            x.frame_bytes,
            x.variant,
            x.block,
            x.runs,
            si(x.median_pps),
            si(x.min_pps),
            si(x.max_pps),
            100.0 * x.spread,
            x.median_cpu_ns_per_pkt,
            100.0 * x.median_loss
        );
    }
    let _ = writeln!(s, "\n## Generator\n\n{}\n", r.generator);
    let _ = writeln!(s, "## Notes\n");
    for n in &r.notes {
        let _ = writeln!(s, "- {n}");
    }
    s
}

/// Runs of every variant at one stream count and size, for the tests of the report and chart.
#[cfg(test)]
pub(super) fn sample_runs() -> Vec<Run> {
    vec![
        tests::run("rtpengine_kmod", "kmod", 0, 100.0, 2000.0),
        tests::run("rtpengine_kmod", "kmod", 1, 120.0, 1800.0),
        tests::run("rtpengine_kmod", "kmod", 2, 110.0, 1900.0),
        tests::run("baseline", "kmod", 0, 400.0, 500.0),
        tests::run("relay_xdp", "ours", 0, 300.0, 600.0),
        tests::run("relay_xdp", "ours", 1, 360.0, 550.0),
        tests::run("relay_xdp", "ours", 2, 330.0, 580.0),
        tests::run("baseline", "ours", 0, 400.0, 500.0),
        tests::run("generator_ceiling", "kmod", 0, 900.0, 100.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_without_kernel_module_is_xt() {
        // Results written before nft_rtpengine was measured name no module: xt_RTPENGINE.
        let old = r#"{"kernel":"6.1.0-56-amd64","cpus":2,"cpu_model":"x","accel":"tcg","rtpengine":"10.5","xt_rtpengine":"10.5.3.5"}"#;
        let g: Guest = serde_json::from_str(old).unwrap();
        assert_eq!(g.kernel_module, "xt_RTPENGINE");
        let new = old.replace('}', r#","kernel_module":"nft_rtpengine"}"#);
        let g: Guest = serde_json::from_str(&new).unwrap();
        assert_eq!(g.kernel_module, "nft_rtpengine");
    }

    pub(super) fn run(variant: &str, block: &str, rep: u32, pps: f64, cpu: f64) -> Run {
        Run {
            variant: variant.into(),
            block: block.into(),
            streams: 1,
            frame_bytes: 64,
            rep,
            sent: 100,
            delivered: 90,
            secs: 1.0,
            delivered_pps: pps,
            loss: 0.1,
            cpu_ns_per_pkt: cpu,
            generator_cpu_secs: 1.0,
            machine_busy_secs: 2.0,
            relay_forwarded: None,
        }
    }

    #[test]
    fn medians_spreads_and_ratios() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
        let runs = sample_runs();
        let s = summarise(&runs);
        let k = find(&s, 1, 64, "rtpengine_kmod", "kmod").unwrap();
        assert_eq!((k.median_pps, k.min_pps, k.max_pps), (110.0, 100.0, 120.0));
        assert!((k.spread - 20.0 / 110.0).abs() < 1e-9);
        let r = &ratios(&s, &runs)[0];
        assert!((r.ours_over_kmod - 3.0).abs() < 1e-9);
        assert!((r.ours_over_kmod_min - 3.0).abs() < 1e-9);
        assert!((r.ours_over_kmod_max - 3.0).abs() < 1e-9);
        assert!((r.kmod_cpu_over_ours - 1900.0 / 580.0).abs() < 1e-9);
        assert!((r.ours_over_baseline - 330.0 / 400.0).abs() < 1e-9);
        assert!((r.normalised_ours_over_kmod - 3.0).abs() < 1e-9);
        // A run's JSON renders again to the same derived numbers.
        let r = Results::new(
            Mode::Smoke,
            &crate::incumbent::Incumbent {
                flavor: crate::incumbent::Flavor::Xt,
                bin: "/bin/false".into(),
            },
            sample_runs(),
            1.0,
        );
        let back: Results = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        let again = Results::derive(back.date, back.mode, back.guest, back.runs, back.wall_secs);
        assert_eq!(again.day, r.day);
        assert_eq!(format!("{:?}", again.ratios), format!("{:?}", r.ratios));
        assert_eq!(markdown(&again), markdown(&r));
        // No module runs at a size: no ratio row rather than a division by zero.
        assert!(ratios(&s[..0], &runs).is_empty());
    }
}
