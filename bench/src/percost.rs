//! Per-packet cost through BPF_PROG_RUN with `repeat` (docs/design.md section 7): the relay's
//! paths next to the bare MAC-swap baseline, at growing numbers of installed legs.
//!
//! `repeat` runs the program again on the frame it has just rewritten. For the forward path
//! two legs point at each other (the rewritten frame is the other leg's input), so every
//! repetition is a full forward (lookup, latch check, FIB lookup, rewrite, counters); the TTL
//! the relay decrements bounds the chain, so one call repeats at most `FWD_REPEAT` times.
//! The reflector and STUN paths turn their input into a frame that is no longer a request, so
//! they run one packet per call and are compared with the baseline measured the same way.
//! TURN ChannelData chains the same way as legs: Strip's output (relayed address -> peer) is
//! addressed to a relayed port whose Add entry turns it back into the first ChannelData
//! (`turn_strip_add`: every other repetition strips, the others add), and two Renumber
//! entries point at each other (`turn_renumber`); each path alone also runs one packet per
//! call (`*_1`, next to `forward_redirect_1`).
use std::{net::IpAddr, time::Instant};

use anyhow::{Context, Result, bail, ensure};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use relay_common::{
    Counter, Endpoint, LegKey, LegValue,
    leg::{Direction, LEG_F_TURN},
    reflector::{DataPlaneConfig, reflector_payload},
    siphash::SipKey,
    turn::{ChannelKey, TurnAction, TurnValue},
};
use relay_ctl::{
    dataplane::{DataPlane, EgressMap, Reflector, TurnMaps, load, relay_program},
    netlink::ifindex,
};
use relay_testbed::Netns;
use serde::Serialize;

use crate::{frames, memory, progs};

/// Frames start with TTL 255; the relay passes a frame with TTL <= 1, so 254 forwards.
pub const FWD_REPEAT: u32 = 254;
/// Capacity the legs map is loaded with: room for 1M legs (a distinctive number, so the
/// map is found among the system's maps by name and size).
pub const MAX_LEGS: u32 = 1_048_573;

const B0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb0, 0x01];
const B1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb1, 0x01];
const RELAY_A: [u8; 4] = [198, 18, 1, 1];
const RELAY_B: [u8; 4] = [198, 18, 2, 1];
const CALLER: [u8; 4] = [198, 18, 1, 2];
/// Neighbours on b0 (for XDP_TX chains) and on b1 (for redirect chains).
const TX_HOSTS: [[u8; 4]; 2] = [[198, 18, 1, 3], [198, 18, 1, 4]];
const RD_HOSTS: [[u8; 4]; 2] = [[198, 18, 2, 2], [198, 18, 2, 3]];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xcc, 0x02];
const REFLECT_PORT: u16 = 4444;
const STUN_PORT: u16 = 3478;
/// TURN listen addresses of the ChannelData chains (own addresses, neighbours on b1: the
/// reflector's destinations must stay not-own, so these are others).
const TURN_HOSTS: [[u8; 4]; 2] = [[198, 18, 2, 4], [198, 18, 2, 5]];
const TURN_PORT: u16 = STUN_PORT;
const RELAYED_PORT: u16 = 49_152;
const CH_STRIP: u16 = 0x4001;
const CH_RENUMBER: [u16; 2] = [0x4002, 0x4003];
const KEY: [u8; 16] = [7; 16];
const KEY_ID: u16 = 1;

#[derive(Clone, Copy)]
pub struct Plan {
    /// Leg counts to measure at (ascending).
    pub legs: &'static [u32],
    /// Calls per path per leg count (the median is reported).
    pub runs: u32,
    /// Calls for the one-packet-per-call paths.
    pub single_runs: u32,
    /// Capacity of the legs map.
    pub max_legs: u32,
}

#[derive(Serialize, Clone)]
pub struct PathCost {
    pub legs: u32,
    pub path: String,
    /// Median ns per packet over `runs` calls.
    pub ns: f64,
    pub p10: f64,
    pub p90: f64,
    pub repeat: u32,
    pub runs: u32,
    /// The baseline this path is compared with ("baseline" at the same repeat).
    pub ratio_to_baseline: f64,
}

