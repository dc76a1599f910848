//! The seed's scenario end to end, with the real daemon: B behind a port-restricted NAT has
//! only ever sent a STUN Binding to the relay; A gets a ticket from the API and makes the
//! relay's XDP send B a datagram from that STUN address:port, which B's NAT lets in. Forged,
//! replayed and expired tickets do not get through, each counted under its own reason. Also:
//! STUN through a NAT (answered in XDP), RFC 5780 CHANGE-REQUEST answered by the controller
//! from its second address, key rotation with a grace period, keys kept over a kill -9.
mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use common::{Rig, recv_n, wait_for};
use relay_ctl::{
    client::ClientError,
    reflector::{TicketRequest, TicketView, tickets::unhex},
    stun::message::{
        ATTR_CHANGE_REQUEST, ATTR_MAPPED_ADDRESS, ATTR_OTHER_ADDRESS, ATTR_RESPONSE_ORIGIN,
        ATTR_XOR_MAPPED_ADDRESS, Builder, Class, METHOD_BINDING, decode_address, parse,
    },
};
use relay_testbed::{CALLEE_IP, NAT_A_OUT_IP, NAT_B_OUT_IP, RELAY_A_IP, RELAY_B_IP, RELAY_IF_A};

const REFLECTOR_PORT: u16 = 3490;
const STUN_PORT: u16 = 3478;
const ALT_PORT: u16 = 3479;
const ALT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);

/// A STUN answer as a client sees it.
#[derive(Debug)]
struct StunReply {
    from: SocketAddr,
    class: Class,
    xor_mapped: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    origin: Option<SocketAddr>,
    other: Option<SocketAddr>,
}

/// Send a Binding request (with `change` as CHANGE-REQUEST if given) and wait for one answer.
fn binding(
    sock: &UdpSocket,
    server: SocketAddr,
    change: Option<u32>,
    wait: Duration,
) -> Option<StunReply> {
    let txid: [u8; 12] =
        std::array::from_fn(|i| (i as u8) ^ (sock.local_addr().map_or(0, |a| a.port()) as u8));
    let mut b = Builder::new(METHOD_BINDING, Class::Request, txid);
    if let Some(c) = change {
        b.attr(ATTR_CHANGE_REQUEST, &c.to_be_bytes());
    }
    sock.send_to(&b.finish(true), server).expect("send binding");
    sock.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    let m = parse(&buf[..n]).expect("a STUN answer");
    assert_eq!(m.txid, txid, "transaction id echoed");
    assert!(m.fingerprint, "FINGERPRINT answered with FINGERPRINT");
    let addr = |t, x: bool| {
        m.attr(t)
            .and_then(|v| decode_address(v, x.then_some(&m.txid)))
    };
    Some(StunReply {
        from,
        class: m.class,
        xor_mapped: addr(ATTR_XOR_MAPPED_ADDRESS, true),
        mapped: addr(ATTR_MAPPED_ADDRESS, false),
        origin: addr(ATTR_RESPONSE_ORIGIN, false),
        other: addr(ATTR_OTHER_ADDRESS, false),
    })
}

fn dp(rig: &Rig, name: &str) -> u64 {
    rig.stats().dataplane.get(name).copied().unwrap_or(0)
}

fn ticket(
    rig: &Rig,
    src: SocketAddr,
    dst: SocketAddr,
    from: SocketAddr,
    ttl: u64,
) -> Result<TicketView, ClientError> {
    let req = TicketRequest {
        src: src.to_string(),
        dst: dst.to_string(),
        from: from.to_string(),
        ttl: Some(ttl),
    };
    rig.api(|c| c.post("/v1/reflector/tickets", &req))
}

fn packet(t: &TicketView, payload: &[u8]) -> Vec<u8> {
    let mut p = unhex(&t.header_hex).expect("hex header");
    p.extend_from_slice(payload);
    p
}

fn metrics(rig: &Rig) -> String {
    rig.api(|c| c.metrics()).expect("metrics")
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_start)
                .map(|v| v.trim().parse().unwrap_or(u64::MAX))
        })
        .unwrap_or(0)
}

