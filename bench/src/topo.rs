//! The throughput testbed: generator -> relay -> sink, one veth pair per hop.
//!
//! ```text
//!  [gen ns]                   [relay ns]                      [sink ns]
//!  g0 198.18.10.2 <-veth-> r0 198.18.10.1
//!                           r1 198.18.20.1 <-veth-> s0 198.18.20.2
//! ```
//! g0 and s0 run `bench_count_drop` (native XDP): it counts what arrives and gives the veth
//! NAPI, which XDP_TX/REDIRECT into a veth needs on the receiving end. Neighbours are static
//! (the counting program would drop ARP).
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use aya::{Ebpf, maps::PerCpuArray, programs::XdpMode};
use relay_ctl::netlink::ifindex;
use relay_testbed::{Netns, mac, veth_queues};

use crate::progs;

pub const GEN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 2);
pub const RELAY_A: Ipv4Addr = Ipv4Addr::new(198, 18, 10, 1);
pub const RELAY_B: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 1);
pub const SINK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 2);
pub const G0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x02];
pub const R0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x10, 0x01];
pub const R1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x20, 0x01];
pub const S0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x20, 0x02];

pub struct Topo {
    // Drop order: the counters (XDP on g0/s0) first, then the namespaces.
    counters: Vec<Option<Ebpf>>,
    pub sender: Netns,
    pub sink: Netns,
    pub relay: Netns,
}

impl Topo {
    pub fn build() -> Result<Topo> {
        Topo::build_with(1)
    }

    /// The testbed with `queues` receive queues on every veth end (multicore.rs); with more
    /// than one, each counting sink's queue k has its NAPI thread on CPU k.
    pub fn build_with(queues: u32) -> Result<Topo> {
        let pid = std::process::id();
        let mut t = Topo {
            counters: vec![],
            sender: Netns::add(&format!("mr-bg{pid}"))?,
            sink: Netns::add(&format!("mr-bs{pid}"))?,
            relay: Netns::add(&format!("mr-br{pid}"))?,
        };
        veth_queues(
            (&t.sender, "g0", "198.18.10.2/24", &mac(G0_MAC)),
            (&t.relay, "r0", "198.18.10.1/24", &mac(R0_MAC)),
            queues,
        )?;
        veth_queues(
            (&t.relay, "r1", "198.18.20.1/24", &mac(R1_MAC)),
            (&t.sink, "s0", "198.18.20.2/24", &mac(S0_MAC)),
            queues,
        )?;
        // No IPv6 on the test links: router solicitations and DAD would otherwise reach the
        // counting programs, and the incumbent comparison checks counts exactly.
        for (ns, dev) in [
            (&t.sender, "g0"),
            (&t.relay, "r0"),
            (&t.relay, "r1"),
            (&t.sink, "s0"),
        ] {
            ns.exec(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")],
            )?;
        }
        t.relay.neigh_permanent(GEN_IP.into(), G0_MAC, "r0")?;
        t.relay.neigh_permanent(SINK_IP.into(), S0_MAC, "r1")?;
        t.sender.neigh_permanent(RELAY_A.into(), R0_MAC, "g0")?;
        t.sink.neigh_permanent(RELAY_B.into(), R1_MAC, "s0")?;
        // Sockets in the generator namespace (latching packets) send complete checksums.
        t.sender.exec("ethtool", &["-K", "g0", "tx", "off"])?;
        for (ns, dev) in [(&t.sender, "g0"), (&t.sink, "s0")] {
            let e = ns.run(|| attach(progs::COUNT_DROP, dev))??;
            t.counters.push(Some(e));
            // The counting sinks get their own NAPI threads on the relay's CPU, above
            // everything: left in softirq they would be deferred to ksoftirqd under
            // saturation and starve behind the relay's NAPI thread (what is delivered would
            // depend on where the kernel ran the sink); on the generator's CPU they would
            // slow the generator. Every variant pays the same few ns per delivered packet.
            if queues > 1 {
                threaded_napi_per_queue(ns, dev, crate::cpu::RT_PRIO_SINK)?;
            } else {
                threaded_napi_on(ns, dev, crate::cpu::RELAY_CPU, crate::cpu::RT_PRIO_SINK)?;
            }
        }
        Ok(t)
    }

    /// Frames counted at g0 and at s0 so far.
    pub fn delivered(&self) -> Result<(u64, u64)> {
        let read = |e: &Option<Ebpf>| -> Result<u64> {
            let e = e.as_ref().context("that counter was released")?;
            let m: PerCpuArray<_, u64> =
                PerCpuArray::try_from(e.map(progs::COUNT_MAP).context("count map")?)?;
            Ok(m.get(&0, 0)?.iter().sum())
        };
        Ok((read(&self.counters[0])?, read(&self.counters[1])?))
    }

