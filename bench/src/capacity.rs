//! Call capacity of one box (`relay-bench capacity`): the real daemon in the NAT testbed with
//! N concurrent calls created through its HTTP API, one latching packet on every call's side
//! A RTP port from the caller behind its NAT, then every call deleted. For each N it records
//! what a carrier sizes a box by: open descriptors, resident memory (full, per call, after the
//! deletes), how long the creates took, and whether every call latched.
//!
//! 50,000 calls are 100,000 port pairs: the run gives the daemon four relay addresses with
//! 26,000 pairs each (ports 10000-61999, a little slack for ports other sockets hold) and room for 262,144 kernel legs.
use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use relay_ctl::{
    api::{CreateSession, LatchPolicy, SideRequest, StreamRequest},
    client::ApiClient,
};
use relay_testbed::{
    CALLEE_IP, CALLER_IP, DaemonProcess, NatTopology, RELAY_A_IP, RELAY_B_IP, RELAY_IF_A,
    RELAY_IF_B,
};
use serde::Serialize;

use crate::run::{machine, today};

const API: &str = "127.0.0.1:9931";
const BPFFS_ROOT: &str = "/sys/fs/bpf/media-relay-bench";
/// Second addresses on the relay's two interfaces (same /24s as the first ones).
const RELAY_A2_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);
const RELAY_B2_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
const PORT_MIN: u16 = 10_000;
const PORT_MAX: u16 = 61_999;
const MAX_LEGS: u32 = 262_144;
/// Every wait in the run is bounded by this.
const WAIT: Duration = Duration::from_secs(120);

#[derive(Serialize, Clone, Debug)]
pub struct Row {
    pub calls: usize,
    pub create_secs: f64,
    pub creates_per_sec: f64,
    /// Side A RTP legs latched (of `calls`).
    pub latched: u64,
    pub fds_before: usize,
    pub fds_full: usize,
    pub rss_before_kib: u64,
    pub rss_full_kib: u64,
    pub rss_per_call_bytes: u64,
    pub rss_after_delete_kib: u64,
    pub threads: u64,
}

#[derive(Serialize)]
struct Report {
    date: String,
    machine: crate::report::Machine,
    relay_addrs: usize,
    port_range: String,
    rows: Vec<Row>,
}

fn status_field(pid: u32, name: &str) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).context("/proc status")?;
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{name} in /proc/{pid}/status"))
}

fn fds(pid: u32) -> Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))
        .context("/proc fd")?
        .count())
}