#[derive(Serialize, Clone)]
pub struct Memory {
    pub max_entries: u64,
    pub legs_installed: u32,
    pub legs_map_bytes: u64,
    pub leg_stats_bytes: u64,
    pub cpus: u32,
    /// (legs map + stats array) / max_entries.
    pub bytes_per_leg: f64,
    pub legs_map_bytes_per_leg: f64,
    /// One shared entry per leg (atomic adds), whatever the number of CPUs.
    pub leg_stats_bytes_per_leg: f64,
    /// Bytes per leg at other possible-CPU counts, computed from the map definitions and the
    /// measured numbers above.
    pub by_cpus: Vec<CpuProjection>,
}

/// Kernel memory per leg on a box with `cpus` possible CPUs.
#[derive(Serialize, Clone)]
pub struct CpuProjection {
    pub cpus: u32,
    /// This data plane: the legs hash map and the shared stats array do not grow with CPUs.
    pub bytes_per_leg: f64,
    /// The per-CPU stats array it replaced: 24 bytes per CPU plus the 8-byte per-CPU pointer
    /// of each array element.
    pub per_cpu_stats_bytes_per_leg: f64,
}

/// Possible-CPU counts the report projects to.
pub const PROJECTED_CPUS: [u32; 4] = [2, 16, 64, 256];

fn project(legs_per_leg: f64, stats_per_leg: f64) -> Vec<CpuProjection> {
    let stats_size = std::mem::size_of::<relay_common::LegStats>() as f64;
    PROJECTED_CPUS
        .iter()
        .map(|&cpus| CpuProjection {
            cpus,
            bytes_per_leg: legs_per_leg + stats_per_leg,
            per_cpu_stats_bytes_per_leg: legs_per_leg + 8.0 + stats_size * f64::from(cpus),
        })
        .collect()
}

#[derive(Serialize, Clone)]
pub struct Report {
    pub paths: Vec<PathCost>,
    pub memory: Option<Memory>,
    /// Seconds to install the legs of the largest size (map updates from userspace).
    pub fill_secs: f64,
}

/// The namespace the program runs "in": two relay links with permanent neighbours, so
/// bpf_fib_lookup answers from a real FIB.
fn netns() -> Result<Netns> {
    let ns = Netns::add(&format!("mr-bn-{}", std::process::id()))?;
    ns.stub_link("b0", B0_MAC, "bp0", &["198.18.1.1/24"])?;
    ns.stub_link("b1", B1_MAC, "bp1", &["198.18.2.1/24"])?;
    for name in ["b0", "b1"] {
        ns.exec(
            "sysctl",
            &["-qw", &format!("net.ipv4.conf.{name}.forwarding=1")],
        )?;
    }
    let hosts = TX_HOSTS
        .iter()
        .map(|h| (*h, "b0"))
        .chain(RD_HOSTS.iter().map(|h| (*h, "b1")))
        .chain(TURN_HOSTS.iter().map(|h| (*h, "b1")))
        .chain([(CALLER, "b0")]);
    for (h, dev) in hosts {
        ns.neigh_permanent(IpAddr::from(h), HOST_MAC, dev)?;
    }
    Ok(ns)
}

/// Two legs whose outputs are each other's inputs: a chain of forwards through `hosts`.
fn chain_legs(hosts: [[u8; 4]; 2], slots: [u32; 2]) -> [(LegKey, LegValue); 2] {
    let a = Endpoint::v4(hosts[0], 40_000);
    let b = Endpoint::v4(hosts[1], 40_002);
    let caller = Endpoint::v4(CALLER, 5004);
    let relay_b = Endpoint::v4(RELAY_B, 30_002);
    let leg = |relay, latched, new_src, new_dst, slot| {
        Direction {
            relay,
            latched,
            new_src,
            new_dst,
            slot,
        }
        .port_leg()
    };
    [
        leg(a, caller, relay_b, b, slots[0]),
        leg(b, relay_b, caller, a, slots[1]),
    ]
}

