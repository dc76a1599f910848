//! TURN ChannelData throughput (`relay-bench turn`): our daemon's TURN server (bound channels
//! relayed by XDP) against coturn's `turnserver` on the same namespace testbed (topo.rs) in
//! the same run, next to our plain relay leg. A small client on relay-ctl's STUN/TURN codec
//! (turn_client.rs) allocates and binds a channel from the generator's address; the generator
//! then sends pre-built ChannelData frames client -> peer (the Strip direction) and s0 counts
//! what reaches the peer.
use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use relay_ctl::client::ApiClient;
use relay_testbed::{Netns, netns_path};
use serde::Serialize;

use crate::{
    cpu, frames, generator,
    report::Machine,
    run::{machine, today},
    topo::{self, GEN_IP, RELAY_A, SINK_IP, Topo},
    tput::{self, RelayDaemon, Variant},
    turn_client,
};

pub const REALM: &str = "bench.example";
pub const USER: &str = "bench";
pub const PASSWORD: &str = "bench-password";
/// The TURN server's UDP port on RELAY_A (ours and coturn's).
pub const TURN_PORT: u16 = 3478;
/// The client's port in the generator namespace: the ChannelData frames come from it too.
const CLIENT_PORT: u16 = 41_000;
/// The peer in the sink namespace (s0 counts and drops whatever arrives).
const PEER_PORT: u16 = 20_900;
const CHANNEL: u16 = 0x4001;
const COTURN: &str = "/usr/bin/turnserver";

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq, Debug)]
pub enum Mode {
    /// 5 s per variant.
    Full,
    /// 1.5 s per variant: the whole comparison in well under a minute.
    Smoke,
}

#[derive(Serialize)]
pub struct Ratios {
    /// Our TURN ChannelData pps / coturn's, both on the one relay CPU.
    pub pps_ours_over_coturn: f64,
    /// coturn's CPU ns per delivered packet / ours.
    pub cpu_per_pkt_coturn_over_ours: f64,
    /// Our ChannelData CPU ns per packet / our plain relay leg's.
    pub cpu_per_pkt_channel_over_leg: f64,
    /// In-program ns per packet (BPF stats), ChannelData / plain leg.
    pub inprog_channel_over_leg: Option<f64>,
    /// Packets per second one fully used relay core would carry (1e9 / CPU ns per packet),
    /// ours / coturn's: the relay CPU is shared with the counting sinks, so neither variant
    /// has a whole core to itself in `delivered_pps`.
    pub pps_per_core_ours_over_coturn: f64,
    /// Issue 19's goal (>= 10x coturn's pps per relay core), on delivered pps.
    pub goal_10x_met_delivered: bool,
    /// The same on CPU-normalised pps per core.
    pub goal_10x_met_per_core: bool,
}

#[derive(Serialize)]
pub struct Results {
    pub date: String,
    pub mode: String,
    pub machine: Machine,
    pub variants: Vec<Variant>,
    /// XDP's turn_channel_to_peer counter over our TURN run: ChannelData relayed in kernel.
    pub ours_xdp_channel_to_peer: u64,
    pub ratios: Ratios,
    pub wall_secs: f64,
    pub notes: Vec<String>,
}

fn log(msg: &str) {
    eprintln!("bench turn: {msg}");
}

fn server() -> SocketAddr {
    (RELAY_A, TURN_PORT).into()
}

fn peer() -> SocketAddr {
    (SINK_IP, PEER_PORT).into()
}

/// The frames: ChannelData on `CHANNEL` around the usual RTP payload.
fn load() -> generator::Load {
    generator::Load {
        payload: relay_ctl::turn::attrs::channel_data(CHANNEL, &frames::rtp_payload(), false),
        rewrite_lead: true,
        ..generator::Load::host()
    }
}

