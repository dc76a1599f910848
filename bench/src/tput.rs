//! Throughput in namespaces (topo.rs), side by side in one run: the generator's ceiling (into
//! a drop program), the bare XDP baseline, our relay (daemon, sessions through its API,
//! latched), the same relay program loaded directly at 1 to 1M installed legs (the scaling
//! curve), a recvmmsg/sendmmsg relay and rtpengine's userspace daemon (ng offer/answer).
use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use aya::{Ebpf, maps::PerCpuArray, programs::links::FdLink};
use relay_common::{Endpoint, leg::Direction};
use relay_ctl::{
    api::{CreateSession, SideRequest, StreamRequest},
    client::ApiClient,
    dataplane::{DataPlane, EgressMap, XdpModeChoice, attach_xdp, load, relay_program},
    netlink::ifindex,
};
use relay_testbed::{DaemonProcess, netns_path};
use serde::Serialize;

use crate::{
    cpu, generator, progs,
    rtpengine::Rtpengine,
    topo::{self, GEN_IP, RELAY_A, RELAY_B, SINK_IP, Topo},
};

#[derive(Clone, Copy)]
pub struct Plan {
    /// Streams (one RTP leg each carrying traffic) for the side-by-side variants.
    pub streams: u32,
    /// Seconds of traffic per variant.
    pub secs: f64,
    /// Installed legs for the scaling curve (traffic over min(legs, `streams`) of them).
    pub scaling_legs: &'static [u32],
}

#[derive(Serialize, Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub legs_installed: u32,
    pub flows: u32,
    pub sent: u64,
    pub delivered: u64,
    pub secs: f64,
    pub sent_pps: f64,
    pub delivered_pps: f64,
    /// 1 - delivered / sent.
    pub loss: f64,
    /// CPU seconds on the relay side: r0's NAPI kthread (XDP, or the stack's receive path),
    /// the relay's process if any, and ksoftirqd.
    pub cpu_secs: f64,
    /// `cpu_secs` per delivered packet, in ns.
    pub cpu_ns_per_pkt: f64,
    /// CPU seconds of the generator thread (its own CPU).
    pub generator_cpu_secs: f64,
    /// Busy CPU seconds of the whole machine meanwhile (other work on a shared host shows here).
    pub machine_busy_secs: f64,
    /// The XDP program's own time per run under this load, from the kernel's accounting
    /// (`run_time_ns / run_cnt`, BPF_ENABLE_STATS), next to BPF_PROG_RUN's number.
    pub inprog_ns_per_pkt: Option<f64>,
    /// Runs of that program during the load.
    pub inprog_runs: u64,
    pub note: String,
}

/// (run time, runs) summed over every loaded program called `name`: only the one under load
/// moves during a run, so the deltas are its own.
pub fn prog_stats(name: &str) -> (Duration, u64) {
    // The kernel keeps 15 bytes of a program's name (BPF_OBJ_NAME_LEN).
    let name = &name[..name.len().min(15)];
    let mut t = Duration::ZERO;
    let mut n = 0;
    for info in aya::programs::loaded_programs().filter_map(|i| i.ok()) {
        if info.name_as_str() == Some(name) {
            t += info.run_time();
            n += info.run_count();
        }
    }
    (t, n)
}

pub fn count(e: &Ebpf) -> Result<u64> {
    let m: PerCpuArray<_, u64> =
        PerCpuArray::try_from(e.map(progs::COUNT_MAP).context("count map")?)?;
    Ok(m.get(&0, 0)?.iter().sum())
}