/// The TURN entries of the ChannelData chains (stats slots 5-8), and the relayed port's flag
/// leg. Strip/Add: ChannelData from the caller to TURN_HOSTS[0] leaves from RELAY_B:6000 to
/// the relayed TURN_HOSTS[1]:49152, whose Add entry for that peer makes it the first
/// ChannelData again. Renumber: TURN_HOSTS[0] and [1] hand ChannelData to each other.
fn turn_chains(turn: &mut TurnMaps, dp: &mut DataPlane) -> Result<()> {
    let [h0, h1] = TURN_HOSTS.map(|h| Endpoint::v4(h, TURN_PORT));
    let caller = Endpoint::v4(CALLER, 5004);
    let peer = Endpoint::v4(RELAY_B, 6000);
    let relayed = Endpoint::v4(TURN_HOSTS[1], RELAYED_PORT);
    let value = |new_src, new_dst, channel: u16, action: TurnAction, slot| TurnValue {
        new_src,
        new_dst,
        expires_ns: u64::MAX,
        slot,
        channel_be: channel.to_be(),
        action: action as u16,
    };
    let key = |server, client, channel: u16| ChannelKey {
        server,
        client,
        channel_be: channel.to_be(),
        _pad: 0,
    };
    let err = |e: relay_ctl::error::Error| anyhow::anyhow!("TURN entry: {e}");
    turn.set_channel(
        &key(h0, caller, CH_STRIP),
        &value(peer, relayed, 0, TurnAction::Strip, 5),
    )
    .map_err(err)?;
    turn.set_peer(
        &LegKey::channel(relayed, peer),
        &value(caller, h0, CH_STRIP, TurnAction::Add, 6),
    )
    .map_err(err)?;
    dp.install_leg(
        &LegKey::port(relayed),
        &LegValue {
            flags: LEG_F_TURN,
            ..LegValue::default()
        },
    )?;
    let other = Endpoint::v4(RELAY_B, 5006);
    let [c0, c1] = CH_RENUMBER;
    turn.set_channel(
        &key(h0, caller, c0),
        &value(other, h1, c1, TurnAction::Renumber, 7),
    )
    .map_err(err)?;
    turn.set_channel(
        &key(h1, other, c1),
        &value(caller, h0, c0, TurnAction::Renumber, 8),
    )
    .map_err(err)?;
    Ok(())
}

/// ChannelData on `channel` (the RTP payload, a multiple of 4 bytes: no padding) from the
/// caller to TURN_HOSTS[0]'s TURN port.
fn channel_data_frame(channel: u16, ttl: u8, rtp: &[u8]) -> Result<Vec<u8>> {
    let mut m = channel.to_be_bytes().to_vec();
    m.extend_from_slice(&(rtp.len() as u16).to_be_bytes());
    m.extend_from_slice(rtp);
    frames::udp4(
        (HOST_MAC, B0_MAC),
        (CALLER, 5004),
        (TURN_HOSTS[0], TURN_PORT),
        ttl,
        &m,
        false,
    )
}

/// Filler leg number `i`: a relay address in 198.19.0.0/16 and a port, never hit.
pub fn filler_leg(i: u32) -> (LegKey, LegValue) {
    let addr = [198, 19, (i >> 16) as u8, (i >> 8) as u8];
    let port = 10_000 + (i & 0xff) as u16 * 8;
    Direction {
        relay: Endpoint::v4(addr, port),
        latched: Endpoint::v4([203, 0, 113, (i & 0x7f) as u8], 5004),
        new_src: Endpoint::v4(RELAY_B, port),
        new_dst: Endpoint::v4([198, 51, 100, (i & 0x7f) as u8], 6004),
        slot: 0,
    }
    .port_leg()
}

fn median_p10_p90(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

struct Case<'a> {
    path: &'static str,
    prog: &'a Xdp,
    frame: Vec<u8>,
    repeat: u32,
    want: u32,
    /// Counter that must rise by exactly one per packet (None for the baseline).
    counter: Option<Counter>,
}

