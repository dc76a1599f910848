//! One benchmark run: the sections in order, bounded in time, results written at the end.
use std::{
    fs,
    os::fd::AsRawFd,
    path::Path,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

use crate::{
    Mode, chart, control, multicore, percost,
    report::{self, Machine, Results},
    topo::Topo,
    tput,
};

struct Plan {
    per_packet: percost::Plan,
    tput: Option<tput::Plan>,
    control_calls: u32,
}

fn plan(mode: Mode) -> Plan {
    match mode {
        Mode::Full => Plan {
            per_packet: percost::Plan {
                legs: &[1, 1_000, 10_000, 100_000, 1_000_000],
                // Each BPF_PROG_RUN call costs some 15 ms of wall time here (rxq set-up and
                // teardown around the program), whatever its repeat.
                runs: 100,
                single_runs: 300,
                max_legs: percost::MAX_LEGS,
            },
            tput: Some(tput::Plan {
                streams: 1_000,
                secs: 5.0,
                scaling_legs: &[1, 10, 100, 1_000, 10_000, 100_000, 1_000_000],
            }),
            control_calls: 2_000,
        },
        Mode::Quick => Plan {
            per_packet: percost::Plan {
                legs: &[1, 1_000, 100_000, 1_000_000],
                runs: 40,
                single_runs: 100,
                max_legs: percost::MAX_LEGS,
            },
            tput: Some(tput::Plan {
                streams: 200,
                secs: 2.0,
                scaling_legs: &[1, 1_000, 100_000, 1_000_000],
            }),
            control_calls: 300,
        },
        Mode::Smoke => Plan {
            per_packet: percost::Plan {
                legs: &[1, 1_000],
                runs: 3,
                single_runs: 5,
                // Small and distinctive: the memory report finds the map by name and size.
                max_legs: 4_093,
            },
            tput: None,
            control_calls: 0,
        },
    }
}

fn log(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Holds /tmp/mr-e2e.lock (shared with the namespace tests, see notes) while alive.
pub(crate) struct E2eLock(#[allow(dead_code)] fs::File);

pub(crate) fn e2e_lock() -> Result<E2eLock> {
    let f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/mr-e2e.lock")?;
    log("waiting for /tmp/mr-e2e.lock (namespace tests of other checkouts)");
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("flock: {}", std::io::Error::last_os_error());
    }
    Ok(E2eLock(f))
}

pub fn run(mode: Mode, out: &Path, relay_ctl: Option<&Path>, queues: &[u32]) -> Result<()> {
    let start = Instant::now();
    let p = plan(mode);
    let machine = machine();
    let (date, stamp) = today();
    let mut notes = vec![
        "Every number is measured next to its baseline in the same run; ratios are the result, absolute numbers depend on the machine and what else runs on it.".to_owned(),
        format!("Per-packet: the forward path repeats {} times per BPF_PROG_RUN call on a frame it rewrites itself (two legs pointing at each other, TTL 255), so every repetition is a full forward; the baseline runs the same way. Reflector and STUN turn their input into an answer, so they run one packet per call; they are compared with the baseline measured one packet per call (`baseline_1`), which includes the kernel's fixed timing overhead of a call.", percost::FWD_REPEAT),
        "BPF_PROG_RUN repeats one frame, so the leg's hash bucket stays in cache: the per-packet numbers at 1M legs show the hash table's size effect on a hot entry, not cache misses across legs; the namespace scaling curve spreads traffic over many legs.".to_owned(),
    ];
    remove_stale_namespaces();
    let _lock = if mode == Mode::Smoke {
        None
    } else {
        Some(e2e_lock()?)
    };
    log(&format!("mode {mode:?}: per-packet cost"));
    let pc = percost::run(p.per_packet, log)?;
    let (mut throughput, mut scaling, mut control) = (vec![], vec![], vec![]);
    if let Some(tp) = p.tput {
        let relay_ctl = relay_ctl.context("--relay-ctl is required outside --mode smoke")?;
        let self_exe = std::env::current_exe()?;
        let t = Topo::build()?;
        log("throughput (veth namespaces)");
        let o = tput::run(&t, tp, relay_ctl, &self_exe, log)?;
        throughput = o.variants;
        scaling = o.scaling;
        log("control plane (ng)");
        control = control::run(&t, p.control_calls, relay_ctl, log);
        notes.extend(tput_notes(&throughput));
    }
    // After the main testbed is gone: the multi-core runs build their own (2-queue veths).
    let mut mc = vec![];
    if let (Some(tp), false) = (p.tput, queues.is_empty()) {
        log("multi-core (1 and 2 relay queues)");
        mc = multicore::run(
            &multicore::Plan {
                queues: queues.to_vec(),
                streams: tp.streams,
                secs: tp.secs,
            },
            log,
        )?;
    }
    let results = Results {
        date: date.clone(),
        mode: format!("{mode:?}").to_lowercase(),
        machine,
        per_packet: pc.paths,
        memory: pc.memory,
        throughput,
        scaling,
        control,
        multicore: mc,
        wall_secs: start.elapsed().as_secs_f64(),
        notes,
    };
    fs::create_dir_all(out)?;
    // A quick or smoke run never overwrites the day's full run.
    let suffix = match mode {
        Mode::Full => "",
        Mode::Quick => "-quick",
        Mode::Smoke => "-smoke",
    };
    let base = out.join(format!("{stamp}-{}{suffix}", results.machine.host));
    let json = base.with_extension("json");
    fs::write(&json, serde_json::to_string_pretty(&results)?)?;
    fs::write(base.with_extension("md"), report::markdown(&results))?;
    chart::render(&results, &base.with_extension("png"))?;
    log(&format!(
        "wrote {}.{{json,md,png}} in {:.0} s",
        base.display(),
        results.wall_secs
    ));
    Ok(())
}

/// `relay-bench multicore`: the multi-core phase alone, its own JSON and markdown.
pub fn run_multicore(out: &Path, plan: &multicore::Plan) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Doc {
        date: String,
        machine: Machine,
        streams: u32,
        secs_per_run: f64,
        runs: Vec<multicore::McRun>,
    }
    let machine = machine();
    let (date, stamp) = today();
    remove_stale_namespaces();
    let _lock = e2e_lock()?;
    let runs = multicore::run(plan, log)?;
    let mut md = format!(
        "# Multi-core runs {date}\n\nMachine: `{}`, kernel {}, {} x {}; load average before: {}. {} flows, {} s per run.\n",
        machine.host,
        machine.kernel,
        machine.cpus,
        machine.cpu_model,
        machine.loadavg_before,
        plan.streams,
        plan.secs
    );
    report::multicore(&runs, machine.cpus, &mut md);
    fs::create_dir_all(out)?;
    let base = out.join(format!("{stamp}-{}-multicore", machine.host));
    fs::write(base.with_extension("md"), md)?;
    let doc = Doc {
        date,
        machine,
        streams: plan.streams,
        secs_per_run: plan.secs,
        runs,
    };
    fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    log(&format!("wrote {}.{{json,md}}", base.display()));
    Ok(())
}

fn tput_notes(v: &[tput::Variant]) -> Vec<String> {
    let mut n = vec![
        "veth is not a NIC: no wire, DMA, interrupts or descriptor rings. XDP on veth runs in the receiving veth's NAPI poll on frames its peer put in a software ring, XDP_TX/REDIRECT hand frames to the peer's ring, and the generator is a program on the same machine. Ratios between variants measured this way are meaningful; the absolute Mpps are not what a NIC does (docs/design.md section 7: XDP_TX 16.9 Mpps/core, XDP_REDIRECT 8.6 Mpps/core on real NICs).".to_owned(),
        format!("CPUs: the generator runs on CPU {}; r0's NAPI runs threaded, its kthread pinned to CPU {} (SCHED_FIFO), where the userspace relays also run, one priority above it; the counting sinks' NAPI threads (g0, s0) run on CPU {} too, above everything, so every variant pays the same few ns per delivered packet for being counted. Every variant gets that one CPU; 'loss' above a few % means the variant was saturated (the generator offers more than it takes).", crate::cpu::GEN_CPU, crate::cpu::RELAY_CPU, crate::cpu::RELAY_CPU),
        "Generator: the host kernel has no pktgen (CONFIG_NET_PKTGEN off), so frames come from BPF_PROG_RUN in live-frames mode on g0 (bench_gen, XDP_TX into r0); generator_ceiling (a counting drop program on r0) is the most it delivers.".to_owned(),
        "CPU ns/packet = CPU time of the relay side (r0's NAPI kthread, the relay's own process, ksoftirqd) / delivered packets. The counting sinks' threads are not included.".to_owned(),
        "The machine is shared with other builds (machine_busy_secs in the JSON, the load average above): absolute numbers move by some 25% between runs, the scaling curve included; compare within a run.".to_owned(),
    ];
    let ceil = v
        .iter()
        .find(|x| x.name == "generator_ceiling")
        .map(|x| x.delivered_pps);
    if let Some(c) = ceil {
        for x in v.iter().filter(|x| x.name != "generator_ceiling") {
            if x.delivered_pps >= 0.9 * c {
                n.push(format!("{} delivered {:.0}% of the generator's ceiling: the generator is the bottleneck there, not the variant.", x.name, 100.0 * x.delivered_pps / c));
            }
        }
    }
    n
}

pub fn machine() -> Machine {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_owned();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    Machine {
        host: read("/proc/sys/kernel/hostname"),
        kernel: read("/proc/sys/kernel/osrelease"),
        cpu_model,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        mem_gib: mem_kib / 1024.0 / 1024.0,
        loadavg_before: read("/proc/loadavg"),
    }
}

/// (YYYY-MM-DD HH:MM UTC, YYYY-MM-DD) from the system clock (civil-from-days, no tz data).
pub fn today() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let day = format!("{y:04}-{m:02}-{d:02}");
    (
        format!("{day} {:02}:{:02} UTC", tod / 3600, tod % 3600 / 60),
        day,
    )
}

/// Namespaces of earlier runs that were killed before their guards ran (names end in the
/// pid of a relay-bench that no longer runs).
pub(crate) fn remove_stale_namespaces() {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return;
    };
    for name in dir.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        let Some(pid) = ["mr-bn-", "mr-bg", "mr-bs", "mr-br"]
            .iter()
            .find_map(|p| name.strip_prefix(p)?.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "relay-bench");
        if !alive {
            log(&format!("removing namespace {name} left by a killed run"));
            let _ = relay_testbed::run("ip", &["netns", "del", &name]);
        }
    }
}
