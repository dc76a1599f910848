//! The ng control protocol against the real daemon in the NAT testbed: our own datagrams
//! (framing, retransmissions, every error path) and rtpengine-utils' `rtpengine-ng-client`,
//! with media through the relay and XDP.
mod common;

use std::{net::UdpSocket, process::Command, time::Duration};

use common::*;
use relay_ctl::{
    ng::bencode::{self, DictBuilder, Value},
    sdp::Sdp,
};
use relay_testbed::{RELAY_A_IP, RELAY_B_IP, RELAY_IF_A, RELAY_IF_B};

const NG: &str = "127.0.0.1:2223";

/// An ng client inside the relay namespace.
struct Client {
    sock: UdpSocket,
    n: u32,
}

impl Client {
    fn new(rig: &Rig) -> Client {
        let sock = rig
            .topo
            .relay
            .udp_socket("127.0.0.1:0".parse().expect("addr"))
            .expect("ng client socket");
        sock.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        Client { sock, n: 0 }
    }

    /// Send raw bytes, return the raw reply (None on timeout).
    fn raw(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        self.sock.send_to(datagram, NG).expect("send");
        let mut buf = vec![0u8; 65535];
        let n = self.sock.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Send `msg` with `cookie`; check the cookie is echoed; decode the reply.
    fn with_cookie(&self, cookie: &str, msg: &Value) -> Value {
        let mut d = format!("{cookie} ").into_bytes();
        d.extend(bencode::encode(msg));
        let r = self.raw(&d).expect("a reply");
        let body = r
            .strip_prefix(format!("{cookie} ").as_bytes())
            .expect("the reply echoes the cookie");
        bencode::decode(body).expect("the reply is bencode")
    }

    fn req(&mut self, msg: &Value) -> Value {
        self.n += 1;
        let cookie = format!("{}_{}", std::process::id(), self.n);
        self.with_cookie(&cookie, msg)
    }
}

fn s(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string {k:?} in {v:?}"))
        .to_owned()
}

fn error_reason(v: &Value) -> String {
    assert_eq!(s(v, "result"), "error", "{v:?}");
    s(v, "error-reason")
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(Value::str).collect())
}

/// The caller's SDP offer: private address, audio and video, ICE attributes.
fn caller_sdp(audio: u16, video: u16) -> String {
    format!(
        "v=0\r\no=caller 1 1 IN IP4 192.0.2.2\r\ns=call\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n\
a=ice-ufrag:abcd\r\nm=audio {audio} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
a=candidate:1 1 UDP 2130706431 192.0.2.2 {audio} typ host\r\na=sendrecv\r\n\
m=video {video} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    )
}

fn callee_sdp(audio: u16, video: u16) -> String {
    format!(
        "v=0\r\no=callee 7 7 IN IP4 198.51.100.2\r\ns=call\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\n\
m=audio {audio} RTP/AVP 0\r\na=sendrecv\r\nm=video {video} RTP/AVP 96\r\n"
    )
}

fn offer(call: &str, sdp: &str) -> Value {
    DictBuilder::new()
        .str("command", "offer")
        .str("call-id", call)
        .str("from-tag", "tag-a")
        .str("via-branch", "z9hG4bK1")
        .str("sdp", sdp)
        .put(
            "flags",
            list(&["trust-address", "no-such-flag", "port latching"]),
        )
        .put("replace", list(&["origin", "session-connection"]))
        .str("ICE", "remove")
        .put("direction", list(&[RELAY_IF_A, RELAY_IF_B]))
        .put("received-from", list(&["IP4", "198.18.1.2"]))
        .str("transport-protocol", "RTP/AVP")
        .build()
}

fn answer(call: &str, sdp: &str) -> Value {
    DictBuilder::new()
        .str("command", "answer")
        .str("call-id", call)
        .str("from-tag", "tag-a")
        .str("to-tag", "tag-b")
        .str("sdp", sdp)
        .put("flags", list(&["trust-address"]))
        .put("replace", list(&["origin", "session-connection"]))
        .str("ICE", "remove")
        .build()
}