fn measure(case: &Case, ingress: u32, runs: u32, dp: &DataPlane) -> Result<Vec<f64>> {
    let ctx = &progs::xdp_md(case.frame.len(), ingress);
    let before = match case.counter {
        Some(c) => dp.counter(c)?,
        None => 0,
    };
    let counters_before = dp.counters()?;
    let mut out = vec![0u8; case.frame.len() + 256];
    let mut samples = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let r = case
            .prog
            .test_run(TestRunOptions {
                data_in: Some(&case.frame),
                data_out: Some(&mut out),
                ctx_in: Some(ctx),
                repeat: case.repeat,
                ..Default::default()
            })
            .with_context(|| format!("test_run {}", case.path))?;
        if r.return_value != case.want {
            // Which counters moved says why (the program counts every verdict's reason).
            let moved: Vec<String> = dp
                .counters()?
                .iter()
                .zip(&counters_before)
                .filter(|(a, b)| a.1 != b.1)
                .map(|(a, b)| format!("{} +{}", a.0.name(), a.1 - b.1))
                .collect();
            bail!(
                "{}: verdict {} want {} (counters: {})",
                case.path,
                r.return_value,
                case.want,
                moved.join(", ")
            );
        }
        samples.push(r.duration.as_nanos() as f64);
    }
    if let Some(c) = case.counter {
        let delta = dp.counter(c)? - before;
        let want = u64::from(runs) * u64::from(case.repeat);
        ensure!(
            delta == want,
            "{}: counter {} rose by {delta}, want {want}: not every repetition took the path",
            case.path,
            c.name()
        );
    }
    Ok(samples)
}

/// Run the per-packet measurements. Needs root (namespace, BPF).
pub fn run(plan: Plan, log: fn(&str)) -> Result<Report> {
    let ns = netns()?;
    ns.run(|| run_in_ns(plan, log))
        .context("per-packet cost namespace")?
}