    /// Frames counted at s0 so far (works with g0's counter released).
    pub fn sink_delivered(&self) -> Result<u64> {
        let e = self.counters[1].as_ref().context("s0's counter")?;
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(e.map(progs::COUNT_MAP).context("count map")?)?;
        Ok(m.get(&0, 0)?.iter().sum())
    }

    /// Detach g0's counting program for good: the generator namespace's sockets then receive
    /// (a TURN client's control exchange needs the server's answers). The generator does not
    /// need it (its XDP_TX goes into r0, whose NAPI is what counts); `delivered().0` then fails.
    pub fn release_gen_counter(&mut self) {
        self.counters[0] = None;
    }
}

/// Load a bench program and attach it natively to `dev` (call inside the device's namespace).
pub fn attach(name: &str, dev: &str) -> Result<Ebpf> {
    let mut e = progs::load(name)?;
    progs::program(&mut e, name)?
        .attach(ifindex(dev)?, XdpMode::Driver)
        .with_context(|| format!("attaching {name} to {dev} (native)"))?;
    Ok(e)
}

/// Give a veth NAPI without XDP (GRO requested), so it accepts frames redirected into its
/// peer and hands them to the stack: the userspace relays' receive side.
pub fn napi_without_xdp(ns: &Netns, dev: &str) -> Result<()> {
    ns.exec("ethtool", &["-K", dev, "gro", "off"])?;
    ns.exec("ethtool", &["-K", dev, "gro", "on"])
}

/// Run `dev`'s NAPI in its own kthread (threaded NAPI), pinned to the relay's CPU, and return
/// the kthreads' pids. XDP on veth otherwise runs in the sender's softirq, on the generator's
/// CPU; this way generator and relay each have a CPU and the relay's cost is its thread's.
/// Call after whatever creates the NAPI instance (attaching XDP, or requesting GRO).
pub fn threaded_napi(ns: &Netns, dev: &str) -> Result<Vec<u32>> {
    threaded_napi_on(ns, dev, crate::cpu::RELAY_CPU, crate::cpu::RT_PRIO)
}

/// `threaded_napi` on a given CPU and SCHED_FIFO priority.
pub fn threaded_napi_on(ns: &Netns, dev: &str, cpu: usize, prio: i32) -> Result<Vec<u32>> {
    let path = format!("/sys/class/net/{dev}/threaded");
    ns.exec("sh", &["-c", &format!("echo 0 > {path}")])?;
    let before = crate::cpu::napi_pids(dev);
    ns.exec("sh", &["-c", &format!("echo 1 > {path}")])?;
    let now = crate::cpu::napi_pids(dev);
    let mut mine: Vec<u32> = now
        .iter()
        .copied()
        .filter(|p| !before.contains(p))
        .collect();
    if mine.is_empty() {
        // Kernels before ~6.9 keep a NAPI's kthread when threading is turned off, and turning
        // it on again reuses it: no new thread appears, the existing ones are this device's.
        // (Another namespace's device of the same name would be included; the bench holds
        // the namespace-test lock, and the guest has only one.)
        mine = now;
    }
    anyhow::ensure!(!mine.is_empty(), "no NAPI kthread for {dev}");
    for &p in &mine {
        crate::cpu::pin_prio(p, cpu, prio);
    }
    Ok(mine)
}

/// Threaded NAPI for every receive queue of `dev`, queue k's kthread pinned to CPU k (modulo
/// the CPUs there are) at SCHED_FIFO `prio`; returns the pids in queue order. The kthreads
/// are named `napi/<dev>-<napi id>`, and veth adds its queues' NAPI instances in queue order,
/// so napi-id order is queue order.
pub fn threaded_napi_per_queue(ns: &Netns, dev: &str, prio: i32) -> Result<Vec<u32>> {
    let path = format!("/sys/class/net/{dev}/threaded");
    ns.exec("sh", &["-c", &format!("echo 0 > {path}")])?;
    let before = crate::cpu::napi_pids(dev);
    ns.exec("sh", &["-c", &format!("echo 1 > {path}")])?;
    let mut mine: Vec<(u64, u32)> = crate::cpu::napi_pids(dev)
        .into_iter()
        .filter(|p| !before.contains(p))
        .filter_map(|p| Some((crate::cpu::napi_id(p)?, p)))
        .collect();
    anyhow::ensure!(
        !mine.is_empty(),
        "no new NAPI kthread for {dev} (kernels before ~6.9 reuse them; the multi-queue runs need a newer one)"
    );
    mine.sort_unstable();
    let cpus = crate::cpu::cpus();
    for (k, &(_, p)) in mine.iter().enumerate() {
        crate::cpu::pin_prio(p, k % cpus, prio);
    }
    Ok(mine.into_iter().map(|(_, p)| p).collect())
}
