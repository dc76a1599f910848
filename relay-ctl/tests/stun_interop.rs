//! Interop with a STUN client nobody here wrote: coturn's `turnutils_stunclient` (Debian's
//! `coturn` package, installed by `./x setup`), run in the test namespaces against the real
//! daemon. It sends a plain Binding first; if the answer carries OTHER-ADDRESS (or with
//! `-f`) it goes on with RFC 5780's tests: CHANGE-REQUEST (IP and port) with RESPONSE-PORT,
//! then CHANGE-REQUEST with PADDING. It waits for each answer without a timeout, so every run
//! here is under `timeout`.
mod common;

use std::{net::SocketAddr, process::Command, time::Duration};

use common::Rig;
use relay_testbed::{NAT_A_OUT_IP, NAT_B_OUT_IP, Netns, RELAY_A_IP, RELAY_B_IP, RELAY_IF_A};

const ALT: &str = "198.18.1.3";

/// Run the client in `ns`; returns (exit code, stdout). 124 is `timeout` killing it.
fn stunclient(ns: &Netns, secs: u32, args: &[&str]) -> (i32, String) {
    let secs = secs.to_string();
    let mut a = vec![
        "netns",
        "exec",
        ns.name(),
        "timeout",
        &secs,
        "turnutils_stunclient",
    ];
    a.extend_from_slice(args);
    let out = Command::new("ip")
        .args(&a)
        .output()
        .expect("ip netns exec timeout turnutils_stunclient (is coturn installed? ./x setup)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

/// The addresses after `label` in the client's output, in order.
fn addrs(out: &str, label: &str) -> Vec<SocketAddr> {
    out.lines()
        .filter_map(|l| l.split_once(label))
        .filter_map(|(_, rest)| rest.trim_start_matches([':', ' ']).trim().parse().ok())
        .collect()
}

/// Binding answers so far: by XDP, and by the controller's server.
fn answered(rig: &Rig) -> (u64, u64) {
    let xdp = rig
        .stats()
        .dataplane
        .get("stun_answered")
        .copied()
        .unwrap_or(0);
    let m = rig.api(|c| c.metrics()).expect("metrics");
    let user = m
        .lines()
        .filter(|l| l.starts_with("media_relay_stun_user_total{event=\"success"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    (xdp, user)
}

#[test]
fn turnutils_behind_a_nat_learns_the_nats_mapping() {
    let rig = Rig::start("stc", &[]);
    for (ns, server, nat) in [
        (&rig.topo.caller, RELAY_A_IP, NAT_A_OUT_IP),
        (&rig.topo.callee, RELAY_B_IP, NAT_B_OUT_IP),
    ] {
        let (x0, u0) = answered(&rig);
        // Without a second address the answer has no OTHER-ADDRESS: one request, then exit.
        let (rc, out) = stunclient(ns, 10, &[&server.to_string()]);
        assert_eq!(rc, 0, "{out}\n{}", rig.log());
        let mut mapped = addrs(&out, "UDP reflexive addr");
        // This client version prints the line twice for a non-RFC 5780 answer.
        mapped.dedup();
        assert_eq!(mapped.len(), 1, "{out}");
        assert_eq!(mapped[0].ip(), nat, "the NAT's outside address: {out}");
        assert!(
            !out.contains("RFC 5780"),
            "no OTHER-ADDRESS without stun-alt-addr: {out}"
        );
        let (x1, u1) = answered(&rig);
        // Answered in XDP (on a veth the frame grows at the head, docs/stun.md).
        assert_eq!(
            (x1 - x0, u1 - u0),
            (1, 0),
            "answered by XDP:\n{}",
            rig.log()
        );
    }
}

#[test]
fn turnutils_rfc5780_mode_against_the_controller() {
    let rig = Rig::start_prepared(
        "stf",
        &[
            "--stun-alt-addr",
            ALT,
            "--relay-addr",
            "198.18.1.1",
            "--relay-addr",
            "198.18.2.1",
        ],
        |t| {
            t.relay
                .ip(&["addr", "add", &format!("{ALT}/24"), "dev", RELAY_IF_A])
                .expect("second address")
        },
    );
    let other: SocketAddr = format!("{ALT}:3479").parse().expect("addr");

    // No NAT in the way (NAT-A's own address). The plain Binding is answered in XDP (no
    // OTHER-ADDRESS there, hence `-f`); the two CHANGE-REQUEST tests (with RESPONSE-PORT, then
    // with PADDING) by the controller, from the other address and port.
    let (x0, _) = answered(&rig);
    let (rc, out) = stunclient(
        &rig.topo.nat_a,
        10,
        &[
            "-f",
            "-L",
            &NAT_A_OUT_IP.to_string(),
            &RELAY_A_IP.to_string(),
        ],
    );
    assert_eq!(rc, 0, "{out}\n{}", rig.log());
    assert_eq!(out.matches("RFC 5780 response").count(), 2, "{out}");
    assert_eq!(addrs(&out, "Response origin"), [other, other], "{out}");
    assert_eq!(addrs(&out, "Other addr"), [other, other], "{out}");
    let mapped = addrs(&out, "UDP reflexive addr");
    assert!(
        mapped.len() >= 3 && mapped.iter().all(|m| m.ip() == NAT_A_OUT_IP),
        "{out}"
    );
    // The third test is sent from the RESPONSE-PORT socket (port + 1).
    assert_eq!(
        mapped[mapped.len() - 1].port(),
        mapped[0].port() + 1,
        "{out}"
    );
    let (x1, _) = answered(&rig);
    assert_eq!(x1 - x0, 1, "test I answered in XDP");
    let m = rig.api(|c| c.metrics()).expect("metrics");
    assert!(
        m.contains("media_relay_stun_user_total{event=\"success_changed\"} 2"),
        "{m}"
    );

    // Behind port-restricted NAT-A: the plain answer arrives with the NAT's mapping; the
    // change-IP answer is filtered by the NAT, so the client waits until `timeout` ends it.
    // That silence is what RFC 5780's filtering test reads as "address and port dependent".
    std::thread::sleep(Duration::from_millis(100));
    let (rc, out) = stunclient(&rig.topo.caller, 3, &["-f", &RELAY_A_IP.to_string()]);
    assert_eq!(rc, 124, "{out}");
    assert_eq!(out.matches("RFC 5780 response").count(), 0, "{out}");
    assert_eq!(
        addrs(&out, "UDP reflexive addr").first().map(|a| a.ip()),
        Some(NAT_A_OUT_IP.into()),
        "{out}"
    );
}