fn run_in_ns(plan: Plan, log: fn(&str)) -> Result<Report> {
    let mut ebpf = load(plan.max_legs).context("loading the relay")?;
    let mut dp = DataPlane::from_ebpf(&mut ebpf)?;
    let mut egress = EgressMap::from_ebpf(&mut ebpf)?;
    let (b0, b1) = (ifindex("b0")?, ifindex("b1")?);
    egress.add(b0)?;
    egress.add(b1)?;
    let mut rfl = Reflector::from_ebpf(&mut ebpf)?;
    let now = 1_800_000_000u64;
    rfl.set_config(&DataPlaneConfig {
        reflector_port: REFLECT_PORT,
        stun_port: STUN_PORT,
        reflect_rate: 0,
        reflect_burst: 0,
        turn_port: TURN_PORT,
        _pad: 0,
    })?;
    rfl.set_key(KEY_ID, KEY)?;
    rfl.set_clock(now)?;
    for a in [RELAY_A, RELAY_B].iter().chain(&TURN_HOSTS) {
        rfl.add_own_addr(IpAddr::from(*a))?;
    }
    let mut turn = TurnMaps::from_ebpf(&mut ebpf).map_err(|e| anyhow::anyhow!("{e}"))?;
    turn_chains(&mut turn, &mut dp)?;
    let mut base_obj = progs::load(progs::SWAP_TX)?;
    let baseline = progs::program(&mut base_obj, progs::SWAP_TX)?;
    let relay = relay_program(&mut ebpf)?;

    // The chains' own legs (slots 1-4, and the TURN relayed port's flag) count towards the
    // installed legs.
    let mut installed = 1u32;
    for (k, v) in chain_legs(RD_HOSTS, [1, 2])
        .iter()
        .chain(&chain_legs(TX_HOSTS, [3, 4]))
    {
        dp.install_leg(k, v)?;
        installed += 1;
    }

    let rtp = frames::rtp_payload();
    let chain_frame = |hosts: [[u8; 4]; 2]| {
        frames::udp4(
            (HOST_MAC, B0_MAC),
            (CALLER, 5004),
            (hosts[0], 40_000),
            255,
            &rtp,
            false,
        )
    };
    let fwd_rd = chain_frame(RD_HOSTS)?;
    let fwd_tx = chain_frame(TX_HOSTS)?;
    let pass = frames::udp4(
        (HOST_MAC, B0_MAC),
        (CALLER, 5004),
        (RELAY_A, 50_000),
        255,
        &rtp,
        false,
    )?;
    let inner: Vec<u8> = (0..160u32).map(|i| (i * 13 + 1) as u8).collect();
    let ticket = reflector_payload(
        &SipKey::from_bytes(KEY),
        KEY_ID,
        &Endpoint::v4(RELAY_B, 30_010),
        &Endpoint::v4(RD_HOSTS[0], 40_010),
        (now + 3600) as u32,
        &Endpoint::v4(CALLER, 5004),
        &inner,
    );
    let reflect = frames::udp4(
        (HOST_MAC, B0_MAC),
        (CALLER, 5004),
        (RELAY_A, REFLECT_PORT),
        64,
        &ticket,
        false,
    )?;
    let stun = frames::udp4(
        (HOST_MAC, B0_MAC),
        (CALLER, 40_123),
        (RELAY_A, STUN_PORT),
        64,
        &frames::stun_binding_request(),
        false,
    )?;

    let turn_chain = channel_data_frame(CH_STRIP, 255, &rtp)?;
    let turn_renumber = channel_data_frame(CH_RENUMBER[0], 255, &rtp)?;
    let turn_strip = channel_data_frame(CH_STRIP, 64, &rtp)?;
    let turn_add = frames::udp4(
        (HOST_MAC, B0_MAC),
        (RELAY_B, 6000),
        (TURN_HOSTS[1], RELAYED_PORT),
        64,
        &rtp,
        false,
    )?;

    let mut paths = vec![];
    let mut fill_secs = 0.0;
    for &target in plan.legs {
        let start = Instant::now();
        let mut i = installed;
        while installed < target {
            let (k, v) = filler_leg(i);
            i += 1;
            match dp.install_leg_unchecked(&k, &v) {
                Ok(()) => installed += 1,
                Err(e) => bail!("installing leg {installed} of {target}: {e:#}"),
            }
        }
        fill_secs = start.elapsed().as_secs_f64();
        log(&format!(
            "per-packet: {installed} legs installed ({fill_secs:.1} s)"
        ));

        let cases = [
            Case {
                path: "baseline",
                prog: baseline,
                frame: fwd_rd.clone(),
                repeat: FWD_REPEAT,
                want: progs::XDP_TX,
                counter: None,
            },
            Case {
                path: "forward_redirect",
                prog: relay,
                frame: fwd_rd.clone(),
                repeat: FWD_REPEAT,
                want: progs::XDP_REDIRECT,
                counter: Some(Counter::VerdictRedirect),
            },
            Case {
                path: "forward_tx",
                prog: relay,
                frame: fwd_tx.clone(),
                repeat: FWD_REPEAT,
                want: progs::XDP_TX,
                counter: Some(Counter::VerdictTx),
            },
            Case {
                path: "turn_strip_add",
                prog: relay,
                frame: turn_chain.clone(),
                repeat: FWD_REPEAT,
                want: progs::XDP_REDIRECT,
                counter: Some(Counter::VerdictRedirect),
            },
            Case {
                path: "turn_renumber",
                prog: relay,
                frame: turn_renumber.clone(),
                repeat: FWD_REPEAT,
                want: progs::XDP_REDIRECT,
                counter: Some(Counter::TurnChannelLocal),
            },
            Case {
                path: "pass",
                prog: relay,
                frame: pass.clone(),
                repeat: FWD_REPEAT,
                want: progs::XDP_PASS,
                counter: Some(Counter::PassUnknownLeg),
            },
            Case {
                path: "baseline_1",
                prog: baseline,
                frame: fwd_rd.clone(),
                repeat: 1,
                want: progs::XDP_TX,
                counter: None,
            },
            Case {
                path: "forward_redirect_1",
                prog: relay,
                frame: fwd_rd.clone(),
                repeat: 1,
                want: progs::XDP_REDIRECT,
                counter: Some(Counter::VerdictRedirect),
            },
            Case {
                path: "turn_strip_1",
                prog: relay,
                frame: turn_strip.clone(),
                repeat: 1,
                want: progs::XDP_REDIRECT,
                counter: Some(Counter::TurnChannelToPeer),
            },
            Case {
                path: "turn_add_1",
                prog: relay,
                frame: turn_add.clone(),
                repeat: 1,
                want: progs::XDP_REDIRECT,
                counter: Some(Counter::TurnPeerToChannel),
            },
            Case {
                path: "reflector",
                prog: relay,
                frame: reflect.clone(),
                repeat: 1,
                want: progs::XDP_REDIRECT,
                counter: Some(Counter::Reflected),
            },
            Case {
                path: "stun",
                prog: relay,
                frame: stun.clone(),
                repeat: 1,
                want: progs::XDP_TX,
                counter: Some(Counter::StunAnswered),
            },
        ];
        let mut base = [0.0f64; 2];
        for c in &cases {
            let runs = if c.repeat == 1 {
                plan.single_runs
            } else {
                plan.runs
            };
            let samples = measure(c, b0, runs, &dp)?;
            let (ns, p10, p90) = median_p10_p90(samples);
            match c.path {
                "baseline" => base[0] = ns,
                "baseline_1" => base[1] = ns,
                _ => {}
            }
            let b = if c.repeat == 1 { base[1] } else { base[0] };
            paths.push(PathCost {
                legs: installed,
                path: c.path.to_owned(),
                ns,
                p10,
                p90,
                repeat: c.repeat,
                runs,
                ratio_to_baseline: if b > 0.0 { ns / b } else { 0.0 },
            });
        }
    }
    let memory = memory_report(plan.max_legs, installed).ok();
    Ok(Report {
        paths,
        memory,
        fill_secs,
    })
}