fn sdp_of(v: &Value) -> Sdp {
    assert_eq!(s(v, "result"), "ok", "{v:?}");
    Sdp::parse(v.get("sdp").and_then(Value::as_bytes).expect("sdp")).expect("valid SDP")
}

fn used_pairs(rig: &Rig) -> u32 {
    rig.api(|c| c.get_ports())
        .expect("ports")
        .pools
        .iter()
        .map(|p| p.used_pairs)
        .sum()
}

#[test]
fn offer_answer_media_reinvite_query_delete_over_ng() {
    let rig = Rig::start("ng", &[]);
    let mut ng = Client::new(&rig);
    assert_eq!(
        s(
            &ng.req(&DictBuilder::new().str("command", "ping").build()),
            "result"
        ),
        "pong"
    );

    // Offer from the caller: the SDP the callee gets names the callee-facing relay address
    // (direction r0 -> r1), with one stream per m= line.
    let off = offer("ng-call-1", &caller_sdp(5004, 5006));
    let cookie = "retrans-1";
    let r1 = ng.with_cookie(cookie, &off);
    let to_callee = sdp_of(&r1);
    assert_eq!(to_callee.media.len(), 2);
    for m in &to_callee.media {
        assert_eq!(m.addr, std::net::IpAddr::from(RELAY_B_IP), "{m:?}");
    }
    let text = String::from_utf8_lossy(to_callee.as_bytes()).into_owned();
    assert!(
        !text.contains("candidate") && !text.contains("ice-ufrag"),
        "{text}"
    );
    assert!(
        text.contains("o=caller 1 1 IN IP4 198.18.2.1\r\n"),
        "{text}"
    );
    assert!(text.contains("a=rtpmap:96 H264/90000\r\n"), "{text}");
    assert_eq!(used_pairs(&rig), 4, "two streams, two sides");

    // A retransmission (same cookie) gets the cached reply, not a second allocation.
    let r1b = ng.with_cookie(cookie, &off);
    assert_eq!(r1, r1b);
    assert_eq!(used_pairs(&rig), 4);
    assert_eq!(rig.ctl("ng_retransmits"), 1);
    assert_eq!(
        rig.ctl("ng_unknown_flags"),
        1,
        "no-such-flag ignored and counted; the retransmission was not handled again"
    );

    // Answer from the callee: the caller gets the caller-facing relay address.
    let to_caller = sdp_of(&ng.req(&answer("ng-call-1", &callee_sdp(6004, 6006))));
    for m in &to_caller.media {
        assert_eq!(m.addr, std::net::IpAddr::from(RELAY_A_IP), "{m:?}");
    }
    let v = rig.session("ng-call-1");
    assert_eq!(v.state.as_str(), "answered");
    assert_eq!(v.streams.len(), 2);
    assert_eq!(v.streams[0].legs[0].relay.port(), to_caller.media[0].port);
    assert_eq!(v.streams[0].legs[1].relay.port(), to_callee.media[0].port);

    // Media both ways behind the NATs: the relay latches, then XDP forwards.
    let caller = rig.caller(5004);
    let callee = rig.callee(6004);
    open_call(&rig, &caller, &callee, &v);
    let (ra, rb) = relays(&v);
    send_n(&caller, ra, "a", 50);
    // The caller's opener went nowhere (the callee's signalled address is private); the
    // callee's opener latched side B, so everything since reaches the callee.
    assert_eq!(
        tags(&recv_n(&callee, 50, Duration::from_secs(2))),
        expect_tags("a", 50)
    );
    send_n(&callee, rb, "b", 50);
    assert_eq!(
        tags(&recv_n(&caller, 50, Duration::from_secs(2))),
        expect_tags("b", 50)
    );
    let v = rig.session("ng-call-1");
    assert!(
        v.streams[0]
            .legs
            .iter()
            .all(|l| l.kernel && l.packets_kernel > 0),
        "both legs in XDP: {:?}\n{}",
        v.streams[0].legs,
        rig.log()
    );

    // re-INVITE with unchanged media keeps the ports.
    let again = sdp_of(&ng.req(&offer("ng-call-1", &caller_sdp(5004, 5006))));
    assert_eq!(
        again.media.iter().map(|m| m.port).collect::<Vec<_>>(),
        to_callee.media.iter().map(|m| m.port).collect::<Vec<_>>()
    );
    assert_eq!(used_pairs(&rig), 4);
    sdp_of(&ng.req(&answer("ng-call-1", &callee_sdp(6004, 6006))));

    // query, list, statistics in rtpengine's shapes.
    let q = ng.req(
        &DictBuilder::new()
            .str("command", "query")
            .str("call-id", "ng-call-1")
            .build(),
    );
    assert_eq!(s(&q, "result"), "ok");
    let tags_d = q.get("tags").expect("tags");
    let a = tags_d.get("tag-a").expect("caller's tag");
    assert_eq!(s(a, "in dialogue with"), "tag-b");
    let medias = a.get("medias").and_then(Value::as_list).expect("medias");
    assert_eq!(medias.len(), 2);
    assert_eq!(s(&medias[0], "type"), "audio");
    let rtp = q.get("totals").and_then(|t| t.get("RTP")).expect("totals");
    assert!(rtp.get("packets").and_then(Value::as_int).unwrap_or(0) >= 100);
    let l = ng.req(&DictBuilder::new().str("command", "list").build());
    assert_eq!(l.get("calls"), Some(&list(&["ng-call-1"])));
    let st = ng.req(&DictBuilder::new().str("command", "statistics").build());
    let cur = st
        .get("statistics")
        .and_then(|s| s.get("currentstatistics"))
        .expect("currentstatistics");
    assert_eq!(cur.get("sessionsown").and_then(Value::as_int), Some(1));

    // delete frees the ports (to quarantine) and reports the call's totals.
    let d = ng.req(
        &DictBuilder::new()
            .str("command", "delete")
            .str("call-id", "ng-call-1")
            .str("from-tag", "tag-a")
            .build(),
    );
    assert_eq!(s(&d, "result"), "ok", "{d:?}");
    assert_eq!(used_pairs(&rig), 0);
    let quarantined: u32 = rig
        .api(|c| c.get_ports())
        .expect("ports")
        .pools
        .iter()
        .map(|p| p.quarantined_pairs)
        .sum();
    assert_eq!(quarantined, 4);
    assert!(rig.api(|c| c.get_session("ng-call-1")).is_err());

    let m = rig.api(|c| c.metrics()).expect("metrics");
    assert!(m.contains("ng_requests_total{command=\"offer\"} 2"), "{m}");
    assert!(m.contains("ng_unknown_flags_total"), "{m}");
}

