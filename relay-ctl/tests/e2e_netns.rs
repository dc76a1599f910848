//! End to end in network namespaces: the real `relay-ctl daemon` attaches XDP to the relay
//! namespace's two veths; legs are installed straight into its pinned map; real UDP flows from
//! the sender namespace to the receiver namespace and back, forwarded by XDP (the counters say
//! so, and the relay namespace has no socket on the relay ports and no IP forwarding between
//! hosts, so the stack could not have delivered them).
use std::{
    net::{SocketAddr, SocketAddrV4, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

use relay_common::{Counter, Endpoint, stream_legs};
use relay_ctl::dataplane::DataPlane;
use relay_testbed::{
    DaemonProcess, RECEIVER_IP, RELAY_A_IP, RELAY_B_IP, RELAY_IF_A, RELAY_IF_B, SENDER_IP, Topology,
};

const BPFFS_ROOT: &str = "/sys/fs/bpf/media-relay-test";
const N: usize = 50;

/// Non-zero data-plane counters, for failure messages.
fn counters(dp: &DataPlane) -> String {
    dp.counters()
        .map(|cs| {
            cs.into_iter()
                .filter(|(_, v)| *v > 0)
                .map(|(c, v)| format!("{}={v}", c.name()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|e| format!("(counters unreadable: {e:#})"))
}

fn v4(sa: SocketAddrV4) -> Endpoint {
    Endpoint::from(SocketAddr::V4(sa))
}

/// Send `n` numbered datagrams and return how many arrived, checking source and payload.
fn exchange(
    tx: &UdpSocket,
    to: SocketAddrV4,
    rx: &UdpSocket,
    want_from: SocketAddrV4,
    n: usize,
    tag: &str,
) -> usize {
    for i in 0..n {
        tx.send_to(format!("{tag}-{i}").as_bytes(), to)
            .expect("send");
    }
    let mut got = 0;
    let mut buf = [0u8; 256];
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    while got < n {
        match rx.recv_from(&mut buf) {
            Ok((len, from)) => {
                assert_eq!(from, SocketAddr::V4(want_from), "relayed source address");
                assert_eq!(
                    &buf[..len],
                    format!("{tag}-{got}").as_bytes(),
                    "payload, in order"
                );
                got += 1;
            }
            Err(_) => break,
        }
    }
    got
}

#[test]
fn xdp_relays_udp_between_namespaces() {
    let name = format!("e2e{}", std::process::id());
    let topo = Topology::build(&name).expect("topology");
    topo.prime_neighbours().expect("neighbours");
    let mut daemon = DaemonProcess::start(
        Path::new(env!("CARGO_BIN_EXE_relay-ctl")),
        &topo.relay,
        Path::new(BPFFS_ROOT),
        &name,
        &[RELAY_IF_A, RELAY_IF_B],
    )
    .expect("daemon starts");
    let log = daemon.log();
    for ifname in [RELAY_IF_A, RELAY_IF_B] {
        assert!(
            log.contains(&format!("attached XDP to {ifname}")) && log.contains("in native mode"),
            "native XDP on {ifname}:\n{log}"
        );
    }

    // Two legs of one stream: caller <-> relay A:30000 | relay B:30002 <-> callee.
    let caller = SocketAddrV4::new(SENDER_IP, 5004);
    let callee = SocketAddrV4::new(RECEIVER_IP, 6004);
    let relay_a = SocketAddrV4::new(RELAY_A_IP, 30000);
    let relay_b = SocketAddrV4::new(RELAY_B_IP, 30002);
    let mut dp = DataPlane::open(daemon.instance()).expect("open pinned maps");
    let legs = stream_legs(
        (v4(relay_a), v4(caller)),
        (v4(relay_b), v4(callee)),
        [10, 11],
    );
    for (k, v) in &legs {
        dp.install_leg(k, v).expect("install leg");
    }

    let snd = topo
        .sender
        .udp_socket(caller.into())
        .expect("caller socket");
    let rcv = topo
        .receiver
        .udp_socket(callee.into())
        .expect("callee socket");
    let before = dp.counter(Counter::VerdictRedirect).expect("counter");

    let got = exchange(&snd, relay_a, &rcv, relay_b, N, "fwd");
    assert_eq!(got, N, "caller -> callee; counters: {}", counters(&dp));
    let got = exchange(&rcv, relay_b, &snd, relay_a, N, "rev");
    assert_eq!(got, N, "callee -> caller; counters: {}", counters(&dp));

    let redirected = dp.counter(Counter::VerdictRedirect).expect("counter") - before;
    assert_eq!(
        redirected,
        2 * N as u64,
        "every packet forwarded by XDP_REDIRECT"
    );
    for (slot, tag) in [(10, "fwd"), (11, "rev")] {
        let s = dp.leg_stats(slot).expect("leg stats");
        let bytes: u64 = (0..N).map(|i| format!("{tag}-{i}").len() as u64).sum();
        assert_eq!(
            (s.packets, s.bytes),
            (N as u64, bytes),
            "slot {slot} counters"
        );
        assert!(s.last_seen_ns > 0);
    }

    // The controller stops; the pinned data plane keeps forwarding.
    daemon.stop().expect("daemon stops cleanly");
    assert_eq!(
        exchange(&snd, relay_a, &rcv, relay_b, N, "after-exit"),
        N,
        "forwarding survives the controller"
    );

    // Detaching (what `relay-ctl detach` does) stops it: nothing arrives any more.
    let out = Command::new(env!("CARGO_BIN_EXE_relay-ctl"))
        .args(["--instance", &name, "--bpffs-root", BPFFS_ROOT, "detach"])
        .output()
        .expect("relay-ctl detach");
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!daemon.instance().exists(), "pins removed");
    assert_eq!(
        exchange(&snd, relay_a, &rcv, relay_b, 5, "after-detach"),
        0,
        "no XDP, no relaying"
    );
}
