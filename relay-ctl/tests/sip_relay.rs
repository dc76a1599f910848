//! Seed 003's SIP relay interface end to end: a SIP proxy on the relay box (a UDP socket in
//! the relay namespace) sends relay server invites to the daemon's SIP port, a caller and a
//! callee behind their own NATs then send media to the one port the 302 named.
mod common;

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use common::*;
use relay_ctl::{
    api::{LatchPolicy, SessionState},
    sip::{media, message::Message},
};
use relay_testbed::{CALLEE_IP, CALLER_IP, NAT_A_OUT_IP, NAT_B_OUT_IP, RELAY_A_IP};

const N: usize = 50;
const SIP_PORT: u16 = 5062;
/// The caller's network is the private one in this test: its SDP address is not kept.
const PRIVATE: &str = "192.0.2.0/24";

fn sip_addr() -> SocketAddr {
    SocketAddr::from((RELAY_A_IP, SIP_PORT))
}

/// The proxy: a SIP socket on the relay box (where Kamailio would run).
fn proxy(rig: &Rig) -> UdpSocket {
    let s = rig
        .topo
        .relay
        .udp_socket(SocketAddr::from((RELAY_A_IP, 5060)))
        .expect("proxy socket");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s
}

fn sdp(ip: &str, audio: u16, video: Option<u16>) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {audio} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    if let Some(v) = video {
        s.push_str(&format!(
            "m=video {v} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        ));
    }
    s
}

/// A relay server invite (seed 003 FIG. 8a): the session id header and the client's SDP.
fn invite(session: &str, cseq: u32, branch: &str, body: &str) -> String {
    format!(
        "INVITE sip:relay@{RELAY_A_IP}:{SIP_PORT} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {RELAY_A_IP}:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.invalid>;tag=a1\r\n\
         To: <sip:bob@example.invalid>\r\n\
         Call-ID: {session}-dialog\r\n\
         Session-ID: {session}\r\n\
         CSeq: {cseq} INVITE\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The callee's OK, as the proxy forwards it to the relay.
fn ok(session: &str, body: &str) -> String {
    format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP {RELAY_A_IP}:5060;branch=z9hG4bK-ok\r\n\
         From: <sip:alice@example.invalid>;tag=a1\r\n\
         To: <sip:bob@example.invalid>;tag=b1\r\n\
         Call-ID: {session}-dialog\r\n\
         Session-ID: {session}\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn request(method: &str, session: &str, cseq: u32) -> String {
    format!(
        "{method} sip:relay@{RELAY_A_IP}:{SIP_PORT} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {RELAY_A_IP}:5060;branch=z9hG4bK-{method}-{cseq}\r\n\
         From: <sip:alice@example.invalid>;tag=a1\r\n\
         To: <sip:bob@example.invalid>;tag=b1\r\n\
         Call-ID: {session}-dialog\r\n\
         Session-ID: {session}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn exchange(sock: &UdpSocket, msg: &str) -> Vec<u8> {
    sock.send_to(msg.as_bytes(), sip_addr()).expect("send");
    let mut buf = vec![0u8; 65_535];
    let (n, from) = sock.recv_from(&mut buf).expect("a SIP reply");
    assert_eq!(from, sip_addr(), "the reply comes from the SIP port");
    buf.truncate(n);
    buf
}

fn parse(reply: &[u8]) -> Message {
    Message::parse(reply).expect("the reply is SIP")
}

fn no_reply(sock: &UdpSocket, msg: &[u8]) {
    sock.send_to(msg, sip_addr()).expect("send");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    assert!(sock.recv_from(&mut buf).is_err(), "no reply expected");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
}

fn used_pairs(rig: &Rig) -> (u32, u32) {
    let p = rig.api(|c| c.get_ports()).expect("ports");
    p.pools.iter().fold((0, 0), |(u, q), pool| {
        (u + pool.used_pairs, q + pool.quarantined_pairs)
    })
}

#[test]
fn relay_server_invite_gets_a_302_and_the_call_goes_through_xdp() {
    let rig = Rig::start("sip", &["--sip-private-net", PRIVATE]);
    let proxy = proxy(&rig);
    let id = "5a1e55100000000000000000000000a1";
    let inv = invite(
        id,
        1,
        "z9hG4bK-inv1",
        &sdp(&CALLER_IP.to_string(), 5004, Some(5006)),
    );

    // FIG. 8b: a 302 with the session id and an SDP naming the relay's address, one audio
    // and one video port.
    let reply = exchange(&proxy, &inv);
    let m = parse(&reply);
    assert_eq!(m.status, Some(302), "{}", String::from_utf8_lossy(&reply));
    assert_eq!(m.header("Session-ID"), Some(id));
    assert!(m.header("To").is_some_and(|t| t.contains("tag=")));
    assert!(m.has_sdp());
    let offered = media::offered(&m.body).expect("302 SDP parses");
    assert_eq!(offered.len(), 2);
    assert_eq!(offered[0].kind, media::Kind::Audio);
    assert_eq!(offered[1].kind, media::Kind::Video);
    assert_eq!(
        (offered[0].proto.as_str(), offered[0].fmt.as_str()),
        ("RTP/AVP", "0 101")
    );
    let audio = offered[0].addr.expect("audio port");
    let video = offered[1].addr.expect("video port");
    assert_eq!(audio.ip(), RELAY_A_IP);
    assert_eq!(video.ip(), RELAY_A_IP);
    assert_ne!(audio.port(), video.port());
    assert_eq!((audio.port() % 2, video.port() % 2), (0, 0));

    // Step 64: the session record; the caller's SDP address is private, so it is not kept.
    let s = rig.session(id);
    assert_eq!(s.policy, LatchPolicy::Alternate);
    assert_eq!(s.state, SessionState::Offered);
    assert_eq!(s.streams.len(), 2);
    assert!(s.streams.iter().all(|st| st.shared_port));
    assert_eq!(s.streams[0].legs[0].relay, audio);
    assert_eq!(s.streams[1].legs[0].relay, video);
    assert_eq!(s.streams[0].legs[0].signalled, None);
    assert_eq!(used_pairs(&rig), (2, 0));

    // A retransmission gets the same response from the cache, and nothing new.
    assert_eq!(exchange(&proxy, &inv), reply);
    assert_eq!(rig.ctl("sip_retransmissions"), 1);
    assert_eq!(used_pairs(&rig), (2, 0));
    // The ACK of the 302 needs no answer.
    no_reply(&proxy, request("ACK", id, 1).as_bytes());

    // The OK's SDP fills the second channel (a routable address here) and answers.
    no_reply(
        &proxy,
        ok(id, &sdp(&CALLEE_IP.to_string(), 6004, Some(6006))).as_bytes(),
    );
    assert!(wait_for(Duration::from_secs(2), || rig.session(id).state
        == SessionState::Answered));
    let s = rig.session(id);
    assert_eq!(
        s.streams[0].legs[1].signalled,
        Some(SocketAddr::from((CALLEE_IP, 6004)))
    );
    assert_eq!(
        s.streams[1].legs[1].signalled,
        Some(SocketAddr::from((CALLEE_IP, 6006)))
    );

    // Media: both parties send to the one audio port; the relay tells them apart by source
    // (FIG. 11) and, once both are known, XDP relays.
    let caller = rig.caller(CALLER_PORT);
    let callee = rig.callee(CALLEE_PORT);
    caller.send_to(b"open-a", audio).expect("send");
    assert!(
        wait_for(Duration::from_secs(3), || rig.session(id).streams[0].legs
            [0]
        .latched
        .is_some()),
        "{}",
        rig.log()
    );
    callee.send_to(b"open-b", audio).expect("send");
    assert_eq!(
        tags(&recv_n(&caller, 1, Duration::from_secs(2))),
        vec!["open-b"]
    );
    let s = rig.session(id);
    assert_eq!(
        s.streams[0].legs[0].latched.map(|a| a.ip()),
        Some(NAT_A_OUT_IP.into())
    );
    assert_eq!(
        s.streams[0].legs[1].latched.map(|a| a.ip()),
        Some(NAT_B_OUT_IP.into())
    );
    let before = rig.stats().forwarded_kernel_packets;
    send_n(&caller, audio, "c", N);
    assert_eq!(
        tags(&recv_n(&callee, N, Duration::from_secs(2))),
        expect_tags("c", N)
    );
    send_n(&callee, audio, "e", N);
    let got = recv_n(&caller, N, Duration::from_secs(2));
    assert_eq!(tags(&got), expect_tags("e", N));
    assert!(
        got.iter().all(|(_, from)| *from == audio),
        "from the relay port"
    );
    assert_eq!(
        rig.stats().forwarded_kernel_packets - before,
        2 * N as u64,
        "{}",
        rig.log()
    );

    // A re-INVITE (new CSeq) with the same media keeps the ports; this time the offer names
    // a routable address, which the record keeps as the first channel's (step 64).
    let re = exchange(
        &proxy,
        &invite(id, 2, "z9hG4bK-inv2", &sdp("203.0.113.7", 5004, Some(5006))),
    );
    let re_offered = media::offered(&parse(&re).body).expect("SDP");
    assert_eq!(re_offered[0].addr, Some(audio));
    assert_eq!(re_offered[1].addr, Some(video));
    assert_eq!(used_pairs(&rig), (2, 0));
    let s = rig.session(id);
    assert_eq!(
        s.streams[0].legs[0].signalled,
        "203.0.113.7:5004".parse().ok()
    );
    assert_eq!(
        s.streams[1].legs[0].signalled,
        "203.0.113.7:5006".parse().ok()
    );
    // Latches are untouched: media keeps flowing through XDP.
    send_n(&caller, audio, "r", 5);
    assert_eq!(
        tags(&recv_n(&callee, 5, Duration::from_secs(2))),
        expect_tags("r", 5)
    );

    // BYE frees the ports (quarantine) and a second BYE finds nothing.
    let bye = parse(&exchange(&proxy, &request("BYE", id, 3)));
    assert_eq!(bye.status, Some(200));
    assert!(rig.api(|c| c.get_session(id)).is_err());
    assert_eq!(used_pairs(&rig), (0, 2));
    let again = parse(&exchange(&proxy, &request("BYE", id, 4)));
    assert_eq!(again.status, Some(481));

    let metrics = rig.api(|c| c.metrics()).expect("metrics");
    for line in [
        "media_relay_sip_relay_events_total{event=\"rx_invite\"} 3",
        "media_relay_sip_relay_events_total{event=\"reinvites\"} 1",
        "media_relay_sip_relay_events_total{event=\"tx_3xx\"} 3",
        "media_relay_sip_relay_events_total{event=\"sessions_created\"} 1",
        "media_relay_sip_relay_events_total{event=\"sessions_deleted\"} 1",
        "media_relay_sip_relay_events_total{event=\"err_unknown_session\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[test]
fn bad_requests_get_clear_errors_and_install_nothing() {
    // One port pair in the range: an audio+video invite cannot be served.
    let rig = Rig::start(
        "sipe",
        &[
            "--sip-private-net",
            PRIVATE,
            "--port-min",
            "30000",
            "--port-max",
            "30001",
        ],
    );
    let proxy = proxy(&rig);
    let caller_sdp = sdp(&CALLER_IP.to_string(), 5004, None);

    // Not SIP: dropped and counted (there is nothing to address a reply to).
    no_reply(&proxy, b"\x00\x01 definitely not SIP");
    assert_eq!(rig.ctl("sip_err_unparsable"), 1);

    let cases: [(String, u16, &str); 4] = [
        // No body.
        (request("INVITE", "e1", 1), 400, "sip_err_no_sdp"),
        // A body that is not SDP.
        (
            invite("e2", 1, "z9hG4bK-e2", "v=0\r\no=broken\r\n"),
            488,
            "sip_err_bad_sdp",
        ),
        // SDP with nothing the relay carries.
        (
            invite(
                "e3",
                1,
                "z9hG4bK-e3",
                "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n\
                 m=application 9 TCP/BFCP *\r\n",
            ),
            488,
            "sip_err_no_media",
        ),
        // Two port pairs needed, one available: 503, and the one pair is not held.
        (
            invite(
                "e4",
                1,
                "z9hG4bK-e4",
                &sdp(&CALLER_IP.to_string(), 5004, Some(5006)),
            ),
            503,
            "sip_err_no_resource",
        ),
    ];
    for (msg, status, counter) in &cases {
        let r = parse(&exchange(&proxy, msg));
        assert_eq!(r.status, Some(*status), "{msg}");
        assert!(r.header("Warning").is_some(), "a Warning says why");
        if *status == 503 {
            assert!(r.header("Retry-After").is_some());
        }
        assert_eq!(rig.ctl(counter), 1, "{counter}");
        assert_eq!(used_pairs(&rig), (0, 0), "nothing held after {counter}");
    }
    assert!(rig.api(|c| c.get_sessions()).expect("list").is_empty());

    // Headers missing that a response needs: dropped, counted.
    no_reply(
        &proxy,
        invite("e5", 1, "z9hG4bK-e5", &caller_sdp)
            .replace("CSeq: 1 INVITE\r\n", "")
            .as_bytes(),
    );
    assert_eq!(rig.ctl("sip_err_missing_header"), 1);
    // Without Via, From or To no response can be routed: dropped before anything is
    // allocated (once, the session and its ports stayed until the offer timeout), and a BYE
    // without them deletes nothing.
    for (n, header) in ["Via:", "From:", "To:"].iter().enumerate() {
        let msg = invite(&format!("e6-{n}"), 1, "z9hG4bK-e6", &caller_sdp);
        let stripped: String = msg
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with(header))
            .collect();
        assert_ne!(stripped, msg, "{header} was in the request");
        no_reply(&proxy, stripped.as_bytes());
        assert_eq!(rig.ctl("sip_err_missing_header"), 2 + n as u64, "{header}");
        assert_eq!(used_pairs(&rig), (0, 0), "nothing held without {header}");
    }
    assert!(rig.api(|c| c.get_sessions()).expect("list").is_empty());

    // Methods: OPTIONS is answered (keepalive), others are refused with Allow.
    let o = parse(&exchange(&proxy, &request("OPTIONS", "o1", 1)));
    assert_eq!(o.status, Some(200));
    let m = parse(&exchange(&proxy, &request("MESSAGE", "m1", 1)));
    assert_eq!(m.status, Some(405));
    assert_eq!(m.header("Allow"), Some("INVITE, ACK, BYE, OPTIONS"));

    // An OK for a session nobody invited is counted and changes nothing.
    no_reply(&proxy, ok("nobody", &caller_sdp).as_bytes());
    assert!(wait_for(Duration::from_secs(2), || rig
        .ctl("sip_err_unknown_session")
        == 1));

    // An audio session fits; a re-INVITE that adds video is refused and the session stays.
    let first = parse(&exchange(
        &proxy,
        &invite("ok1", 1, "z9hG4bK-ok1", &caller_sdp),
    ));
    assert_eq!(first.status, Some(302));
    let changed = parse(&exchange(
        &proxy,
        &invite(
            "ok1",
            2,
            "z9hG4bK-ok2",
            &sdp(&CALLER_IP.to_string(), 5004, Some(5006)),
        ),
    ));
    assert_eq!(changed.status, Some(488));
    assert_eq!(rig.session("ok1").streams.len(), 1);
    assert_eq!(used_pairs(&rig), (1, 0));
}

/// The interface is its proxies': an endpoint that can reach the relay address gets nothing
/// from it, a proxy cannot flood it, and a SIP request cannot touch a call another front end
/// set up (issue 15: an endpoint host took over and ended ng calls, and exhausted the pool).
#[test]
fn only_its_proxies_use_it_at_their_rate_and_only_on_their_own_calls() {
    let rig = Rig::start("sipa", &["--sip-rate", "20"]);
    let proxy = proxy(&rig);
    let caller_sdp = sdp(&CALLER_IP.to_string(), 5004, None);

    // An endpoint behind its NAT (not in the default allow list, the relay box itself):
    // dropped unread, nothing allocated.
    let endpoint = rig.caller(5070);
    endpoint
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    for n in 0..50 {
        let msg = invite(&format!("ep{n}"), 1, "z9hG4bK-ep", &caller_sdp);
        endpoint.send_to(msg.as_bytes(), sip_addr()).expect("send");
    }
    let mut buf = [0u8; 2048];
    assert!(
        endpoint.recv_from(&mut buf).is_err(),
        "no reply to an endpoint"
    );
    assert!(wait_for(Duration::from_secs(2), || rig
        .ctl("sip_err_not_allowed")
        == 50));
    assert_eq!(used_pairs(&rig), (0, 0));
    assert_eq!(rig.ctl("sip_rx_invite"), 0, "not even parsed");

    // A call set up by another front end (here the operator's API; ng is the same): a SIP
    // re-INVITE cannot change it and a BYE cannot end it.
    let other = rig
        .create(call("not-sips", LatchPolicy::Immediate))
        .expect("created");
    let before = other.streams[0].legs[0].signalled;
    let hijack = parse(&exchange(
        &proxy,
        &invite(
            "not-sips",
            1,
            "z9hG4bK-h1",
            &sdp("203.0.113.66", 7000, None),
        ),
    ));
    assert_eq!(hijack.status, Some(481), "not the SIP interface's call");
    let bye = parse(&exchange(&proxy, &request("BYE", "not-sips", 2)));
    assert_eq!(bye.status, Some(481));
    let after = rig.session("not-sips");
    assert_eq!(after.streams[0].legs[0].signalled, before);
    assert!(rig.ctl("session_foreign_refused") >= 2);

    // Its own calls it still sets up and ends.
    let own = parse(&exchange(
        &proxy,
        &invite("sips1", 1, "z9hG4bK-s1", &caller_sdp),
    ));
    assert_eq!(own.status, Some(302));
    let bye = parse(&exchange(&proxy, &request("BYE", "sips1", 2)));
    assert_eq!(bye.status, Some(200));

    // A flood from the proxy itself: at most its rate (20/s burst) gets through.
    let limited_before = rig.ctl("sip_err_rate_limited");
    let t0 = std::time::Instant::now();
    // In bursts of 40 with a breath between them, so the socket's receive buffer never
    // overflows and every request reaches the daemon's loop.
    for n in 0..200 {
        let msg = request("OPTIONS", &format!("fl{n}"), 1);
        proxy.send_to(msg.as_bytes(), sip_addr()).expect("send");
        if n % 40 == 39 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let sent_in = t0.elapsed().as_secs_f64();
    proxy
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut answered = 0;
    while proxy.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    let allowed = 20.0 + 20.0 * (sent_in + 0.5);
    assert!(
        (1..=allowed as usize).contains(&answered),
        "{answered} answered in {sent_in:.2} s"
    );
    // Every request was either answered or dropped and counted.
    let limited = || rig.ctl("sip_err_rate_limited") - limited_before;
    wait_for(Duration::from_secs(2), || {
        limited() + answered as u64 >= 200
    });
    assert_eq!(
        limited() + answered as u64,
        200,
        "{answered} answered, {} rate-limited",
        limited()
    );
}

/// Interop: SIPp (a SIP tool nobody here wrote) plays the proxy for 20 calls: its parser
/// must accept our 302, find the relay address and even audio/video ports in its SDP and a
/// To tag (the scenario fails the call otherwise), and its BYEs must free every port.
#[test]
fn sipp_as_the_proxy_gets_302s_and_frees_with_bye() {
    const CALLS: u32 = 20;
    let rig = Rig::start("sipp", &["--sip-private-net", PRIVATE]);
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/relay_invite.xml");
    let dir = std::env::temp_dir().join(format!("mr-sipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", rig.topo.relay.name(), "sipp"])
        .arg(format!("{RELAY_A_IP}:{SIP_PORT}"))
        .args(["-sf", scenario, "-i", &RELAY_A_IP.to_string(), "-p", "5070"])
        .args(["-m", &CALLS.to_string(), "-r", "20", "-l", "5"])
        .args([
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .current_dir(&dir)
        .output()
        .expect("run sipp");
    let errors: String = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "sipp exit {:?}\n{}\n{errors}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        rig.log()
    );
    assert_eq!(rig.ctl("sip_sessions_created"), u64::from(CALLS));
    assert_eq!(rig.ctl("sip_sessions_deleted"), u64::from(CALLS));
    assert!(rig.api(|c| c.get_sessions()).expect("list").is_empty());
    // Two pairs (audio, video) per call, all in quarantine now.
    assert_eq!(used_pairs(&rig), (0, 2 * CALLS));
}