/// Drive `flows` at `dst` for `secs`, counting what `delivered` reports before and after.
#[allow(clippy::too_many_arguments)]
pub fn drive(
    t: &Topo,
    name: &str,
    dst: Ipv4Addr,
    flows: &[(u16, u16)],
    load: &generator::Load,
    secs: f64,
    delivered: &dyn Fn() -> Result<u64>,
    relay_pids: &[u32],
    legs_installed: u32,
    xdp_prog: Option<&str>,
    note: &str,
) -> Result<Variant> {
    let soft = cpu::ksoftirqd_pids();
    let p0 = xdp_prog.map(prog_stats);
    let (d0, s0, r0, m0) = (
        delivered()?,
        cpu::sum_cpu(&soft),
        cpu::sum_cpu(relay_pids),
        cpu::machine_busy_secs(),
    );
    let sent = t
        .sender
        .run(|| generator::send(dst, flows, load, secs, 50_000_000))??;
    // Frames in flight (queues, the userspace relays' socket buffers) arrive shortly after.
    std::thread::sleep(Duration::from_millis(300));
    let (d1, s1, r1, m1) = (
        delivered()?,
        cpu::sum_cpu(&soft),
        cpu::sum_cpu(relay_pids),
        cpu::machine_busy_secs(),
    );
    let p1 = xdp_prog.map(prog_stats);
    let (inprog_ns_per_pkt, inprog_runs) = match (p0, p1) {
        (Some((t0, n0)), Some((t1, n1))) if n1 > n0 => (
            Some((t1 - t0).as_nanos() as f64 / (n1 - n0) as f64),
            n1 - n0,
        ),
        _ => (None, 0),
    };
    let got = d1 - d0;
    let cpu_secs = (r1 - r0) + (s1 - s0);
    let v = Variant {
        name: name.to_owned(),
        legs_installed,
        flows: flows.len() as u32,
        sent: sent.frames,
        delivered: got,
        secs: sent.secs,
        sent_pps: sent.frames as f64 / sent.secs,
        delivered_pps: got as f64 / sent.secs,
        loss: if sent.frames > 0 {
            1.0 - got as f64 / sent.frames as f64
        } else {
            0.0
        },
        cpu_secs,
        cpu_ns_per_pkt: if got > 0 {
            cpu_secs * 1e9 / got as f64
        } else {
            0.0
        },
        generator_cpu_secs: sent.thread_cpu_secs,
        machine_busy_secs: m1 - m0,
        inprog_ns_per_pkt,
        inprog_runs,
        note: note.to_owned(),
    };
    Ok(v)
}

pub struct Outcome {
    pub variants: Vec<Variant>,
    pub scaling: Vec<Variant>,
}

pub fn run(
    t: &Topo,
    plan: Plan,
    relay_ctl: &Path,
    self_exe: &Path,
    log: fn(&str),
) -> Result<Outcome> {
    let mut variants = vec![];
    let streams = plan.streams;
    // The kernel's per-program time accounting, for as long as the runs last. It costs every
    // XDP program run (two clock reads), the baseline's as much as the relay's.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    // Side-by-side flows: source ports 10000+i; destination ports per variant.
    let seq_flows: Vec<(u16, u16)> = (0..streams)
        .map(|i| (10_000 + i as u16, 30_000 + 2 * i as u16))
        .collect();

    // 1. The generator's ceiling: everything it sends dropped at r0's driver.
    {
        let sink = t.relay.run(|| topo::attach(progs::COUNT_DROP, "r0"))??;
        let napi = topo::threaded_napi(&t.relay, "r0")?;
        let v = drive(
            t,
            "generator_ceiling",
            RELAY_A,
            &seq_flows,
            &generator::Load::host(),
            plan.secs,
            &|| count(&sink),
            &napi,
            0,
            Some(progs::COUNT_DROP),
            "bench_count_drop on r0: the most the generator delivers into the relay namespace",
        )?;
        log(&format!("tput: {v:?}"));
        variants.push(v);
    }
    // 2. The bare XDP baseline: MAC swap + XDP_TX on r0, counted back at g0.
    {
        let _b = t.relay.run(|| topo::attach(progs::SWAP_TX, "r0"))??;
        let napi = topo::threaded_napi(&t.relay, "r0")?;
        let v = drive(
            t,
            "xdp_baseline",
            RELAY_A,
            &seq_flows,
            &generator::Load::host(),
            plan.secs,
            &|| Ok(t.delivered()?.0),
            &napi,
            0,
            Some(progs::SWAP_TX),
            "bench_swap_tx on r0 (XDP_TX back to g0)",
        )?;
        log(&format!("tput: {v:?}"));
        variants.push(v);
    }
    // 3. Our relay: the daemon, sessions through its API, latched by a first packet each.
    match relay_daemon(t, plan, relay_ctl) {
        Ok(v) => {
            log(&format!("tput: {v:?}"));
            variants.push(v);
        }
        Err(e) => bail!("our relay (daemon): {e:#}"),
    }
    // 4. The scaling curve: the relay program loaded directly, legs installed straight into
    //    its map (the daemon's port range cannot reach 1M legs), traffic over the first flows.
    let scaling = scaling(t, plan, log)?;
    // 5. and 6. Userspace relays: r0 gets NAPI without XDP so the stack receives.
    topo::napi_without_xdp(&t.relay, "r0")?;
    match mmsg_relay(t, plan, self_exe) {
        Ok(v) => {
            log(&format!("tput: {v:?}"));
            variants.push(v);
        }
        Err(e) => bail!("recvmmsg relay: {e:#}"),
    }
    match rtpengine(t, plan) {
        Ok(v) => {
            log(&format!("tput: {v:?}"));
            variants.push(v);
        }
        Err(e) => bail!("rtpengine: {e:#}"),
    }
    Ok(Outcome { variants, scaling })
}