#[test]
fn every_error_is_a_clear_reply_and_nothing_leaks() {
    let rig = Rig::start("ngerr", &[]);
    let mut ng = Client::new(&rig);
    let cmd = |c: &str| DictBuilder::new().str("command", c);

    // Framing: no cookie is dropped (nothing to reply with); bad bencode and non-dictionaries
    // get an error reply with the cookie.
    ng.sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    assert_eq!(ng.raw(b"no-space-no-cookie"), None);
    ng.sock
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let r = ng.raw(b"c1 d7:command4:pi").expect("reply");
    let r = bencode::decode(r.strip_prefix(b"c1 ").expect("cookie")).expect("bencode");
    assert!(error_reason(&r).contains("bencode"), "{r:?}");
    let r = ng.raw(b"c2 li1ee").expect("reply");
    let r = bencode::decode(r.strip_prefix(b"c2 ").expect("cookie")).expect("bencode");
    assert!(error_reason(&r).contains("dictionary"), "{r:?}");

    let reason = |ng: &mut Client, v: Value| error_reason(&ng.req(&v));
    assert!(reason(&mut ng, DictBuilder::new().str("call-id", "x").build()).contains("command"));
    assert!(reason(&mut ng, cmd("frobnicate").build()).contains("Unrecognized command"));
    assert!(
        reason(
            &mut ng,
            cmd("offer").str("from-tag", "t").str("sdp", "v=0").build()
        )
        .contains("call-id")
    );
    assert!(
        reason(
            &mut ng,
            cmd("offer").str("call-id", "c").str("sdp", "v=0").build()
        )
        .contains("from-tag")
    );
    assert!(
        reason(
            &mut ng,
            cmd("offer")
                .str("call-id", "c")
                .str("from-tag", "t")
                .build()
        )
        .contains("sdp")
    );
    // Malformed SDP: a clear error, no session, no port taken.
    for bad in [
        "hello",
        "v=0\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
    ] {
        let e = reason(
            &mut ng,
            cmd("offer")
                .str("call-id", "bad-sdp")
                .str("from-tag", "t")
                .str("sdp", bad)
                .build(),
        );
        assert!(e.contains("SDP"), "{bad:?}: {e}");
    }
    let e = reason(
        &mut ng,
        cmd("offer")
            .str("call-id", "srtp")
            .str("from-tag", "t")
            .str("sdp", caller_sdp(5004, 5006))
            .str("transport-protocol", "RTP/SAVP")
            .build(),
    );
    assert!(e.contains("does not convert"), "{e}");
    assert!(reason(&mut ng, answer("nope", &callee_sdp(1, 2))).contains("Unknown call-id"));
    let ans = cmd("answer")
        .str("call-id", "c")
        .str("from-tag", "t")
        .str("sdp", "v=0")
        .build();
    assert!(reason(&mut ng, ans).contains("to-tag"));
    assert!(
        reason(&mut ng, cmd("delete").str("call-id", "nope").build()).contains("Unknown call-id")
    );
    assert!(
        reason(&mut ng, cmd("query").str("call-id", "nope").build()).contains("Unknown call-id")
    );
    assert!(reason(&mut ng, cmd("delete").build()).contains("call-id"));
    assert_eq!(used_pairs(&rig), 0, "nothing allocated by failed requests");
    assert!(rig.api(|c| c.get_sessions()).expect("sessions").is_empty());

    // An answer whose media count differs from the offer's is refused; the call stays.
    sdp_of(&ng.req(&offer("mismatch", &caller_sdp(5004, 5006))));
    let one = "v=0\r\no=- 1 1 IN IP4 198.51.100.2\r\ns=-\r\nc=IN IP4 198.51.100.2\r\nt=0 0\r\nm=audio 6004 RTP/AVP 0\r\n";
    assert!(reason(&mut ng, answer("mismatch", one)).contains("media sections"));
    assert_eq!(used_pairs(&rig), 4);
    assert_eq!(rig.session("mismatch").state.as_str(), "offered");
    assert!(rig.ctl("ng_errors") >= 15, "{:?}", rig.stats().controller);
    assert!(rig.ctl("ng_error_sdp") >= 4);
    assert_eq!(rig.ctl("ng_bad_frames"), 3);
}