pub fn run(mode: Mode, out: &Path, relay_ctl: &Path) -> Result<()> {
    let start = Instant::now();
    let secs = match mode {
        Mode::Full => 5.0,
        Mode::Smoke => 1.5,
    };
    let machine = machine();
    let (date, stamp) = today();
    crate::run::remove_stale_namespaces();
    // Like `relay-bench run`: a full run waits for other checkouts' namespace tests.
    let _lock = if mode == Mode::Full {
        Some(crate::run::e2e_lock()?)
    } else {
        None
    };
    let mut t = Topo::build()?;
    // The client's control exchange needs answers in the generator namespace.
    t.release_gen_counter();
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time statistics")?;
    let mut variants = vec![];

    // 1 and 2: one daemon, TURN on, one plain session (the in-house baseline) and one
    //    allocation with a bound channel, measured one after the other.
    let (leg, ours, kernel_channel) = ours(&t, secs, relay_ctl)?;
    log(&format!("{leg:?}"));
    log(&format!("{ours:?}"));
    variants.push(leg);
    variants.push(ours);
    // 3. coturn: userspace, r0 gets NAPI without XDP so the stack receives.
    topo::napi_without_xdp(&t.relay, "r0")?;
    let c = coturn(&t, secs)?;
    log(&format!("{c:?}"));
    variants.push(c);

    let by = |n: &str| variants.iter().find(|v| v.name == n);
    let (leg, ours, co) = (
        by("relay_leg_xdp").context("leg")?,
        by("turn_channel_xdp").context("ours")?,
        by("turn_coturn").context("coturn")?,
    );
    ensure!(
        co.delivered > 0 && ours.delivered > 0,
        "a variant delivered nothing"
    );
    let pps_ratio = ours.delivered_pps / co.delivered_pps;
    let cpu_ratio = co.cpu_ns_per_pkt / ours.cpu_ns_per_pkt;
    let ratios = Ratios {
        pps_ours_over_coturn: pps_ratio,
        cpu_per_pkt_coturn_over_ours: cpu_ratio,
        pps_per_core_ours_over_coturn: cpu_ratio,
        cpu_per_pkt_channel_over_leg: ours.cpu_ns_per_pkt / leg.cpu_ns_per_pkt,
        inprog_channel_over_leg: match (ours.inprog_ns_per_pkt, leg.inprog_ns_per_pkt) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        },
        goal_10x_met_delivered: pps_ratio >= 10.0,
        goal_10x_met_per_core: cpu_ratio >= 10.0,
    };
    let results = Results {
        date,
        mode: format!("{mode:?}").to_lowercase(),
        machine,
        variants,
        ours_xdp_channel_to_peer: kernel_channel,
        ratios,
        wall_secs: start.elapsed().as_secs_f64(),
        notes: notes(),
    };
    fs::create_dir_all(out)?;
    let suffix = if mode == Mode::Smoke { "-smoke" } else { "" };
    let base = out.join(format!("{stamp}-turn{suffix}"));
    fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    fs::write(base.with_extension("md"), markdown(&results))?;
    log(&format!(
        "wrote {}.{{json,md}} in {:.0} s",
        base.display(),
        results.wall_secs
    ));
    Ok(())
}

fn notes() -> Vec<String> {
    vec![
        "Same testbed as the throughput bench (topo.rs): generator on CPU 0, everything of the relay (r0's threaded NAPI, our daemon, coturn's threads) pinned to CPU 1, so pps is per relay core.".to_owned(),
        "Offered load: bench_gen's live frames at its maximum, one flow (the client's 5-tuple), ChannelData on one bound channel with a 172-byte RTP payload (client -> peer, the Strip direction), UDP checksum 0. Delivered = frames counted at the peer's veth (s0).".to_owned(),
        "The relay CPU also runs the counting sinks' NAPI threads (above everything, as in the throughput bench), so no variant has the whole core: delivered pps is what each carried on that shared CPU, and 1e9 / CPU ns per packet is what a fully used relay core would carry. The issue's goal (>= 10x coturn's pps per relay core) is judged on both.".to_owned(),
        "The plain relay leg is a session of the same daemon, latched, frames 4 bytes longer in payload so the frames on the wire are the same size as the ChannelData ones; the generator rewrites the first 4 payload bytes of every frame in both (the Strip path removes the ChannelData header from the recycled page).".to_owned(),
        "Both are overloaded (the generator offers more than either carries): coturn's CPU per delivered packet includes the kernel's receive work on the frames its full socket buffer then drops, which is what an overloaded userspace relay spends; ours drops nothing in software before XDP runs.".to_owned(),
        "CPU ns/packet = CPU seconds of r0's NAPI kthread + the server's process (our daemon or coturn) + ksoftirqd, per delivered packet. For ours, inprog ns is the XDP program's own time (BPF run_time_ns / run_cnt).".to_owned(),
        "coturn 4.x (Debian), UDP listener, --lt-cred-mech, no TLS/DTLS/CLI, threads pinned to the relay CPU one priority above the NAPI thread (as rtpengine in the throughput bench). Userspace relays' receive side needs r0's NAPI without XDP (GRO), like the other userspace variants.".to_owned(),
        "The box is a shared 2-core VM with other builds and tests running (machine_busy_secs per variant): absolute numbers move between runs, the ratios within one run are the result. veth is not a NIC (see bench/README.md).".to_owned(),
    ]
}