/// One datagram from GEN_IP:sport to RELAY_A:dport per flow, `n` times (latching, learning).
pub fn latch(t: &Topo, flows: &[(u16, u16)], n: u32) -> Result<()> {
    t.sender.run(|| -> Result<()> {
        for &(s, d) in flows {
            let sock = std::net::UdpSocket::bind((GEN_IP, s))
                .with_context(|| format!("bind {GEN_IP}:{s}"))?;
            for _ in 0..n {
                sock.send_to(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], (RELAY_A, d))?;
            }
            // Paced: a burst would overflow the veth's 256-frame ring.
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    })?
}

const API_PORT: u16 = 19_907;
const BPFFS_ROOT: &str = "/sys/fs/bpf/media-relay-bench";

/// Our daemon in the relay namespace with `streams` sessions created through its HTTP API,
/// side a of each latched into XDP by a first datagram from the generator namespace.
pub struct RelayDaemon {
    pub daemon: DaemonProcess,
    /// (generator source port, side a's relay port) per stream.
    pub flows: Vec<(u16, u16)>,
    pub api: SocketAddr,
    _state: RemoveOnDrop,
}

impl RelayDaemon {
    pub fn start(t: &Topo, streams: u32, relay_ctl: &Path) -> Result<RelayDaemon> {
        RelayDaemon::start_with(t, streams, relay_ctl, &[], 0)
    }