fn wait_until(mut f: impl FnMut() -> Result<bool>) -> Result<bool> {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if f()? {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(false)
}

fn call(i: usize, addrs: &[IpAddr]) -> CreateSession {
    let side = |peer: Ipv4Addr, port: u16, addr: IpAddr| SideRequest {
        peer: Some(SocketAddr::from((peer, port))),
        rtcp_peer: None,
        relay_addr: Some(addr),
    };
    CreateSession {
        call_id: format!("cap-{i}"),
        policy: Some(LatchPolicy::Immediate),
        answered: Some(true),
        streams: vec![StreamRequest {
            media: Some("audio".into()),
            a: side(CALLER_IP, 5004, addrs[i % addrs.len()]),
            b: side(CALLEE_IP, 6004, addrs[(i + 1) % addrs.len()]),
        }],
    }
}

fn measure(relay_ctl: &Path, calls: usize, log: &dyn Fn(&str)) -> Result<Row> {
    let tag = format!("cap{}", std::process::id() % 100_000);
    let topo = NatTopology::build(&tag)?;
    topo.relay.ip(&[
        "addr",
        "add",
        &format!("{RELAY_A2_IP}/24"),
        "dev",
        RELAY_IF_A,
    ])?;
    topo.relay.ip(&[
        "addr",
        "add",
        &format!("{RELAY_B2_IP}/24"),
        "dev",
        RELAY_IF_B,
    ])?;
    topo.prime_neighbours()?;
    let addrs: Vec<IpAddr> = [RELAY_A_IP, RELAY_B_IP, RELAY_A2_IP, RELAY_B2_IP]
        .map(IpAddr::from)
        .to_vec();
    let state_file = std::env::temp_dir().join(format!("mr-capacity-{tag}.json"));
    let _ = fs::remove_file(&state_file);
    let mut args: Vec<String> = vec![];
    for a in [
        "--iface",
        RELAY_IF_A,
        "--iface",
        RELAY_IF_B,
        "--api-listen",
        API,
        "--ng-listen",
        "127.0.0.1:0",
        "--port-min",
        &PORT_MIN.to_string(),
        "--port-max",
        &PORT_MAX.to_string(),
        "--max-legs",
        &MAX_LEGS.to_string(),
        "--state-file",
    ] {
        args.push(a.to_owned());
    }
    args.push(state_file.display().to_string());
    for a in &addrs {
        args.push("--relay-addr".into());
        args.push(a.to_string());
    }
    let daemon = DaemonProcess::start_with(
        relay_ctl,
        &topo.relay,
        Path::new(BPFFS_ROOT),
        &tag,
        &args,
        true,
    )?;
    let pid = daemon.pid();
    let api: SocketAddr = API.parse()?;
    let stats = |name: &str| -> Result<u64> {
        topo.relay.run(|| {
            let s = ApiClient::new(api).get_stats()?;
            Ok::<_, anyhow::Error>(s.controller.get(name).copied().unwrap_or(0))
        })?
    };
    let fds_before = fds(pid)?;
    let rss_before = status_field(pid, "VmRSS:")?;
    log(&format!("  {calls} calls: creating"));
    let t0 = Instant::now();
    let relays: Vec<SocketAddr> = topo.relay.run(|| -> Result<Vec<SocketAddr>> {
        let c = ApiClient::new(api);
        let mut out = Vec::with_capacity(calls);
        for i in 0..calls {
            let v = c
                .create_session(call(i, &addrs))
                .with_context(|| format!("creating call {i} of {calls}"))?;
            out.push(v.streams[0].legs[0].relay);
        }
        Ok(out)
    })??;
    let create_secs = t0.elapsed().as_secs_f64();
    log(&format!(
        "  {calls} calls created in {create_secs:.1} s; latching"
    ));
    let caller = topo
        .caller
        .udp_socket(SocketAddr::from((CALLER_IP, 5004)))?;
    let latched_before = stats("latch_total")?;
    for (i, r) in relays.iter().enumerate() {
        caller.send_to(b"latch", *r)?;
        // Paced: the receive socket's buffer, not the test, should be what is measured.
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    wait_until(|| Ok(stats("latch_total")? >= latched_before + calls as u64))?;
    let latched = stats("latch_total")? - latched_before;
    // Let the state writer and allocator settle before reading memory.
    std::thread::sleep(Duration::from_secs(2));
    let fds_full = fds(pid)?;
    let rss_full = status_field(pid, "VmRSS:")?;
    let threads = status_field(pid, "Threads:")?;
    log(&format!(
        "  {calls} calls: {latched} latched, {fds_full} fds, RSS {rss_full} kB; deleting"
    ));
    topo.relay.run(|| -> Result<()> {
        let c = ApiClient::new(api);
        for i in 0..calls {
            c.delete_session(&format!("cap-{i}"))?;
        }
        Ok(())
    })??;
    // The sweeper trims freed memory within a second or two of the deletes.
    std::thread::sleep(Duration::from_secs(4));
    let rss_after = status_field(pid, "VmRSS:")?;
    drop(daemon);
    let _ = fs::remove_file(&state_file);
    let _ = fs::remove_file(lock_path(&state_file));
    Ok(Row {
        calls,
        create_secs,
        creates_per_sec: calls as f64 / create_secs,
        latched,
        fds_before,
        fds_full,
        rss_before_kib: rss_before,
        rss_full_kib: rss_full,
        rss_per_call_bytes: rss_full.saturating_sub(rss_before) * 1024 / calls as u64,
        rss_after_delete_kib: rss_after,
        threads,
    })
}

fn lock_path(state: &Path) -> PathBuf {
    let mut p = state.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn markdown(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# Call capacity of one box ({})\n", r.date);
    let m = &r.machine;
    let _ = writeln!(
        s,
        "Machine: {} ({} CPUs, {:.0} GiB), kernel {}. The real daemon in the NAT testbed, {} relay \
         addresses, ports {}, calls created over the HTTP API, one packet latching each call's \
         side A RTP leg, then all deleted. Written by `relay-bench capacity`.\n",
        m.cpu_model, m.cpus, m.mem_gib, m.kernel, r.relay_addrs, r.port_range
    );
    let _ = writeln!(
        s,
        "| calls | creates/s | latched | descriptors (idle -> full) | RSS idle | RSS full | RSS per call | RSS after deletes | threads |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for x in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} -> {} | {:.1} MB | {:.1} MB | {:.1} KB | {:.1} MB | {} |",
            x.calls,
            x.creates_per_sec,
            x.latched,
            x.fds_before,
            x.fds_full,
            x.rss_before_kib as f64 / 1024.0,
            x.rss_full_kib as f64 / 1024.0,
            x.rss_per_call_bytes as f64 / 1024.0,
            x.rss_after_delete_kib as f64 / 1024.0,
            x.threads
        );
    }
    s
}

pub fn run(relay_ctl: &Path, out: &Path, calls: &[usize]) -> Result<()> {
    if calls.is_empty() || calls.iter().any(|&c| c == 0 || c > 50_000) {
        bail!(
            "--calls takes counts from 1 to 50000 (four addresses x 26,000 pairs, 2 pairs per call)"
        );
    }
    let log = |m: &str| eprintln!("[capacity] {m}");
    crate::run::remove_stale_namespaces();
    let _lock = crate::run::e2e_lock()?;
    let (date, day) = today();
    let mut rows = vec![];
    for &n in calls {
        rows.push(measure(relay_ctl, n, &log)?);
    }
    let report = Report {
        date,
        machine: machine(),
        relay_addrs: 4,
        port_range: format!("{PORT_MIN}-{PORT_MAX}"),
        rows,
    };
    fs::create_dir_all(out)?;
    let base = out.join(format!("{day}-capacity"));
    fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    fs::write(base.with_extension("md"), &md)?;
    println!("{md}");
    Ok(())
}
