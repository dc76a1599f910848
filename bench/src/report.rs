//! The results: one JSON document, and the same as a markdown table.
use std::fmt::Write;

use serde::Serialize;

use crate::{control::Control, multicore::McRun, percost, tput::Variant};

#[derive(Serialize, Clone)]
pub struct Machine {
    pub host: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: u32,
    pub mem_gib: f64,
    pub loadavg_before: String,
}

#[derive(Serialize, Clone)]
pub struct Results {
    pub date: String,
    pub mode: String,
    pub machine: Machine,
    pub per_packet: Vec<percost::PathCost>,
    pub memory: Option<percost::Memory>,
    pub throughput: Vec<Variant>,
    pub scaling: Vec<Variant>,
    pub control: Vec<Control>,
    /// The multi-core runs (multicore.rs): 1 and 2 relay queues/CPUs.
    pub multicore: Vec<McRun>,
    pub wall_secs: f64,
    pub notes: Vec<String>,
}

pub fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A variant's in-program ns/packet, or "-" where no XDP program of ours ran.
fn inprog(v: &crate::tput::Variant) -> String {
    v.inprog_ns_per_pkt
        .map_or_else(|| "-".into(), |ns| format!("{ns:.1}"))
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "# Benchmark results {} ({} mode)\n", r.date, r.mode);
    let _ = writeln!(
        s,
        "Machine: `{}`, kernel {}, {} x {}, {:.0} GiB; load average before the run: {}. Wall time {:.0} s.\n",
        m.host, m.kernel, m.cpus, m.cpu_model, m.mem_gib, m.loadavg_before, r.wall_secs
    );
    goals(r, &mut s);
    let _ = writeln!(s, "## Per-packet cost (BPF_PROG_RUN)\n");
    let _ = writeln!(
        s,
        "| legs | path | ns/packet (median) | p10 - p90 | repeat x runs | ratio to baseline |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|");
    for p in &r.per_packet {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} - {:.1} | {} x {} | {} |",
            p.legs,
            p.path,
            p.ns,
            p.p10,
            p.p90,
            p.repeat,
            p.runs,
            if p.path.starts_with("baseline") {
                "1".into()
            } else {
                format!("{:.2}", p.ratio_to_baseline)
            }
        );
    }
    if let Some(mem) = &r.memory {
        let _ = writeln!(s, "\n## Kernel memory per leg\n");
        let _ = writeln!(
            s,
            "Legs map + per-leg stats, loaded for {} legs ({} installed), {} possible CPUs, from the maps' `memlock` (fdinfo):\n",
            mem.max_entries, mem.legs_installed, mem.cpus
        );
        let _ = writeln!(s, "| map | bytes | bytes per leg |\n|---|---:|---:|");
        let _ = writeln!(
            s,
            "| RELAY_LEGS (hash, preallocated) | {} | {:.1} |",
            mem.legs_map_bytes, mem.legs_map_bytes_per_leg
        );
        let _ = writeln!(
            s,
            "| RELAY_LEG_STATS (shared array, atomic adds) | {} | {:.1} |",
            mem.leg_stats_bytes, mem.leg_stats_bytes_per_leg
        );
        let _ = writeln!(
            s,
            "| total | {} | **{:.1}** |",
            mem.legs_map_bytes + mem.leg_stats_bytes,
            mem.bytes_per_leg
        );
        let _ = writeln!(
            s,
            "\nAt other CPU counts (computed from the map definitions and the numbers above; goal <= 512 B at 64 CPUs):\n"
        );
        let _ = writeln!(
            s,
            "| possible CPUs | bytes per leg | with per-CPU stats (before) |\n|---:|---:|---:|"
        );
        for p in &mem.by_cpus {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.0} |",
                p.cpus, p.bytes_per_leg, p.per_cpu_stats_bytes_per_leg
            );
        }
    }
    if !r.throughput.is_empty() {
        let relay = r
            .throughput
            .iter()
            .find(|v| v.name == "relay_xdp")
            .map(|v| v.delivered_pps);
        let _ = writeln!(
            s,
            "\n## Throughput, veth namespaces (200-byte IP packets)\n"
        );
        let _ = writeln!(
            s,
            "| variant | flows | sent pps | delivered pps | loss | CPU ns/packet | in-program ns/packet | relay_xdp ÷ this |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for v in &r.throughput {
            let ratio = match relay {
                Some(x) if v.delivered_pps > 0.0 => format!("{:.2}", x / v.delivered_pps),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1}% | {:.0} | {} | {} |",
                v.name,
                v.flows,
                si(v.sent_pps),
                si(v.delivered_pps),
                100.0 * v.loss,
                v.cpu_ns_per_pkt,
                inprog(v),
                ratio
            );
        }
        let _ = writeln!(
            s,
            "\nIn-program ns/packet: the XDP program's own run time per run under this load, from the kernel's accounting (BPF_ENABLE_STATS: `run_time_ns / run_cnt`), which adds two clock reads to every run of every program; compare it with BPF_PROG_RUN's numbers above."
        );
    }
    if !r.scaling.is_empty() {
        let _ = writeln!(
            s,
            "\n## Scaling: legs installed vs delivered pps and ns/packet\n"
        );
        let _ = writeln!(
            s,
            "| legs | flows with traffic | delivered pps | loss | forward_redirect ns/packet (BPF_PROG_RUN) | in-program ns/packet (under load) |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
        for v in &r.scaling {
            let ns = r
                .per_packet
                .iter()
                .filter(|p| p.path == "forward_redirect")
                .min_by_key(|p| (p.legs as i64 - v.legs_installed as i64).abs())
                .map(|p| format!("{:.1} (at {} legs)", p.ns, p.legs))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1}% | {} | {} |",
                v.legs_installed,
                v.flows,
                si(v.delivered_pps),
                100.0 * v.loss,
                ns,
                inprog(v)
            );
        }
    }
    multicore(&r.multicore, r.machine.cpus, &mut s);
    if !r.control.is_empty() {
        let _ = writeln!(s, "\n## Control plane (ng, one client, sequential)\n");
        let _ = writeln!(
            s,
            "| server | calls | offer+answer pairs/s | ng requests/s | note |\n|---|---:|---:|---:|---|"
        );
        for c in &r.control {
            if c.available {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {:.0} | {} |",
                    c.server, c.calls, c.calls_per_sec, c.requests_per_sec, c.note
                );
            } else {
                let _ = writeln!(s, "| {} | - | not available | - | {} |", c.server, c.note);
            }
        }
    }
    let _ = writeln!(s, "\n## Notes\n");
    for n in &r.notes {
        let _ = writeln!(s, "- {n}");
    }
    s
}