/// `relay-bench per-packet`: measure and print one row per path and leg count, with its
/// ratio to the baseline and to the plain relay leg (`forward_redirect` at the same repeat).
pub fn print(legs: Vec<u32>, runs: u32, single_runs: u32) -> Result<()> {
    ensure!(
        !legs.is_empty() && legs.windows(2).all(|w| w[0] < w[1]),
        "--legs must be ascending"
    );
    ensure!(
        runs > 0 && single_runs > 0,
        "--runs and --single-runs must be positive"
    );
    let max = legs.last().copied().unwrap_or(1).max(1024) + 16;
    // Leaked once: the plan holds a static slice, and this is the process's one run.
    let plan = Plan {
        legs: Vec::leak(legs),
        runs,
        single_runs,
        max_legs: max,
    };
    let report = run(plan, |m| eprintln!("{m}"))?;
    println!(
        "{:>8} {:<20} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "legs", "path", "repeat", "ns/pkt", "p10", "p90", "x baseline", "x relay leg"
    );
    for p in &report.paths {
        let leg_path = if p.repeat == 1 {
            "forward_redirect_1"
        } else {
            "forward_redirect"
        };
        let leg = report
            .paths
            .iter()
            .find(|q| q.legs == p.legs && q.path == leg_path)
            .map_or(0.0, |q| q.ns);
        println!(
            "{:>8} {:<20} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>10.2}",
            p.legs,
            p.path,
            p.repeat,
            p.ns,
            p.p10,
            p.p90,
            p.ratio_to_baseline,
            if leg > 0.0 { p.ns / leg } else { 0.0 }
        );
    }
    Ok(())
}

fn memory_report(max_legs: u32, installed: u32) -> Result<Memory> {
    let find = |name: &str| -> Result<u32> {
        for info in aya::maps::loaded_maps() {
            let info = info?;
            if info.name_as_str() == Some(name) && info.max_entries() == max_legs {
                return Ok(info.id());
            }
        }
        bail!("map {name} with {max_legs} entries not found")
    };
    let (legs, max) = memory::map_memlock(find(relay_common::map_names::LEGS)?)?;
    let (stats, _) = memory::map_memlock(find(relay_common::map_names::LEG_STATS)?)?;
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?.get() as u32;
    let per = |b: u64| b as f64 / max as f64;
    Ok(Memory {
        max_entries: max,
        legs_installed: installed,
        legs_map_bytes: legs,
        leg_stats_bytes: stats,
        cpus,
        bytes_per_leg: per(legs + stats),
        legs_map_bytes_per_leg: per(legs),
        leg_stats_bytes_per_leg: per(stats),
        by_cpus: project(per(legs), per(stats)),
    })
}
