//! Multi-core throughput (issue 16 item 4): the bare XDP baseline and our relay with r0's XDP
//! on 1 and on 2 receive queues, each queue's NAPI on its own CPU.
//!
//! How flows reach queues: a frame XDP_TXed or redirected into a veth lands in the peer's
//! receive queue `smp_processor_id() % real_num_rx_queues` (`veth_select_rxq` in
//! drivers/net/veth.c, the same on this 6.18 kernel): the sending CPU picks the queue, there is
//! no hash over the flow. RSS by flow is therefore made by the generator: one thread per CPU,
//! thread k sending flows k, k+n, k+2n, ... , so each flow always arrives on one queue, as a
//! NIC's RSS would keep it. The per-queue XDP counters (`ethtool -S r0`,
//! `rx_queue_<k>_xdp_packets`) are recorded to show the spreading.
//!
//! How the relay gets 1 or 2 CPUs: every veth end is made with 2 queues, and `ethtool -L r0
//! rx Q tx Q` leaves Q of r0's in use. With Q = 1 every frame enters queue 0 whatever CPU sent
//! it, so XDP runs in one NAPI thread on one CPU; with Q = 2 there are two, one per CPU
//! (threaded NAPI, queue k's kthread pinned to CPU k, SCHED_FIFO). Both Q run with the same
//! generator threads, so only the relay's queue count changes between them.
//!
//! The machine has as many CPUs as there are generator threads: generator and relay share
//! every CPU. The generator threads run below the NAPI threads, so the relay takes what it
//! needs and the generator sends with what is left; delivered pps is then the sum of both
//! costs per packet spread over the CPUs, and the relay's own CPU time (its NAPI kthreads) and
//! in-program ns/packet (BPF run-time statistics) are reported so its cost per packet per core
//! can be compared apart from the generator's.
use std::{process::Command, time::Duration};

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::{
    cpu, generator, progs,
    topo::{self, RELAY_A, Topo},
    tput::{self, DirectRelay},
};

#[derive(Clone, Debug)]
pub struct Plan {
    /// r0 receive queue counts to measure (each 1 or 2: the veths are made with 2).
    pub queues: Vec<u32>,
    /// Flows (one leg each), spread over the generator threads.
    pub streams: u32,
    /// Seconds of traffic per run.
    pub secs: f64,
}

/// Queues every veth end is made with.
const MAX_QUEUES: u32 = 2;

#[derive(Serialize, Clone, Debug)]
pub struct McRun {
    /// generator_ceiling, xdp_baseline or relay_xdp_direct.
    pub variant: String,
    /// r0's receive queues in use (= CPUs running the program under test).
    pub queues: u32,
    pub generator_threads: u32,
    pub flows: u32,
    pub sent: u64,
    pub delivered: u64,
    pub secs: f64,
    pub sent_pps: f64,
    pub delivered_pps: f64,
    pub loss: f64,
    /// Frames XDP saw on each of r0's receive queues (ethtool -S deltas).
    pub per_queue_packets: Vec<u64>,
    /// CPU seconds of r0's NAPI kthreads (where the program runs) and ksoftirqd.
    pub relay_cpu_secs: f64,
    /// `relay_cpu_secs` per delivered packet, in ns.
    pub relay_cpu_ns_per_pkt: f64,
    /// `relay_cpu_secs / secs`: how many CPUs the relay side kept busy.
    pub relay_cores_busy: f64,
    /// Delivered packets per relay CPU second: what one fully busy core would forward.
    pub pps_per_relay_core: f64,
    /// The program's own ns per run under this load (BPF run-time statistics).
    pub inprog_ns_per_pkt: Option<f64>,
    pub inprog_runs: u64,
    /// CPU seconds of the generator threads together.
    pub generator_cpu_secs: f64,
    /// Busy CPU seconds of the whole machine meanwhile.
    pub machine_busy_secs: f64,
}

