//! The results: one JSON document, and the same as a markdown table.
use std::fmt::Write;

use serde::Serialize;

use crate::{control::Control, percost, tput::Variant};

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
    pub wall_secs: f64,
    pub notes: Vec<String>,
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
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
            "| RELAY_LEG_STATS (per-CPU array) | {} | {:.1} |",
            mem.leg_stats_bytes, mem.leg_stats_bytes_per_leg
        );
        let _ = writeln!(
            s,
            "| total | {} | **{:.1}** |",
            mem.legs_map_bytes + mem.leg_stats_bytes,
            mem.bytes_per_leg
        );
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
            "| variant | flows | sent pps | delivered pps | loss | CPU ns/packet | relay_xdp ÷ this |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        for v in &r.throughput {
            let ratio = match relay {
                Some(x) if v.delivered_pps > 0.0 => format!("{:.2}", x / v.delivered_pps),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1}% | {:.0} | {} |",
                v.name,
                v.flows,
                si(v.sent_pps),
                si(v.delivered_pps),
                100.0 * v.loss,
                v.cpu_ns_per_pkt,
                ratio
            );
        }
    }
    if !r.scaling.is_empty() {
        let _ = writeln!(
            s,
            "\n## Scaling: legs installed vs delivered pps and ns/packet\n"
        );
        let _ = writeln!(
            s,
            "| legs | flows with traffic | delivered pps | loss | forward_redirect ns/packet |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
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
                "| {} | {} | {} | {:.1}% | {} |",
                v.legs_installed,
                v.flows,
                si(v.delivered_pps),
                100.0 * v.loss,
                ns
            );
        }
    }
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
