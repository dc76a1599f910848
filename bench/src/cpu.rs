//! CPU accounting for a throughput run: the generator thread's own CPU time (it also runs the
//! softirq work its frames trigger on its CPU), plus the named processes' user+system time
//! and the ksoftirqd threads' (NAPI work deferred off the generating thread).
use std::fs;

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a pid (or thread), in seconds; 0 when it is gone.
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (num(11) + num(12)) / clk_tck()
}

/// Pids of the ksoftirqd threads.
pub fn ksoftirqd_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(e.path().join("comm")).ok()?;
        comm.starts_with("ksoftirqd/").then_some(pid)
    })
    .collect()
}

/// Sum of CPU seconds of `pids` now.
pub fn sum_cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|p| proc_cpu_secs(*p)).sum()
}

/// Busy (non-idle, non-iowait) CPU seconds of the whole machine: shows how much else ran.
pub fn machine_busy_secs() -> f64 {
    let Ok(s) = fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = s.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle) / clk_tck()
}

/// CPU of the generator; the relay under test (its NAPI thread and process) gets `RELAY_CPU`.
pub const GEN_CPU: usize = 0;
pub const RELAY_CPU: usize = 1;

/// Real-time priority of the measured threads: on a shared machine, compile jobs would
/// otherwise take their CPU half the time. Bounded loads and the kernel's RT throttling (5%
/// of every second left to others) keep this safe.
pub const RT_PRIO: i32 = 20;
/// A userspace relay's threads run above the NAPI thread on the shared relay CPU: under
/// overload the NAPI thread would otherwise keep the CPU receiving into full sockets and the
/// relay would never run (receive livelock). This is the userspace relays' best case.
pub const RT_PRIO_USERSPACE: i32 = 30;
/// The counting sinks' NAPI threads run above everything on the relay's CPU (topo.rs).
pub const RT_PRIO_SINK: i32 = 40;
/// The generator threads of the multi-core runs (multicore.rs), which share every CPU with
/// the relay's NAPI threads: below those, so the relay takes the CPU time it needs and the
/// generator gets the rest (above normal tasks, which would otherwise take it half the time).
pub const RT_PRIO_GEN_SHARED: i32 = 10;

/// CPUs the machine has (1 when unknown).
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Pin `pid` (0 = the calling thread) to `cpu` at SCHED_FIFO `prio`, or at the normal policy
/// when `prio` is 0; a machine with fewer CPUs is not pinned.
pub fn pin_prio(pid: u32, cpu: usize, prio: i32) {
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // Priority 0: the normal time-sharing policy (SCHED_FIFO needs 1..99).
    let policy = if prio > 0 {
        libc::SCHED_FIFO
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: valid param; failure (no CAP_SYS_NICE) only leaves the default policy.
    unsafe { libc::sched_setscheduler(pid as i32, policy, &param) };
    if std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        <= cpu
    {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid as i32, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Pids of the threaded-NAPI kthreads of devices named `dev` (any namespace).
pub fn napi_pids(dev: &str) -> Vec<u32> {
    let prefix = format!("napi/{dev}-");
    let Ok(dir) = fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(e.path().join("comm")).ok()?;
        comm.starts_with(&prefix).then_some(pid)
    })
    .collect()
}

/// The NAPI id in a threaded-NAPI kthread's name (`napi/<dev>-<id>`).
pub fn napi_id(pid: u32) -> Option<u64> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    comm.trim().rsplit_once('-')?.1.parse().ok()
}

/// Pin every thread of process `pid` (rtpengine starts several) at `prio`.
pub fn pin_all(pid: u32, cpu: usize, prio: i32) {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for tid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        pin_prio(tid, cpu, prio);
    }
}