/// rtpengine-utils' client (Perl, its own bencode and cookies) drives us unchanged.
#[test]
fn rtpengine_ng_client_drives_offer_answer_query_delete() {
    let rig = Rig::start("ngcli", &[]);
    let client = |args: &[&str]| -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                rig.topo.relay.name(),
                "rtpengine-ng-client",
            ])
            .args(["--proxy-address", "127.0.0.1", "--proxy-port", "2223"])
            .args(args)
            .output()
            .expect("rtpengine-ng-client runs (./x setup installs rtpengine-utils)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}\n{}", rig.log());
        text
    };
    let sdp =
        "v=0\no=moo 1 2 IN IP4 192.0.2.2\ns=-\nc=IN IP4 192.0.2.2\nt=0 0\nm=audio 5004 RTP/AVP 0\n";
    let out = client(&[
        "offer",
        "--trust-address",
        "--replace-origin",
        "--call-id=cli-1",
        "--from-tag=ft",
        &format!("--sdp={sdp}"),
    ]);
    let new_sdp = out.split("New SDP:").nth(1).expect("new SDP printed");
    assert!(new_sdp.contains("c=IN IP4 198.18.1.1"), "{out}");
    assert!(new_sdp.contains("o=moo 1 2 IN IP4 198.18.1.1"), "{out}");
    let v = rig.session("cli-1");
    let port_b = v.streams[0].legs[1].relay.port();
    assert!(
        new_sdp.contains(&format!("m=audio {port_b} RTP/AVP 0")),
        "{out}"
    );

    let answer_sdp = "v=0\no=moo 1 2 IN IP4 198.51.100.2\ns=-\nc=IN IP4 198.51.100.2\nt=0 0\nm=audio 6004 RTP/AVP 0\n";
    let out = client(&[
        "answer",
        "--trust-address",
        "--call-id=cli-1",
        "--from-tag=ft",
        "--to-tag=tt",
        &format!("--sdp={answer_sdp}"),
    ]);
    let port_a = v.streams[0].legs[0].relay.port();
    assert!(
        out.contains(&format!("m=audio {port_a} RTP/AVP 0")),
        "{out}"
    );
    assert_eq!(rig.session("cli-1").state.as_str(), "answered");

    let out = client(&["query", "--call-id=cli-1"]);
    assert!(
        out.contains("in dialogue with") && out.contains("tt"),
        "{out}"
    );
    let out = client(&["list"]);
    assert!(out.contains("cli-1"), "{out}");
    client(&["delete", "--call-id=cli-1", "--from-tag=ft"]);
    assert!(rig.api(|c| c.get_session("cli-1")).is_err());
    assert_eq!(used_pairs(&rig), 0);
}