/// The goals, each next to what this run measured ("-" where the run has no number).
fn goals(r: &Results, s: &mut String) {
    let pps = |name: &str| {
        r.throughput
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.delivered_pps)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let inprog = |name: &str| {
        r.throughput
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.inprog_ns_per_pkt)
    };
    let at_64 = r
        .memory
        .as_ref()
        .and_then(|m| m.by_cpus.iter().find(|p| p.cpus == 64))
        .map(|p| p.bytes_per_leg);
    let fwd_1m = r
        .per_packet
        .iter()
        .filter(|p| p.path == "forward_redirect")
        .max_by_key(|p| p.legs)
        .map(|p| (p.ratio_to_baseline, p.legs));
    let ng = |server: &str| {
        r.control
            .iter()
            .find(|c| c.server == server && c.available)
            .map(|c| c.calls_per_sec)
    };
    let fmt = |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |x| format!("{x:.2}{unit}"));
    let met = |v: Option<f64>, ok: &dyn Fn(f64) -> bool| match v {
        Some(x) if ok(x) => "yes",
        Some(_) => "**no**",
        None => "not measured",
    };
    let rows: Vec<(String, String, &str)> = vec![
        (
            format!(
                "per packet <= 1.3 x the MAC-swap baseline (forward, {} legs)",
                fwd_1m.map_or(0, |f| f.1)
            ),
            fmt(fwd_1m.map(|f| f.0), " x"),
            met(fwd_1m.map(|f| f.0), &|x| x <= 1.3),
        ),
        (
            ">= 10 x rtpengine's pps".into(),
            fmt(ratio(pps("relay_xdp"), pps("rtpengine")), " x"),
            met(ratio(pps("relay_xdp"), pps("rtpengine")), &|x| x >= 10.0),
        ),
        (
            ">= 5 x the recvmmsg relay's pps".into(),
            fmt(ratio(pps("relay_xdp"), pps("recvmmsg_relay")), " x"),
            met(ratio(pps("relay_xdp"), pps("recvmmsg_relay")), &|x| {
                x >= 5.0
            }),
        ),
        (
            ">= 90% of the bare XDP_TX baseline's pps".into(),
            fmt(
                ratio(pps("relay_xdp"), pps("xdp_baseline")).map(|x| 100.0 * x),
                " %",
            ),
            met(ratio(pps("relay_xdp"), pps("xdp_baseline")), &|x| x >= 0.9),
        ),
        (
            ">= 2 x rtpengine's ng offers+answers per second".into(),
            fmt(ratio(ng("relay-ctl"), ng("rtpengine")), " x"),
            met(ratio(ng("relay-ctl"), ng("rtpengine")), &|x| x >= 2.0),
        ),
        (
            format!(
                "<= 256 bytes of kernel memory per leg ({} CPUs)",
                r.memory.as_ref().map_or(0, |m| m.cpus)
            ),
            fmt(r.memory.as_ref().map(|m| m.bytes_per_leg), " B"),
            met(r.memory.as_ref().map(|m| m.bytes_per_leg), &|x| x <= 256.0),
        ),
        (
            "<= 512 bytes of kernel memory per leg at 64 CPUs (issue 16)".into(),
            fmt(at_64, " B"),
            met(at_64, &|x| x <= 512.0),
        ),
        (
            "in-program ns/packet under load, relay / bare baseline (issue 16, reported)".into(),
            fmt(ratio(inprog("relay_xdp"), inprog("xdp_baseline")), " x"),
            met(ratio(inprog("relay_xdp"), inprog("xdp_baseline")), &|x| {
                x <= 1.3
            }),
        ),
    ];
    let _ = writeln!(s, "## Goals (issues 6 and 16) against this run\n");
    let _ = writeln!(s, "| goal | measured | met |\n|---|---:|---|");
    for (goal, measured, ok) in rows {
        let _ = writeln!(s, "| {goal} | {measured} | {ok} |");
    }
    let _ = writeln!(s);
}