    /// `start` with `extra` daemon options and `spare_pairs` more port pairs in the range
    /// (TURN allocations take theirs from the same allocator).
    pub fn start_with(
        t: &Topo,
        streams: u32,
        relay_ctl: &Path,
        extra: &[String],
        spare_pairs: u32,
    ) -> Result<RelayDaemon> {
        let name = format!("bench{}", std::process::id());
        let state = std::env::temp_dir().join(format!("mr-bench-state-{name}.json"));
        let api: SocketAddr = ([127, 0, 0, 1], API_PORT).into();
        let args: Vec<String> = [
            "--iface",
            "r0",
            "--iface",
            "r1",
            "--api-listen",
            &api.to_string(),
            "--port-min",
            "30000",
            "--port-max",
            &(30_000 + 2 * (streams + spare_pairs) + 1).to_string(),
            "--max-legs",
            &(4 * streams + 64).to_string(),
            "--xdp-mode",
            "native",
            // Sessions wait idle while the others are created (minutes for 10k in a TCG
            // guest) and between measured runs: they must not expire meanwhile.
            "--timeout-secs",
            "3600",
            "--silent-timeout-secs",
            "3600",
            "--state-file",
            &state.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
        .collect();
        let daemon = DaemonProcess::start_with(
            relay_ctl,
            &t.relay,
            Path::new(BPFFS_ROOT),
            &name,
            &args,
            true,
        )?;
        let state_guard = RemoveOnDrop(vec![state.clone(), state.with_extension("json.lock")]);
        let flows = t.relay.run(|| -> Result<Vec<(u16, u16)>> {
            let c = ApiClient::new(api);
            let mut flows = vec![];
            for i in 0..streams {
                let s = c
                    .create_session(CreateSession {
                        call_id: format!("bench-{i}"),
                        policy: None,
                        answered: Some(true),
                        streams: vec![StreamRequest {
                            media: None,
                            a: SideRequest {
                                peer: Some((GEN_IP, 10_000 + i as u16).into()),
                                rtcp_peer: None,
                                relay_addr: Some(RELAY_A.into()),
                            },
                            b: SideRequest {
                                peer: Some((SINK_IP, 20_000 + i as u16).into()),
                                rtcp_peer: None,
                                relay_addr: Some(RELAY_B.into()),
                            },
                        }],
                    })
                    .map_err(|e| anyhow!("creating session {i}: {e}"))?;
                let leg = s.streams[0]
                    .legs
                    .iter()
                    .find(|l| l.side == "a")
                    .context("no side a")?;
                flows.push((10_000 + i as u16, leg.relay.port()));
            }
            Ok(flows)
        })??;
        // Generous: a TCG guest latches 10k legs slowly.
        let deadline = Instant::now() + Duration::from_secs(30 + u64::from(streams) / 50);
        let mut waiting = flows.clone();
        loop {
            // (Re)send a latching datagram for every flow whose leg is not in XDP yet.
            latch(t, &waiting, 1)?;
            std::thread::sleep(Duration::from_millis(300));
            let latched: Vec<u16> = t.relay.run(|| -> Result<Vec<u16>> {
                let all = ApiClient::new(api)
                    .get_sessions()
                    .map_err(|e| anyhow!("{e}"))?;
                Ok(all
                    .iter()
                    .flat_map(|s| s.streams[0].legs.iter())
                    .filter(|l| l.side == "a" && l.kernel)
                    .map(|l| l.relay.port())
                    .collect())
            })??;
            waiting.retain(|(_, d)| !latched.contains(d));
            let in_kernel = streams as usize - waiting.len();
            if waiting.is_empty() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "only {in_kernel} of {streams} sessions latched into XDP in time:\n{}",
                daemon.log()
            );
        }
        Ok(RelayDaemon {
            daemon,
            flows,
            api,
            _state: state_guard,
        })
    }

    /// Packets the daemon reports XDP forwarded so far (its data-plane statistics).
    pub fn kernel_forwarded(&self, t: &Topo) -> Result<u64> {
        let api = self.api;
        t.relay.run(|| {
            ApiClient::new(api)
                .get_stats()
                .map(|s| s.forwarded_kernel_packets)
                .map_err(|e| anyhow!("{e}"))
        })?
    }
}

fn relay_daemon(t: &Topo, plan: Plan, relay_ctl: &Path) -> Result<Variant> {
    let d = RelayDaemon::start(t, plan.streams, relay_ctl)?;
    let mut pids = topo::threaded_napi(&t.relay, "r0")?;
    pids.push(d.daemon.pid());
    drive(
        t,
        "relay_xdp",
        RELAY_A,
        &d.flows,
        &generator::Load::host(),
        plan.secs,
        &|| Ok(t.delivered()?.1),
        &pids,
        4 * plan.streams,
        Some(relay_common::PROGRAM_NAME),
        "relay-ctl daemon, native XDP on r0 and r1, sessions via the HTTP API, latched; redirect r0 -> r1",
    )
}

