//! The main job, end to end on a throw-away topology: a caller and a callee, each behind its
//! own NAT (nftables masquerade), and the relay box between them. The real `relay-ctl daemon`
//! attaches XDP to the relay's two links; a session is created through its HTTP API, as a SIP
//! proxy would; both parties stream RTP for a few seconds; the operator CLI shows the session
//! and how many packets XDP forwarded versus the controller. Everything is removed at the end,
//! also on failure. Run as root: `./x demo`.
use std::{
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use relay_ctl::{
    api::{CreateSession, LatchPolicy, SideRequest, StreamRequest},
    client::ApiClient,
};
use relay_testbed::{
    CALLEE_IP, CALLER_IP, DaemonProcess, NAT_A_OUT_IP, NAT_B_OUT_IP, NatTopology, RELAY_A_IP,
    RELAY_B_IP, RELAY_IF_A, RELAY_IF_B,
};

const API: &str = "127.0.0.1:9901";
const CALLER_RTP: u16 = 5004;
const CALLEE_RTP: u16 = 6004;
/// 20 ms G.711 frames for 4 seconds.
const FRAMES: u16 = 200;
const PTIME: Duration = Duration::from_millis(20);

/// The relay-ctl binary built next to this example (target/<profile>/relay-ctl).
fn relay_ctl_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("relay-ctl"))
        .context("locating relay-ctl next to the demo")?;
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (`cargo build --release -p relay-ctl`, or run `./x demo`)",
        bin.display()
    );
    Ok(bin)
}

/// An RTP packet: 12-byte header (version 2, PT 0 = PCMU) and 160 bytes of payload.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(172);
    p.extend_from_slice(&[0x80, 0x00]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(172, 0xff);
    p
}

/// Send `FRAMES` RTP packets at 50 per second; receive the other side's; return the sequence
/// numbers received and the source they came from.
fn talk(sock: UdpSocket, to: SocketAddr, ssrc: u32) -> Result<(Vec<u16>, Option<SocketAddr>)> {
    let rx = sock.try_clone()?;
    let receiver = thread::spawn(move || {
        let mut seqs = vec![];
        let mut from = None;
        let mut buf = [0u8; 2048];
        let _ = rx.set_read_timeout(Some(Duration::from_secs(1)));
        while let Ok((n, src)) = rx.recv_from(&mut buf) {
            if n >= 12 && buf[0] == 0x80 {
                seqs.push(u16::from_be_bytes([buf[2], buf[3]]));
                from = Some(src);
            }
        }
        (seqs, from)
    });
    let start = Instant::now();
    for seq in 0..FRAMES {
        sock.send_to(&rtp(seq, ssrc), to)?;
        let next = PTIME * u32::from(seq + 1);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
    }
    receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver thread panicked"))
}