/// The multi-core section: every run, then per variant the scaling 1 -> 2 queues and ours
/// against the baseline at each queue count.
pub fn multicore(runs: &[McRun], cpus: u32, s: &mut String) {
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Multi-core: r0's XDP on 1 and 2 receive queues (one CPU each)\n"
    );
    let _ = writeln!(
        s,
        "The machine has {cpus} CPUs and the generator runs on them too (one thread per CPU, each sending its own flow group, below the NAPI threads in priority): delivered pps is what the CPUs do with generator and relay together, not the relay's capacity. The relay's own cost is its NAPI threads' CPU time (`relay CPU ns/pkt`, `pps per relay core` = delivered / relay CPU seconds) and the program's run time (`in-program ns`).\n"
    );
    let _ = writeln!(
        s,
        "| variant | queues | delivered pps | sent pps | loss | packets per queue | relay cores busy | relay CPU ns/pkt | pps per relay core | in-program ns/pkt | generator CPU s | machine busy s |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let per_q: Vec<String> = r.per_queue_packets.iter().map(|n| si(*n as f64)).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1}% | {} | {:.2} | {:.0} | {} | {} | {:.1} | {:.1} |",
            r.variant,
            r.queues,
            si(r.delivered_pps),
            si(r.sent_pps),
            100.0 * r.loss,
            per_q.join(" / "),
            r.relay_cores_busy,
            r.relay_cpu_ns_per_pkt,
            si(r.pps_per_relay_core),
            r.inprog_ns_per_pkt
                .map_or_else(|| "-".into(), |n| format!("{n:.1}")),
            r.generator_cpu_secs,
            r.machine_busy_secs
        );
    }
    let find = |v: &str, q: u32| runs.iter().find(|r| r.variant == v && r.queues == q);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let _ = writeln!(
        s,
        "\n| variant | delivered pps, 1 queue | 2 queues | scaling 1 -> 2 | in-program ns, 1 -> 2 |\n|---|---:|---:|---:|---|"
    );
    for v in ["generator_ceiling", "xdp_baseline", "relay_xdp_direct"] {
        let (a, b) = (find(v, 1), find(v, 2));
        let ns = |r: Option<&McRun>| {
            r.and_then(|r| r.inprog_ns_per_pkt)
                .map_or_else(|| "-".into(), |n| format!("{n:.1}"))
        };
        let _ = writeln!(
            s,
            "| {v} | {} | {} | {} | {} -> {} |",
            a.map_or_else(|| "-".into(), |r| si(r.delivered_pps)),
            b.map_or_else(|| "-".into(), |r| si(r.delivered_pps)),
            ratio(b.map(|r| r.delivered_pps), a.map(|r| r.delivered_pps)),
            ns(a),
            ns(b)
        );
    }
    for r in runs
        .iter()
        .filter(|r| r.variant != "generator_ceiling" && r.loss < 0.02)
    {
        let _ = writeln!(
            s,
            "\n{} on {} queue(s) lost {:.1}%: it took everything the generator sent, so its pps (and a scaling factor computed from it) is a lower bound, set by the generator sharing the CPUs.",
            r.variant,
            r.queues,
            100.0 * r.loss
        );
    }
    let _ = writeln!(
        s,
        "\n| queues | relay ÷ baseline, delivered pps | relay ÷ baseline, in-program ns | relay ÷ baseline, pps per relay core |\n|---:|---:|---:|---:|"
    );
    for q in [1, 2] {
        let (o, b) = (find("relay_xdp_direct", q), find("xdp_baseline", q));
        if o.is_none() && b.is_none() {
            continue;
        }
        let _ = writeln!(
            s,
            "| {q} | {} | {} | {} |",
            ratio(o.map(|r| r.delivered_pps), b.map(|r| r.delivered_pps)),
            ratio(
                o.and_then(|r| r.inprog_ns_per_pkt),
                b.and_then(|r| r.inprog_ns_per_pkt)
            ),
            ratio(
                o.map(|r| r.pps_per_relay_core),
                b.map(|r| r.pps_per_relay_core)
            ),
        );
    }
}