/// The multi-core runs: a testbed of its own (2-queue veths), every queue count in the plan.
pub fn run(plan: &Plan, log: fn(&str)) -> Result<Vec<McRun>> {
    ensure!(
        plan.queues.iter().all(|q| (1..=MAX_QUEUES).contains(q)),
        "queue counts are 1 or 2 (the veths have {MAX_QUEUES})"
    );
    ensure!(
        plan.streams >= 2,
        "at least 2 flows (one per generator thread)"
    );
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    let t = Topo::build_with(MAX_QUEUES)?;
    let threads = cpu::cpus().min(MAX_QUEUES as usize) as u32;
    let flows: Vec<(u16, u16)> = (0..plan.streams)
        .map(|i| (10_000 + i as u16, 30_000 + 2 * i as u16))
        .collect();
    let mut out = vec![];
    for &q in &plan.queues {
        // Nothing is attached to r0 here: the queue count changes on an idle device. veth
        // refuses XDP on a device with fewer receive queues than its peer has transmit
        // queues (ENOSPC), so g0 (whose own transmit queues nothing here uses: the generator
        // hands frames to r0 directly) goes down to Q as well.
        let qs = q.to_string();
        t.sender.exec("ethtool", &["-L", "g0", "tx", &qs])?;
        t.relay
            .exec("ethtool", &["-L", "r0", "rx", &qs, "tx", &qs])?;
        let m = Meter {
            t: &t,
            q,
            threads,
            flows: &flows,
            secs: plan.secs,
        };
        {
            let sink = t.relay.run(|| topo::attach(progs::COUNT_DROP, "r0"))??;
            let napi = topo::threaded_napi_per_queue(&t.relay, "r0", cpu::RT_PRIO)?;
            let r = m.drive("generator_ceiling", &napi, progs::COUNT_DROP, &|| {
                tput::count(&sink)
            })?;
            log(&format!("multicore: {r:?}"));
            out.push(r);
        }
        {
            let _b = t.relay.run(|| topo::attach(progs::SWAP_TX, "r0"))??;
            let napi = topo::threaded_napi_per_queue(&t.relay, "r0", cpu::RT_PRIO)?;
            let r = m.drive("xdp_baseline", &napi, progs::SWAP_TX, &|| {
                Ok(t.delivered()?.0)
            })?;
            log(&format!("multicore: {r:?}"));
            out.push(r);
        }
        {
            let mut direct = DirectRelay::attach(&t, plan.streams.max(1024))?;
            for (i, f) in flows.iter().enumerate() {
                direct.install_flow(i, *f)?;
            }
            let napi = topo::threaded_napi_per_queue(&t.relay, "r0", cpu::RT_PRIO)?;
            let r = m.drive(
                "relay_xdp_direct",
                &napi,
                relay_common::PROGRAM_NAME,
                &|| Ok(t.delivered()?.1),
            )?;
            log(&format!("multicore: {r:?}"));
            out.push(r);
        }
    }
    Ok(out)
}

struct Meter<'a> {
    t: &'a Topo,
    q: u32,
    threads: u32,
    flows: &'a [(u16, u16)],
    secs: f64,
}

