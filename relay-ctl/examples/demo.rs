//! The main job, end to end on a throw-away topology: build three network namespaces
//! (sender | relay | receiver), start `relay-ctl daemon` on the relay's two links, install one
//! media stream's two legs, send RTP-sized datagrams both ways, and show what XDP did.
//! Everything is removed at the end, also on failure. Run as root: `./x demo`.
use std::{
    net::{SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use relay_common::{Endpoint, stream_legs};
use relay_ctl::{
    dataplane::DataPlane,
    testbed::{
        DaemonProcess, RECEIVER_IP, RELAY_A_IP, RELAY_B_IP, RELAY_IF_A, RELAY_IF_B, SENDER_IP,
        Topology,
    },
};

const PACKETS: usize = 10;
/// RTP header (12) + 20 ms of G.711 (160).
const RTP_SIZE: usize = 172;

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

fn ep(sa: SocketAddrV4) -> Endpoint {
    Endpoint::from(SocketAddr::V4(sa))
}

fn main() -> Result<()> {
    let bin = relay_ctl_bin()?;
    println!("== XDP media relay demo ==");
    let topo = Topology::build("demo")?;
    println!(
        "topology   sender {SENDER_IP} | relay {RELAY_IF_A}={RELAY_A_IP} {RELAY_IF_B}={RELAY_B_IP} | receiver {RECEIVER_IP}"
    );
    topo.prime_neighbours()?;

    let daemon = DaemonProcess::start(
        &bin,
        &topo.relay,
        Path::new("/sys/fs/bpf/media-relay-demo"),
        "demo",
        &[RELAY_IF_A, RELAY_IF_B],
    )?;
    for line in daemon
        .log()
        .lines()
        .filter(|l| l.contains("attached XDP") || l.contains("ready:"))
    {
        println!("daemon     {}", line.split("] ").nth(1).unwrap_or(line));
    }

    let caller = SocketAddrV4::new(SENDER_IP, 5004);
    let callee = SocketAddrV4::new(RECEIVER_IP, 6004);
    let relay_a = SocketAddrV4::new(RELAY_A_IP, 30000);
    let relay_b = SocketAddrV4::new(RELAY_B_IP, 30002);
    let mut dp = DataPlane::open(daemon.instance())?;
    let legs = stream_legs((ep(relay_a), ep(caller)), (ep(relay_b), ep(callee)), [0, 1]);
    for (key, leg) in &legs {
        dp.install_leg(key, leg)?;
        println!(
            "leg        {} -> {}  rewritten to  {} -> {}  (stats slot {})",
            leg.latched, key.relay, leg.new_src, leg.new_dst, leg.slot
        );
    }

    let snd = topo.sender.udp_socket(caller.into())?;
    let rcv = topo.receiver.udp_socket(callee.into())?;
    for (name, tx, to, rx) in [
        ("caller->callee", &snd, relay_a, &rcv),
        ("callee->caller", &rcv, relay_b, &snd),
    ] {
        let mut pkt = [0u8; RTP_SIZE];
        pkt[0] = 0x80; // RTP version 2
        for seq in 0..PACKETS as u16 {
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            tx.send_to(&pkt, to)?;
        }
        rx.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 2048];
        let mut got = 0;
        let mut from = None;
        while got < PACKETS {
            match rx.recv_from(&mut buf) {
                Ok((_, f)) => {
                    got += 1;
                    from = Some(f);
                }
                Err(_) => break,
            }
        }
        let from = from.map_or("-".to_owned(), |f| f.to_string());
        println!(
            "media      {name}: sent {PACKETS} x {RTP_SIZE} B, received {got} (source seen by receiver: {from})"
        );
        anyhow::ensure!(
            got == PACKETS,
            "{name}: only {got} of {PACKETS} packets arrived"
        );
    }

    println!("counters   (XDP, per-CPU summed)");
    for (c, v) in dp.counters()?.into_iter().filter(|(_, v)| *v > 0) {
        println!("           {:<24} {v}", c.name());
    }
    for (_, leg) in &legs {
        let slot = leg.slot;
        let s = dp.leg_stats(slot)?;
        println!(
            "leg slot {slot} forwarded in XDP: {} packets, {} bytes",
            s.packets, s.bytes
        );
    }
    drop(daemon);
    drop(topo);
    println!("cleanup    daemon stopped, XDP detached, pins and namespaces removed");
    Ok(())
}