fn cli(daemon: &DaemonProcess, args: &[&str]) -> Result<String> {
    let out = daemon.cli(API.parse()?, args)?;
    if !out.status.success() {
        bail!(
            "relay-ctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() -> Result<()> {
    let bin = relay_ctl_bin()?;
    let tag = format!("demo{}", std::process::id());
    let state = std::env::temp_dir().join(format!("media-relay-{tag}.json"));
    println!("== topology (network namespaces, removed at the end)");
    println!(
        "   caller {CALLER_IP} -> NAT A {NAT_A_OUT_IP} -> [{RELAY_IF_A} {RELAY_A_IP} | relay | {RELAY_IF_B} {RELAY_B_IP}] <- NAT B {NAT_B_OUT_IP} <- callee {CALLEE_IP}"
    );
    let topo = NatTopology::build(&tag)?;
    topo.prime_neighbours()?;

    println!("== relay-ctl daemon --iface {RELAY_IF_A} --iface {RELAY_IF_B}");
    let args: Vec<String> = [
        "--iface",
        RELAY_IF_A,
        "--iface",
        RELAY_IF_B,
        "--state-file",
        &state.display().to_string(),
        "--detach-on-exit",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut daemon = DaemonProcess::start_with(
        &bin,
        &topo.relay,
        Path::new("/sys/fs/bpf/media-relay-demo"),
        &tag,
        &args,
        true,
    )?;
    for line in daemon.log().lines() {
        if line.contains("attached XDP") || line.contains("ready:") {
            println!("   {}", line.split_once("] ").map_or(line, |(_, l)| l));
        }
    }

    // The SIP proxy's view: each party's SDP names its private address.
    let req = CreateSession {
        call_id: "demo-call-1".into(),
        policy: Some(LatchPolicy::Immediate),
        answered: Some(true),
        streams: vec![StreamRequest {
            media: Some("audio".into()),
            a: SideRequest {
                peer: Some(SocketAddr::from((CALLER_IP, CALLER_RTP))),
                rtcp_peer: None,
                relay_addr: Some(RELAY_A_IP.into()),
            },
            b: SideRequest {
                peer: Some(SocketAddr::from((CALLEE_IP, CALLEE_RTP))),
                rtcp_peer: None,
                relay_addr: Some(RELAY_B_IP.into()),
            },
        }],
    };
    println!(
        "== POST /v1/sessions (call demo-call-1, SDP addresses {CALLER_IP}:{CALLER_RTP} and {CALLEE_IP}:{CALLEE_RTP})"
    );
    let api: SocketAddr = API.parse()?;
    let v = topo
        .relay
        .run(|| ApiClient::new(api).create_session(req))??;
    let (ra, rb) = (v.streams[0].legs[0].relay, v.streams[0].legs[1].relay);
    println!("   caller sends to {ra}, callee sends to {rb}");

    println!(
        "== {} s of RTP both ways ({FRAMES} x 172-byte packets each way, 50/s)",
        FRAMES / 50
    );
    let caller = topo
        .caller
        .udp_socket(SocketAddr::from((CALLER_IP, CALLER_RTP)))?;
    let callee = topo
        .callee
        .udp_socket(SocketAddr::from((CALLEE_IP, CALLEE_RTP)))?;
    let a = thread::spawn(move || talk(caller, ra, 0x1111_1111));
    let b = thread::spawn(move || talk(callee, rb, 0x2222_2222));
    let (got_at_caller, from_a) = a.join().map_err(|_| anyhow::anyhow!("caller panicked"))??;
    let (got_at_callee, from_b) = b.join().map_err(|_| anyhow::anyhow!("callee panicked"))??;
    for (who, got, from) in [
        ("callee", &got_at_callee, from_b),
        ("caller", &got_at_caller, from_a),
    ] {
        let lost = usize::from(FRAMES) - got.len();
        println!(
            "   {who} received {} of {FRAMES} RTP packets, from {}{}",
            got.len(),
            from.map_or("-".to_owned(), |f| f.to_string()),
            if lost > 0 {
                format!(
                    " ({lost} sent before the other party had sent anything: its NAT had no pinhole yet)"
                )
            } else {
                String::new()
            }
        );
    }

    println!("== relay-ctl sessions");
    print!("{}", indent(&cli(&daemon, &["sessions"])?));
    println!("== relay-ctl session demo-call-1");
    print!("{}", indent(&cli(&daemon, &["session", "demo-call-1"])?));
    let st = topo.relay.run(|| ApiClient::new(api).get_stats())??;
    let (k, u) = (st.forwarded_kernel_packets, st.forwarded_user_packets);
    println!("== who forwarded the media");
    let dropped = st
        .controller
        .get("user_drop_send_error")
        .copied()
        .unwrap_or(0);
    println!(
        "   XDP (kernel): {k} packets; controller (userspace): {u} forwarded while latching, {dropped} with no reachable peer yet -> {:.1}% of forwarded packets by XDP",
        100.0 * k as f64 / (k + u).max(1) as f64
    );

    println!("== relay-ctl delete demo-call-1");
    print!("{}", indent(&cli(&daemon, &["delete", "demo-call-1"])?));
    daemon.stop()?;
    println!(
        "== daemon stopped (--detach-on-exit: XDP detached, pins removed); namespaces removed"
    );
    anyhow::ensure!(
        got_at_callee.len() > usize::from(FRAMES) * 9 / 10
            && got_at_caller.len() > usize::from(FRAMES) * 9 / 10,
        "media did not flow"
    );
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("   {l}\n")).collect()
}