/// The relay's program loaded directly (no daemon) in the relay namespace, natively on r0 and
/// r1 with both in its egress map; legs are written into its map from here through the fds.
pub struct DirectRelay {
    // Field order is drop order: the links go before the object.
    _links: [FdLink; 2],
    _egress: EgressMap,
    pub dp: DataPlane,
    _ebpf: Ebpf,
}

impl DirectRelay {
    pub fn attach(t: &Topo, max_legs: u32) -> Result<DirectRelay> {
        for dev in ["r0", "r1"] {
            t.relay.exec(
                "sysctl",
                &["-qw", &format!("net.ipv4.conf.{dev}.forwarding=1")],
            )?;
        }
        // Loaded and attached inside the relay namespace (ifindexes resolve there).
        t.relay.run(|| -> Result<DirectRelay> {
            let mut ebpf = load(max_legs)?;
            let dp = DataPlane::from_ebpf(&mut ebpf)?;
            let mut egress = EgressMap::from_ebpf(&mut ebpf)?;
            let (r0, r1) = (ifindex("r0")?, ifindex("r1")?);
            egress.add(r0)?;
            egress.add(r1)?;
            let prog = relay_program(&mut ebpf)?;
            let links = [
                attach_xdp(prog, "r0", r0, XdpModeChoice::Native)?.0,
                attach_xdp(prog, "r1", r1, XdpModeChoice::Native)?.0,
            ];
            Ok(DirectRelay {
                _links: links,
                _egress: egress,
                dp,
                _ebpf: ebpf,
            })
        })?
    }

    /// The leg for flow number `i`, (generator source port, relay port): GEN_IP:s ->
    /// RELAY_A:d forwarded from RELAY_B:d to SINK_IP:20000+i.
    pub fn install_flow(&mut self, i: usize, (s, d): (u16, u16)) -> Result<()> {
        let (key, v) = Direction {
            relay: Endpoint::v4(RELAY_A.octets(), d),
            latched: Endpoint::v4(GEN_IP.octets(), s),
            new_src: Endpoint::v4(RELAY_B.octets(), d),
            new_dst: Endpoint::v4(SINK_IP.octets(), 20_000 + i as u16),
            slot: i as u32 + 1,
        }
        .port_leg();
        self.dp.install_leg(&key, &v)?;
        Ok(())
    }
}