#[test]
fn seed_scenario_reflects_through_a_port_restricted_nat_and_refuses_bad_tickets() {
    let reflector_port = REFLECTOR_PORT.to_string();
    let rig = Rig::start(
        "rfl",
        &["--reflector-port", &reflector_port, "--stun-port", "3478"],
    );
    let stun_b: SocketAddr = (RELAY_B_IP, STUN_PORT).into();
    let stun_a: SocketAddr = (RELAY_A_IP, STUN_PORT).into();

    // B has only ever sent this one Binding request; XDP answers it with B's NAT mapping.
    let b = rig.callee(7000);
    let answered0 = dp(&rig, "stun_answered");
    let rb = binding(&b, stun_b, None, Duration::from_secs(2)).unwrap_or_else(|| {
        panic!(
            "B's binding answered: {:?}\n{}",
            rig.stats().dataplane,
            rig.log()
        )
    });
    let b_mapped = rb.xor_mapped.expect("XOR-MAPPED-ADDRESS");
    assert_eq!(
        b_mapped.ip(),
        NAT_B_OUT_IP,
        "B learns NAT-B's outside address"
    );
    assert_eq!((rb.from, rb.class), (stun_b, Class::Success));
    assert_eq!(
        dp(&rig, "stun_answered"),
        answered0 + 1,
        "answered in XDP:\n{}",
        rig.log()
    );

    // A learns its own mapping the same way (the relay sees A as NAT-A's address).
    let a = rig.caller(5500);
    let a_mapped = binding(&a, stun_a, None, Duration::from_secs(2))
        .and_then(|r| r.xor_mapped)
        .expect("A's mapping");
    assert_eq!(a_mapped.ip(), NAT_A_OUT_IP);

    // A's ticket: from B's STUN address:port to B's mapping, bound to A's mapping. Through
    // the CLI with --json, as an operator would.
    let out = rig
        .daemon
        .cli(
            "127.0.0.1:9901".parse().unwrap(),
            &[
                "reflector",
                "ticket",
                "--src",
                &stun_b.to_string(),
                "--dst",
                &b_mapped.to_string(),
                "--from",
                &a_mapped.to_string(),
                "--ttl",
                "60",
                "--json",
            ],
        )
        .expect("cli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: TicketView = serde_json::from_slice(&out.stdout).expect("ticket JSON");
    assert_eq!(
        (t.src, t.dst, t.from, t.ttl),
        (stun_b, b_mapped, a_mapped, 60)
    );
    let refl: SocketAddr = (RELAY_A_IP, REFLECTOR_PORT).into();
    let reflected0 = dp(&rig, "reflected");
    a.send_to(&packet(&t, b"hello-b"), refl).expect("send");
    let got = recv_n(&b, 1, Duration::from_secs(2));
    assert_eq!(got.len(), 1, "B got the reflected datagram:\n{}", rig.log());
    assert_eq!(got[0].0, "hello-b");
    assert_eq!(got[0].1, stun_b, "from the STUN address:port B had sent to");
    assert_eq!(dp(&rig, "reflected"), reflected0 + 1);

    // Forged: one MAC bit flipped.
    let mut forged = packet(&t, b"forged");
    forged[50] ^= 1;
    let bad_mac0 = dp(&rig, "drop_reflect_bad_mac");
    a.send_to(&forged, refl).expect("send");
    assert!(wait_for(Duration::from_secs(2), || dp(
        &rig,
        "drop_reflect_bad_mac"
    ) == bad_mac0 + 1));

    // Replayed byte for byte by a third host (NAT-B's router, 198.18.2.2, on the relay's
    // other link) and by another socket behind NAT-A (another outer port): both fail the MAC.
    let third = rig
        .topo
        .nat_b
        .udp_socket((NAT_B_OUT_IP, 9100).into())
        .expect("third host socket");
    third
        .send_to(
            &packet(&t, b"replay-third"),
            SocketAddr::from((RELAY_B_IP, REFLECTOR_PORT)),
        )
        .expect("send");
    let a2 = rig.caller(5502);
    a2.send_to(&packet(&t, b"replay-port"), refl).expect("send");
    assert!(
        wait_for(Duration::from_secs(2), || dp(&rig, "drop_reflect_bad_mac")
            == bad_mac0 + 3),
        "both replays refused for their MAC:\n{:?}",
        rig.stats().dataplane
    );

    // Expired: a 1-second ticket used after the clock map has passed its expiry.
    let short = ticket(&rig, stun_b, b_mapped, a_mapped, 1).expect("short ticket");
    let expired0 = dp(&rig, "drop_reflect_expired");
    // XDP refuses once the clock map says more than `expiry`. The daemon writes the clock
    // once a second (whole seconds), so a value past `expiry` is there by the wall time
    // expiry + 2 s; wait for that plus a margin for a late tick, however the ticks fall.
    let deadline = std::time::UNIX_EPOCH + Duration::from_secs(short.expiry + 2);
    let wait = deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    std::thread::sleep(wait + Duration::from_millis(500));
    a.send_to(&packet(&short, b"expired"), refl).expect("send");
    assert!(wait_for(Duration::from_secs(2), || dp(
        &rig,
        "drop_reflect_expired"
    ) == expired0 + 1));

    // None of the refused ones reached B.
    let late = recv_n(&b, 1, Duration::from_millis(300));
    assert!(late.is_empty(), "refused tickets delivered: {late:?}");

    // Bad requests: a clear 400 and a counter each; the metrics carry both and the XDP drops.
    let e = ticket(
        &rig,
        (RELAY_B_IP, 9).into(),
        (Ipv4Addr::LOCALHOST, 9).into(),
        a_mapped,
        5,
    )
    .unwrap_err();
    let ClientError::Api(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!(e.status, 400);
    assert!(e.error.contains("dst 127.0.0.1 is refused"), "{}", e.error);
    let e = ticket(&rig, (CALLEE_IP, 9).into(), b_mapped, a_mapped, 5).unwrap_err();
    assert!(
        matches!(&e, ClientError::Api(x) if x.status == 400 && x.error.contains("not one of this relay's reflect sources")),
        "{e:?}"
    );
    let e = ticket(&rig, stun_b, b_mapped, a_mapped, 100_000).unwrap_err();
    assert!(
        matches!(&e, ClientError::Api(x) if x.status == 400 && x.error.contains("ttl")),
        "{e:?}"
    );
    let e = rig
        .api(|c| c.post::<TicketView>("/v1/reflector/tickets", &serde_json::json!({"src": 1})))
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Api(x) if x.status == 400),
        "{e:?}"
    );
    let m = metrics(&rig);
    assert_eq!(
        metric(&m, "media_relay_reflector_tickets_total{result=\"issued\"}"),
        2,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "media_relay_reflector_tickets_total{result=\"refused_bad_dst\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "media_relay_reflector_tickets_total{result=\"refused_bad_src\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "media_relay_reflector_tickets_total{result=\"refused_bad_ttl\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "media_relay_reflector_tickets_total{result=\"refused_bad_body\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "media_relay_xdp_drops_total{reason=\"reflect_bad_mac\"}"
        ),
        bad_mac0 + 3
    );
    assert_eq!(
        metric(
            &m,
            "media_relay_xdp_drops_total{reason=\"reflect_expired\"}"
        ),
        expired0 + 1
    );
    assert!(
        metric(&m, "media_relay_xdp_events_total{event=\"stun_answered\"}") >= 2,
        "{m}"
    );
}

#[test]
fn rfc5780_change_request_is_answered_from_the_other_address() {
    let alt = ALT_IP.to_string();
    let rig = Rig::start_prepared(
        "r5780",
        &[
            "--stun-alt-addr",
            &alt,
            "--stun-alt-port",
            "3479",
            "--relay-addr",
            "198.18.1.1",
            "--relay-addr",
            "198.18.2.1",
        ],
        |t| {
            t.relay
                .ip(&["addr", "add", &format!("{ALT_IP}/24"), "dev", RELAY_IF_A])
                .expect("second address")
        },
    );
    let primary: SocketAddr = (RELAY_A_IP, STUN_PORT).into();
    let other: SocketAddr = (ALT_IP, ALT_PORT).into();
    // No NAT in the way: a client on the relay's link (NAT-A's own address).
    let c = rig
        .topo
        .nat_a
        .udp_socket((NAT_A_OUT_IP, 9200).into())
        .expect("client");
    let me: SocketAddr = (NAT_A_OUT_IP, 9200).into();
    let passed0 = dp(&rig, "pass_stun_unsupported");
    for (flags, want_from) in [
        (0u32, primary),
        (0x2, SocketAddr::from((RELAY_A_IP, ALT_PORT))),
        (0x4, SocketAddr::from((ALT_IP, STUN_PORT))),
        (0x6, other),
    ] {
        let r = binding(&c, primary, Some(flags), Duration::from_secs(2))
            .unwrap_or_else(|| panic!("answer to CHANGE-REQUEST {flags:#x}:\n{}", rig.log()));
        assert_eq!(r.class, Class::Success);
        assert_eq!(r.from, want_from, "flags {flags:#x}");
        assert_eq!(r.origin, Some(want_from));
        assert_eq!(r.other, Some(other));
        assert_eq!((r.xor_mapped, r.mapped), (Some(me), Some(me)));
    }
    assert_eq!(
        dp(&rig, "pass_stun_unsupported"),
        passed0 + 4,
        "XDP passed them up"
    );
    // The other address answers too, naming the primary as its OTHER-ADDRESS.
    let r =
        binding(&c, other, Some(0), Duration::from_secs(2)).expect("answer on the other address");
    assert_eq!(
        (r.from, r.other),
        (other, Some(SocketAddr::from((RELAY_A_IP, STUN_PORT))))
    );

    // Behind port-restricted NAT-A, a change-IP answer is filtered (what RFC 5780's filtering
    // test detects), the same-address answer is not.
    let a = rig.caller(5600);
    let r =
        binding(&a, primary, Some(0), Duration::from_secs(2)).expect("plain answer through NAT-A");
    assert_eq!(r.xor_mapped.map(|m| m.ip()), Some(NAT_A_OUT_IP.into()));
    assert!(
        binding(&a, primary, Some(0x6), Duration::from_millis(700)).is_none(),
        "NAT-A filters the other address"
    );
    let m = metrics(&rig);
    assert!(
        metric(&m, "media_relay_stun_user_total{event=\"success_changed\"}") >= 4,
        "{m}"
    );
}

#[test]
fn keys_rotate_with_a_grace_period_and_survive_a_kill_9() {
    let reflector_port = REFLECTOR_PORT.to_string();
    let mut rig = Rig::start(
        "rkey",
        &[
            "--reflector-port",
            &reflector_port,
            "--reflect-key-rotate-secs",
            "4",
            "--reflect-key-grace-secs",
            "6",
            "--ticket-max-ttl-secs",
            "6",
        ],
    );
    let stun_b: SocketAddr = (RELAY_B_IP, STUN_PORT).into();
    let b = rig.callee(7100);
    let b_mapped = binding(&b, stun_b, None, Duration::from_secs(2))
        .and_then(|r| r.xor_mapped)
        .expect("B mapping");
    let a = rig.caller(5700);
    let a_mapped = binding(
        &a,
        (RELAY_A_IP, STUN_PORT).into(),
        None,
        Duration::from_secs(2),
    )
    .and_then(|r| r.xor_mapped)
    .expect("A mapping");
    let refl: SocketAddr = (RELAY_A_IP, REFLECTOR_PORT).into();
    let send_ok = |t: &TicketView, tag: &str| -> bool {
        a.send_to(&packet(t, tag.as_bytes()), refl).expect("send");
        recv_n(&b, 1, Duration::from_millis(800))
            .iter()
            .any(|(p, _)| p == tag)
    };
    let t1 = ticket(&rig, stun_b, b_mapped, a_mapped, 6).expect("ticket");
    assert!(send_ok(&t1, "k1"), "{}", rig.log());

    // kill -9 and restart over the pins: the key is still there and still signs.
    rig.daemon.kill9().expect("kill");
    let args = common::daemon_args(
        &rig.state_file,
        &[
            "--reflector-port",
            &reflector_port,
            "--reflect-key-rotate-secs",
            "4",
            "--reflect-key-grace-secs",
            "6",
            "--ticket-max-ttl-secs",
            "6",
        ],
    );
    rig.daemon = relay_testbed::DaemonProcess::start_with(
        common::bin(),
        &rig.topo.relay,
        std::path::Path::new(common::BPFFS_ROOT),
        &rig.name,
        &args,
        false,
    )
    .expect("restart");
    assert!(
        send_ok(&t1, "k1-after-restart"),
        "pre-restart ticket still valid:\n{}",
        rig.log()
    );

    // Rotation: a new key id signs; the old ticket still verifies during the grace period
    // (it expires with its 6-second ttl at the latest), and after that the key is gone.
    let mut t2 = ticket(&rig, stun_b, b_mapped, a_mapped, 6).expect("ticket");
    assert!(
        wait_for(Duration::from_secs(6), || {
            t2 = ticket(&rig, stun_b, b_mapped, a_mapped, 6).expect("ticket");
            t2.key_id != t1.key_id
        }),
        "key rotated:\n{}",
        rig.log()
    );
    assert!(send_ok(&t2, "k2"));
    let unknown0 = dp(&rig, "drop_reflect_unknown_key");
    // Old key removed `grace` after it was retired: tickets naming it are refused as unknown.
    assert!(
        wait_for(Duration::from_secs(8), || {
            // A ticket with the old key id, re-signed with garbage: what counts is the key lookup.
            let mut h = unhex(&t1.header_hex).expect("hex");
            h[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
            a.send_to(&h, refl).expect("send");
            std::thread::sleep(Duration::from_millis(200));
            dp(&rig, "drop_reflect_unknown_key") > unknown0
        }),
        "old key removed after the grace period:\n{}",
        rig.log()
    );
    let m = metrics(&rig);
    assert!(
        metric(
            &m,
            "media_relay_reflector_key_events_total{event=\"rotated\"}"
        ) >= 1,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "media_relay_reflector_key_events_total{event=\"removed\"}"
        ) >= 1,
        "{m}"
    );
}