impl Meter<'_> {
    /// One run: every generator thread sends its flow group for `secs`, bounded in frames.
    fn drive(
        &self,
        variant: &str,
        napi: &[u32],
        prog: &str,
        delivered: &dyn Fn() -> Result<u64>,
    ) -> Result<McRun> {
        let soft = cpu::ksoftirqd_pids();
        let q0 = self.queue_packets()?;
        let p0 = tput::prog_stats(prog);
        let (d0, r0, m0) = (
            delivered()?,
            relay_cpu(napi, &soft),
            cpu::machine_busy_secs(),
        );
        let n = self.threads as usize;
        let sender = &self.t.sender;
        let load = generator::Load::host();
        let (secs, cpus) = (self.secs, cpu::cpus());
        let groups: Vec<Vec<(u16, u16)>> = (0..n)
            .map(|k| self.flows.iter().skip(k).step_by(n).copied().collect())
            .collect();
        let sent: Vec<generator::Sent> = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .iter()
                .enumerate()
                .map(|(k, g)| {
                    let load = &load;
                    s.spawn(move || {
                        sender.run(|| {
                            generator::send_on(
                                RELAY_A,
                                g,
                                load,
                                secs,
                                40_000_000,
                                (k % cpus, cpu::RT_PRIO_GEN_SHARED),
                            )
                        })?
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("generator thread panicked"))?
                })
                .collect::<Result<Vec<_>>>()
        })?;
        std::thread::sleep(Duration::from_millis(300));
        let (d1, r1, m1) = (
            delivered()?,
            relay_cpu(napi, &soft),
            cpu::machine_busy_secs(),
        );
        let p1 = tput::prog_stats(prog);
        let q1 = self.queue_packets()?;
        let frames: u64 = sent.iter().map(|s| s.frames).sum();
        let wall = sent.iter().map(|s| s.secs).fold(0.0, f64::max);
        let got = d1 - d0;
        let relay_cpu_secs = r1 - r0;
        let (inprog_ns_per_pkt, inprog_runs) = if p1.1 > p0.1 {
            (
                Some((p1.0 - p0.0).as_nanos() as f64 / (p1.1 - p0.1) as f64),
                p1.1 - p0.1,
            )
        } else {
            (None, 0)
        };
        let per = |x: f64| if got > 0 { x / got as f64 } else { 0.0 };
        Ok(McRun {
            variant: variant.to_owned(),
            queues: self.q,
            generator_threads: self.threads,
            flows: self.flows.len() as u32,
            sent: frames,
            delivered: got,
            secs: wall,
            sent_pps: frames as f64 / wall,
            delivered_pps: got as f64 / wall,
            loss: if frames > 0 {
                1.0 - got as f64 / frames as f64
            } else {
                0.0
            },
            per_queue_packets: q1
                .iter()
                .zip(q0.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            relay_cpu_secs,
            relay_cpu_ns_per_pkt: per(relay_cpu_secs * 1e9),
            relay_cores_busy: relay_cpu_secs / wall,
            pps_per_relay_core: if relay_cpu_secs > 0.0 {
                got as f64 / relay_cpu_secs
            } else {
                0.0
            },
            inprog_ns_per_pkt,
            inprog_runs,
            generator_cpu_secs: sent.iter().map(|s| s.thread_cpu_secs).sum(),
            machine_busy_secs: m1 - m0,
        })
    }

    /// `rx_queue_<k>_xdp_packets` of r0, k = 0.. (what XDP saw per queue since r0 was made).
    fn queue_packets(&self) -> Result<Vec<u64>> {
        let out = Command::new("ip")
            .args(["netns", "exec", self.t.relay.name(), "ethtool", "-S", "r0"])
            .output()
            .context("ethtool -S r0")?;
        ensure!(out.status.success(), "ethtool -S r0 failed");
        Ok(parse_queue_packets(&String::from_utf8_lossy(&out.stdout)))
    }
}

fn relay_cpu(napi: &[u32], soft: &[u32]) -> f64 {
    cpu::sum_cpu(napi) + cpu::sum_cpu(soft)
}

/// The `rx_queue_<k>_xdp_packets` counters of `ethtool -S` output, in queue order.
fn parse_queue_packets(stats: &str) -> Vec<u64> {
    let mut v: Vec<(u32, u64)> = stats
        .lines()
        .filter_map(|l| {
            let (name, val) = l.trim().split_once(':')?;
            let k = name
                .strip_prefix("rx_queue_")?
                .strip_suffix("_xdp_packets")?;
            Some((k.parse().ok()?, val.trim().parse().ok()?))
        })
        .collect();
    v.sort_unstable();
    v.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_counters_are_read_in_queue_order() {
        let s = "NIC statistics:\n     peer_ifindex: 2\n     rx_queue_1_xdp_packets: 7\n     rx_queue_1_xdp_bytes: 900\n     rx_queue_0_xdp_packets: 5\n     tx_queue_0_xdp_xmit: 3\n";
        assert_eq!(parse_queue_packets(s), vec![5, 7]);
    }
}