/// After a daemon restart the sessions are adopted from the state file; the ng layer adopts
/// them on the proxy's next request: a re-INVITE keeps the ports, BYE deletes.
#[test]
fn ng_calls_survive_a_daemon_restart() {
    let mut rig = Rig::start("ngrst", &[]);
    let mut ng = Client::new(&rig);
    let to_callee = sdp_of(&ng.req(&offer("rst-1", &caller_sdp(5004, 5006))));
    sdp_of(&ng.req(&answer("rst-1", &callee_sdp(6004, 6006))));
    rig.daemon.stop().expect("stop");
    let new = relay_testbed::DaemonProcess::start_with(
        bin(),
        &rig.topo.relay,
        std::path::Path::new(BPFFS_ROOT),
        &rig.name,
        &daemon_args(&rig.state_file, &[]),
        false,
    )
    .expect("restarted daemon adopts");
    let _old = std::mem::replace(&mut rig.daemon, new);
    let mut ng = Client::new(&rig);
    let again = sdp_of(&ng.req(&offer("rst-1", &caller_sdp(5004, 5006))));
    assert_eq!(
        again
            .media
            .iter()
            .map(|m| (m.addr, m.port))
            .collect::<Vec<_>>(),
        to_callee
            .media
            .iter()
            .map(|m| (m.addr, m.port))
            .collect::<Vec<_>>(),
        "same relay ports after the restart"
    );
    assert_eq!(rig.ctl("ng_adopted_calls"), 1);
    sdp_of(&ng.req(&answer("rst-1", &callee_sdp(6004, 6006))));
    let d = ng.req(
        &DictBuilder::new()
            .str("command", "delete")
            .str("call-id", "rst-1")
            .build(),
    );
    assert_eq!(s(&d, "result"), "ok", "{d:?}");
    assert_eq!(used_pairs(&rig), 0);
}