struct RemoveOnDrop(Vec<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The relay's program loaded directly: `legs` installed, traffic over `flows` of them.
fn scaling(t: &Topo, plan: Plan, log: fn(&str)) -> Result<Vec<Variant>> {
    let max = crate::percost::MAX_LEGS;
    let flows_n = plan.streams.min(4096);
    let flows: Vec<(u16, u16)> = (0..flows_n)
        .map(|i| (10_000 + i as u16, 30_000 + 2 * i as u16))
        .collect();
    let mut out = vec![];
    let mut direct = DirectRelay::attach(t, max)?;
    let napi = topo::threaded_napi(&t.relay, "r0")?;
    {
        let mut installed = 0u32;
        let mut active = 0usize;
        let mut filler = 0u32;
        for &target in plan.scaling_legs {
            // The legs carrying traffic first (as many as the target allows), then filler.
            while active < (flows_n.min(target.max(1))) as usize {
                direct.install_flow(active, flows[active])?;
                active += 1;
                installed += 1;
            }
            while installed < target {
                let (k, v) = crate::percost::filler_leg(filler);
                filler += 1;
                direct.dp.install_leg_unchecked(&k, &v)?;
                installed += 1;
            }
            let v = drive(
                t,
                "relay_xdp_direct",
                RELAY_A,
                &flows[..active],
                &generator::Load::host(),
                plan.secs,
                &|| Ok(t.delivered()?.1),
                &napi,
                installed,
                Some(relay_common::PROGRAM_NAME),
                "relay program loaded directly (no daemon), legs installed in its map; traffic over the first flows",
            )?;
            log(&format!(
                "scaling: {installed} legs: {:.0} pps",
                v.delivered_pps
            ));
            out.push(v);
        }
    }
    Ok(out)
}

fn mmsg_relay(t: &Topo, plan: Plan, self_exe: &Path) -> Result<Variant> {
    let flows: Vec<(u16, u16)> = (0..plan.streams)
        .map(|i| (10_000 + i as u16, 30_000 + 2 * i as u16))
        .collect();
    let legs_file =
        std::env::temp_dir().join(format!("relay-bench-mmsg-{}.legs", std::process::id()));
    let spec: String = flows
        .iter()
        .enumerate()
        .map(|(i, (_, d))| format!("{d} {}\n", SocketAddrV4::new(SINK_IP, 20_000 + i as u16)))
        .collect();
    std::fs::write(&legs_file, spec)?;
    let _rm = RemoveOnDrop(vec![legs_file.clone()]);
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", netns_path(t.relay.name()).display()))
        .arg(self_exe)
        .args(["mmsg-relay", "--legs"])
        .arg(&legs_file)
        .args([
            "--listen",
            &RELAY_A.to_string(),
            "--source",
            &RELAY_B.to_string(),
            "--max-secs",
            "120",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the mmsg relay")?;
    let guard = KillOnDrop(Some(child.id()));
    let mut err = BufReader::new(child.stderr.take().context("stderr")?);
    let mut line = String::new();
    err.read_line(&mut line)?;
    ensure!(line.contains("ready"), "mmsg relay: {line}");
    let mut pids = topo::threaded_napi(&t.relay, "r0")?;
    cpu::pin_all(child.id(), cpu::RELAY_CPU, cpu::RT_PRIO_USERSPACE);
    pids.push(child.id());
    let v = drive(
        t,
        "recvmmsg_relay",
        RELAY_A,
        &flows,
        &generator::Load::host(),
        plan.secs,
        &|| Ok(t.delivered()?.1),
        &pids,
        2 * plan.streams,
        None,
        "one thread, epoll + recvmmsg/sendmmsg (64 per call), one socket per leg side",
    )?;
    drop(guard);
    let _ = child.wait();
    Ok(v)
}

struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: our own child, not yet reaped (the caller waits after dropping this).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

pub const RTPENGINE_NG_PORT: u16 = 22_231;

fn rtpengine(t: &Topo, plan: Plan) -> Result<Variant> {
    let rtp = Rtpengine::start(
        &t.relay,
        &RELAY_A.to_string(),
        &RELAY_B.to_string(),
        RTPENGINE_NG_PORT,
        (40_000, 59_999),
        None,
    )?;
    let flows = t.relay.run(|| -> Result<Vec<(u16, u16)>> {
        let mut c = crate::ng::Client::new(([127, 0, 0, 1], RTPENGINE_NG_PORT).into())?;
        let mut flows = vec![];
        for i in 0..plan.streams {
            let from = SocketAddrV4::new(GEN_IP, 10_000 + i as u16);
            let to = SocketAddrV4::new(SINK_IP, 20_000 + i as u16);
            let (for_from, _) =
                c.offer_answer(&format!("bench-{i}"), from, to, Some(("pub", "priv")))?;
            ensure!(
                *for_from.ip() == RELAY_A,
                "rtpengine offered {for_from} to the caller"
            );
            flows.push((from.port(), for_from.port()));
        }
        Ok(flows)
    })??;
    latch(t, &flows, 3)?;
    std::thread::sleep(Duration::from_millis(300));
    let mut pids = topo::threaded_napi(&t.relay, "r0")?;
    cpu::pin_all(rtp.pid(), cpu::RELAY_CPU, cpu::RT_PRIO_USERSPACE);
    pids.push(rtp.pid());
    drive(
        t,
        "rtpengine",
        RELAY_A,
        &flows,
        &generator::Load::host(),
        plan.secs,
        &|| Ok(t.delivered()?.1),
        &pids,
        4 * plan.streams,
        None,
        "rtpengine-daemon (Debian), userspace only (--table=-1), all its threads on the relay CPU, calls via ng offer/answer",
    )
}