/// Our daemon with TURN: the plain leg (a session latched into XDP), then the channel.
fn ours(t: &Topo, secs: f64, relay_ctl: &Path) -> Result<(Variant, Variant, u64)> {
    let extra: Vec<String> = [
        "--turn-port",
        &TURN_PORT.to_string(),
        "--turn-realm",
        REALM,
        "--turn-user",
        &format!("{USER}:{PASSWORD}"),
        // The bench's client talks faster than a browser during set-up: no rate limit hit.
        "--turn-rate",
        "10000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let d = RelayDaemon::start_with(t, 1, relay_ctl, &extra, 4)?;
    let mut pids = topo::threaded_napi(&t.relay, "r0")?;
    pids.push(d.daemon.pid());
    let leg = tput::drive(
        t,
        "relay_leg_xdp",
        RELAY_A,
        &d.flows,
        &load_plain(),
        secs,
        &|| t.sink_delivered(),
        &pids,
        4,
        Some(relay_common::PROGRAM_NAME),
        "our plain relay leg (a session via the API, latched), same daemon, same frame size",
    )?;
    let relayed = t.sender.run(|| {
        turn_client::bind_channel(
            (GEN_IP, CLIENT_PORT).into(),
            server(),
            peer(),
            CHANNEL,
            (USER, REALM, PASSWORD),
        )
    })??;
    log(&format!("ours: channel bound, relayed address {relayed}"));
    // The kernel entries are written right after the answer; give the daemon a moment.
    std::thread::sleep(Duration::from_millis(300));
    let c0 = xdp_counters(t, &d)?;
    let v = tput::drive(
        t,
        "turn_channel_xdp",
        RELAY_A,
        &[(CLIENT_PORT, TURN_PORT)],
        &load(),
        secs,
        &|| t.sink_delivered(),
        &pids,
        4,
        Some(relay_common::PROGRAM_NAME),
        "our TURN server: ChannelData client -> peer on a bound channel, Strip in XDP",
    )?;
    let c1 = xdp_counters(t, &d)?;
    let moved: Vec<(String, u64)> = c1
        .iter()
        .map(|(n, v)| (n.clone(), v - c0.get(n).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();
    log(&format!(
        "ours: XDP counters during the channel run: {moved:?}"
    ));
    let k = moved
        .iter()
        .find(|(n, _)| n == "turn_channel_to_peer")
        .map_or(0, |(_, d)| *d);
    ensure!(
        k >= v.delivered / 2,
        "XDP relayed only {k} of {} delivered ChannelData: the channel is not in the kernel",
        v.delivered
    );
    Ok((leg, v, k))
}

/// The plain leg's frames: the same total size as the ChannelData ones (4 bytes more payload).
fn load_plain() -> generator::Load {
    let mut payload = frames::rtp_payload();
    payload.extend_from_slice(&[0; 4]);
    generator::Load {
        payload,
        // The same generator work per frame as the ChannelData runs.
        rewrite_lead: true,
        ..generator::Load::host()
    }
}

fn xdp_counters(t: &Topo, d: &RelayDaemon) -> Result<std::collections::BTreeMap<String, u64>> {
    let api = d.api;
    let s = t
        .relay
        .run(|| ApiClient::new(api).get_stats())?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(s.dataplane)
}

fn coturn(t: &Topo, secs: f64) -> Result<Variant> {
    let c = Coturn::start(&t.relay, RELAY_A)?;
    let relayed = t.sender.run(|| -> Result<SocketAddr> {
        // coturn's listener may take a moment after its process starts.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match turn_client::bind_channel(
                (GEN_IP, CLIENT_PORT).into(),
                server(),
                peer(),
                CHANNEL,
                (USER, REALM, PASSWORD),
            ) {
                Ok(a) => return Ok(a),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    })?;
    let relayed = match relayed {
        Ok(a) => a,
        Err(e) => bail!("coturn: {e:#}\n{}", c.log()),
    };
    log(&format!("coturn: channel bound, relayed address {relayed}"));
    let mut pids = topo::threaded_napi(&t.relay, "r0")?;
    cpu::pin_all(c.pid(), cpu::RELAY_CPU, cpu::RT_PRIO_USERSPACE);
    pids.push(c.pid());
    tput::drive(
        t,
        "turn_coturn",
        RELAY_A,
        &[(CLIENT_PORT, TURN_PORT)],
        &load(),
        secs,
        &|| t.sink_delivered(),
        &pids,
        0,
        None,
        "coturn turnserver: ChannelData client -> peer on a bound channel (userspace)",
    )
}

/// coturn's `turnserver` in the relay namespace, UDP only, one user, killed on drop.
struct Coturn {
    child: Child,
    dir: PathBuf,
}

impl Coturn {
    fn start(ns: &Netns, ip: Ipv4Addr) -> Result<Coturn> {
        let dir = std::env::temp_dir().join(format!("relay-bench-coturn-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let log = fs::File::create(dir.join("log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns_path(ns.name()).display()))
            .arg(COTURN)
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--lt-cred-mech"])
            .args(["--user", &format!("{USER}:{PASSWORD}"), "--realm", REALM])
            .args(["--listening-ip", &ip.to_string()])
            .args(["--relay-ip", &ip.to_string()])
            .args(["--listening-port", &TURN_PORT.to_string()])
            .args(["--min-port", "42000", "--max-port", "42100"])
            // Its own files in a temporary directory, nothing under /var.
            .arg("--userdb")
            .arg(dir.join("turndb"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .args(["--log-file", "stdout", "--simple-log", "--no-rfc5780"])
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {COTURN} (Debian coturn)"))?;
        let mut c = Coturn { child, dir };
        std::thread::sleep(Duration::from_millis(500));
        if let Some(st) = c.child.try_wait()? {
            bail!("turnserver exited ({st}):\n{}", c.log());
        }
        Ok(c)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        let s = fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn markdown(r: &Results) -> String {
    let mut s = format!(
        "# TURN ChannelData throughput, {} ({} mode)\n\nHost `{}`, kernel {}, {} x {}, load before: {}.\n\n",
        r.date,
        r.mode,
        r.machine.host,
        r.machine.kernel,
        r.machine.cpus,
        r.machine.cpu_model,
        r.machine.loadavg_before
    );
    s.push_str("| variant | sent pps | delivered pps | loss | CPU ns/pkt | XDP in-prog ns/pkt | machine busy s |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for v in &r.variants {
        s.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.1}% | {:.0} | {} | {:.1} |\n",
            v.name,
            v.sent_pps,
            v.delivered_pps,
            100.0 * v.loss,
            v.cpu_ns_per_pkt,
            v.inprog_ns_per_pkt
                .map(|x| format!("{x:.0}"))
                .unwrap_or_else(|| "-".into()),
            v.machine_busy_secs
        ));
    }
    let q = &r.ratios;
    s.push_str(&format!(
        "\n- Ours / coturn, delivered pps on the one relay CPU: **{:.1}x** (goal >= 10x: **{}**).\n- CPU per packet, coturn / ours, i.e. pps per fully used relay core, ours / coturn: **{:.1}x** (goal >= 10x: **{}**).\n- ChannelData / plain relay leg, CPU per packet: **{:.2}x**{}.\n- XDP relayed {} ChannelData frames in our run (turn_channel_to_peer).\n\n",
        q.pps_ours_over_coturn,
        met(q.goal_10x_met_delivered),
        q.cpu_per_pkt_coturn_over_ours,
        met(q.goal_10x_met_per_core),
        q.cpu_per_pkt_channel_over_leg,
        q.inprog_channel_over_leg
            .map(|x| format!("; XDP in-program time {x:.2}x"))
            .unwrap_or_default(),
        r.ours_xdp_channel_to_peer
    ));
    s.push_str("Notes:\n\n");
    for n in &r.notes {
        s.push_str(&format!("- {n}\n"));
    }
    s
}

fn met(b: bool) -> &'static str {
    if b { "met" } else { "not met" }
}
