//! Two real browsers (headless Chromium, relay-testbed's `browser`) behind NATs make a WebRTC
//! call through the daemon's TURN server with `iceTransportPolicy: "relay"`: each browser may
//! only use a candidate relayed by us. The test passes only if each page's selected candidate
//! pair is relay-to-relay on our relay addresses, audio keeps arriving at both pages, and the
//! XDP counters show the data plane carried the ChannelData (not the controller).
mod common;

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use common::Rig;
use relay_testbed::{
    RELAY_A_IP, RELAY_B_IP,
    browser::{CallPage, CallState, Chromium, Signalling, check_running},
};

const USER: &str = "alice";
const PASS: &str = "wonderland";
/// The signalling server, on both relay addresses (each browser reaches the one it can).
const SIGNALLING_PORT: u16 = 8088;
/// Chromium starts, gathers, connects and plays within this (it takes ~5 s here).
const CONNECT_LIMIT: Duration = Duration::from_secs(60);

fn xdp(rig: &Rig, name: &str) -> u64 {
    rig.stats().dataplane.get(name).copied().unwrap_or(0)
}

fn state(sig: &Signalling, role: &str) -> Option<CallState> {
    sig.stats(role).map(|v| CallState::from_stats(&v))
}

/// Both pages connected over relayed candidates with audio arriving, or None yet.
fn connected(sig: &Signalling) -> Option<(CallState, CallState)> {
    let (a, b) = (state(sig, "caller")?, state(sig, "callee")?);
    let ok = |s: &CallState| s.connected && s.local_type == "relay" && s.bytes_received > 0;
    (ok(&a) && ok(&b)).then_some((a, b))
}

#[test]
fn browsers_call_each_other_through_our_turn_relay_only() {
    let rig = Rig::start(
        "tbr",
        &[
            "--turn-port",
            "3478",
            "--turn-realm",
            "example.org",
            "--turn-user",
            &format!("{USER}:{PASS}"),
        ],
    );
    let sig = Signalling::start(
        &rig.topo.relay,
        SocketAddr::from(([0, 0, 0, 0], SIGNALLING_PORT)),
    )
    .expect("signalling server");
    let turn_a = format!("turn:{RELAY_A_IP}:3478?transport=udp");
    let turn_b = format!("turn:{RELAY_B_IP}:3478?transport=udp");
    let mut caller = Chromium::open(
        &rig.topo.caller,
        SocketAddr::from((RELAY_A_IP, SIGNALLING_PORT)),
        &CallPage {
            role: "caller",
            turn: &turn_a,
            user: USER,
            pass: PASS,
        },
    )
    .expect("caller's browser");
    let mut callee = Chromium::open(
        &rig.topo.callee,
        SocketAddr::from((RELAY_B_IP, SIGNALLING_PORT)),
        &CallPage {
            role: "callee",
            turn: &turn_b,
            user: USER,
            pass: PASS,
        },
    )
    .expect("callee's browser");

    let why = |sig: &Signalling, c: &Chromium| {
        format!(
            "caller {:?}\ncallee {:?}\npages:\n{}\ncaller's browser:\n{}\ndaemon:\n{}",
            state(sig, "caller"),
            state(sig, "callee"),
            sig.logs(),
            c.output(),
            rig.log()
        )
    };
    let start = Instant::now();
    let (a, b) = loop {
        check_running(&mut caller, "caller").expect("caller's browser runs");
        check_running(&mut callee, "callee").expect("callee's browser runs");
        if let Some(ab) = connected(&sig) {
            break ab;
        }
        assert!(
            start.elapsed() < CONNECT_LIMIT,
            "no relayed call within {CONNECT_LIMIT:?}:\n{}",
            why(&sig, &caller)
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // The pair each browser selected is relay to relay, and the relayed addresses are ours:
    // the caller's on the relay address it reached, the callee's likewise, each the other's
    // remote candidate.
    let ours = |s: &CallState, ip: IpAddr| s.local_addr.is_some_and(|a| a.ip() == ip);
    assert!(ours(&a, RELAY_A_IP.into()), "{a:?}\n{}", why(&sig, &caller));
    assert!(ours(&b, RELAY_B_IP.into()), "{b:?}");
    assert_eq!(a.relay_protocol, "udp", "{a:?}");
    assert_eq!(
        (a.remote_type.as_str(), b.remote_type.as_str()),
        ("relay", "relay")
    );
    assert_eq!(a.remote_addr, b.local_addr, "{a:?} {b:?}");
    assert_eq!(b.remote_addr, a.local_addr, "{a:?} {b:?}");

    // Media keeps flowing both ways, and it is the data plane that carries it: the two
    // allocations are each other's peers on this box, so their ChannelData is renumbered in
    // XDP from one client to the other.
    let xdp_before = xdp(&rig, "turn_channel_local");
    std::thread::sleep(Duration::from_secs(3));
    let (a2, b2) =
        connected(&sig).unwrap_or_else(|| panic!("call dropped:\n{}", why(&sig, &caller)));
    assert!(
        a2.bytes_received > a.bytes_received && b2.bytes_received > b.bytes_received,
        "audio stopped: {a:?} -> {a2:?}, {b:?} -> {b2:?}"
    );
    let xdp_after = xdp(&rig, "turn_channel_local");
    eprintln!(
        "caller {a2:?}\ncallee {b2:?}\nXDP renumbered {} in 3 s",
        xdp_after - xdp_before
    );
    // Opus at 50 packets a second each way: 3 s is ~300 packets; most of them in XDP.
    assert!(
        xdp_after - xdp_before >= 150,
        "XDP renumbered only {} ChannelData in 3 s:\n{}",
        xdp_after - xdp_before,
        why(&sig, &caller)
    );

    // The operator sees the two allocations, each with a channel.
    let v = rig
        .api(|c| c.get::<serde_json::Value>("/v1/turn/allocations"))
        .expect("allocations");
    let allocs = v["allocations"].as_array().expect("a list");
    let with_channels = allocs
        .iter()
        .filter(|a| a["user"] == USER)
        .filter(|a| a["channels"].as_array().is_some_and(|c| !c.is_empty()))
        .count();
    assert!(with_channels >= 2, "{v}");
}
