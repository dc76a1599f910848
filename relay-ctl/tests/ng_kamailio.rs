//! Real peers end to end: Kamailio 5.6 with its stock `rtpengine` module drives the relay over
//! ng; sipp places a call from behind NAT-A to sipp behind NAT-B, both streaming RTP (sipp's
//! rtp_stream). Asserts the SDP each side got names the relay, the media went through XDP,
//! and the BYE freed the ports.
mod common;

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use common::*;
use relay_testbed::{NAT_B_OUT_IF, RELAY_A_IP, RELAY_B_IP};

/// A process killed (SIGTERM, then SIGKILL) and reaped on drop.
struct Proc {
    child: Child,
    what: &'static str,
}

impl Proc {
    fn spawn(what: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what} (./x setup installs it): {e}"));
        Proc { child, what }
    }

    /// Wait for the exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            if self.wait(Duration::from_secs(3)).is_none() {
                eprintln!("{} did not stop on SIGTERM; killing it", self.what);
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio")
}

fn netns_cmd(ns: &str, prog: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, prog]);
    c
}

/// NAT-B forwards SIP to the callee, like a port forward on a home router (a real callee
/// would register through its NAT instead; the media still goes through NAT-B's masquerade).
fn forward_sip_to_callee(rig: &Rig) {
    let ruleset = format!(
        r#"table ip nat {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{NAT_B_OUT_IF}" udp dport 5060 dnat to 198.51.100.2
    }}
}}
insert rule ip filter forward iifname "{NAT_B_OUT_IF}" udp dport 5060 ct status dnat accept
"#
    );
    let mut child = netns_cmd(rig.topo.nat_b.name(), "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ruleset.as_bytes())
            .expect("write ruleset");
    }
    assert!(
        child.wait().expect("nft").success(),
        "port forward on NAT-B"
    );
}

/// Kamailio is up when it answers a SIP request on the caller-facing address.
fn wait_for_kamailio(rig: &Rig, log: &Path) {
    let sock = rig
        .topo
        .relay
        .udp_socket("198.18.1.1:0".parse().expect("addr"))
        .expect("probe socket");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let probe = "OPTIONS sip:probe@198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.1:9;branch=z9hG4bKprobe\r\n\
From: <sip:probe@198.18.1.1>;tag=1\r\nTo: <sip:probe@198.18.1.1>\r\nCall-ID: probe\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let dst: SocketAddr = "198.18.1.1:5060".parse().expect("addr");
    let mut buf = [0u8; 2048];
    let ok = wait_for(Duration::from_secs(10), || {
        let _ = sock.send_to(probe.as_bytes(), dst);
        sock.recv(&mut buf).is_ok()
    });
    assert!(
        ok,
        "Kamailio answers SIP:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

fn sipp(ns: &str, dir: &Path, scenario: &str, ip: &str, media_port: &str, msg: &str) -> Command {
    let mut c = netns_cmd(ns, "sipp");
    c.current_dir(dir)
        .arg("-sf")
        .arg(here().join(scenario))
        .args(["-i", ip, "-p", "5060", "-mp", media_port, "-m", "1"])
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
        .args(["-trace_msg", "-message_file", msg])
        .args(["-trace_err", "-error_file", &format!("{msg}.err")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn kamailio_and_sipp_call_through_two_nats_with_media_in_xdp() {
    let rig = Rig::start("kam", &[]);
    forward_sip_to_callee(&rig);
    let dir = Scratch(std::env::temp_dir().join(format!("mr-kam-{}", std::process::id())));
    fs::create_dir_all(dir.0.join("run")).expect("scratch dir");
    // 3 s of PCMU silence: sipp's rtp_stream sends it as 20 ms packets (payload type 0).
    fs::write(dir.0.join("audio.pcmu"), vec![0xffu8; 24_000]).expect("audio file");

    let kam_log = dir.0.join("kamailio.log");
    let _kamailio = Proc::spawn(
        "kamailio",
        netns_cmd(rig.topo.relay.name(), "kamailio")
            .arg("-f")
            .arg(here().join("kamailio.cfg"))
            .args(["-DD", "-E", "-Y"])
            .arg(dir.0.join("run"))
            .arg("-w")
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&kam_log).expect("log file")),
    );
    wait_for_kamailio(&rig, &kam_log);

    let mut uas = Proc::spawn(
        "sipp (callee)",
        &mut sipp(
            rig.topo.callee.name(),
            &dir.0,
            "uas.xml",
            "198.51.100.2",
            "7000",
            "uas.msg",
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Proc::spawn(
        "sipp (caller)",
        sipp(
            rig.topo.caller.name(),
            &dir.0,
            "uac.xml",
            "192.0.2.2",
            "6000",
            "uac.msg",
        )
        .arg("198.18.1.1:5060"),
    );

    let diag = |what: &str| {
        let read = |f: &str| fs::read_to_string(dir.0.join(f)).unwrap_or_default();
        format!(
            "{what}\n--- kamailio\n{}\n--- uac\n{}{}\n--- uas\n{}{}\n--- daemon\n{}",
            read("kamailio.log"),
            read("uac.msg"),
            read("uac.msg.err"),
            read("uas.msg"),
            read("uas.msg.err"),
            rig.log()
        )
    };

    // During the call: one session, both legs forwarded by XDP.
    let mut seen = None;
    let in_xdp = wait_for(Duration::from_secs(8), || {
        let Ok(sessions) = rig.api(|c| c.get_sessions()) else {
            return false;
        };
        let Some(v) = sessions.first() else {
            return false;
        };
        seen = Some(v.clone());
        v.streams[0]
            .legs
            .iter()
            .all(|l| l.kernel && l.packets_kernel > 0)
    });
    assert!(in_xdp, "{}", diag(&format!("media in XDP: {seen:?}")));
    let v = seen.expect("session seen");
    let (relay_a, relay_b) = relays(&v);

    let uac_st = uac.wait(Duration::from_secs(30));
    let uas_st = uas.wait(Duration::from_secs(10));
    assert!(
        uac_st.is_some_and(|s| s.success()) && uas_st.is_some_and(|s| s.success()),
        "{}",
        diag(&format!("sipp exit: caller {uac_st:?}, callee {uas_st:?}"))
    );

    // What each side got in SDP names the relay (its own side's address and port).
    let uac_msgs = fs::read_to_string(dir.0.join("uac.msg")).unwrap_or_default();
    let uas_msgs = fs::read_to_string(dir.0.join("uas.msg")).unwrap_or_default();
    assert!(
        uac_msgs.contains(&format!("c=IN IP4 {RELAY_A_IP}"))
            && uac_msgs.contains(&format!("m=audio {} RTP/AVP 0", relay_a.port())),
        "{}",
        diag("the caller's 200 OK names the relay")
    );
    assert!(
        uas_msgs.contains(&format!("c=IN IP4 {RELAY_B_IP}"))
            && uas_msgs.contains(&format!("m=audio {} RTP/AVP 0", relay_b.port()))
            && !uas_msgs.contains("c=IN IP4 192.0.2.2"),
        "{}",
        diag("the callee's INVITE names the relay, not the caller")
    );

    // The BYE deleted the call: no session, its ports in quarantine.
    let freed = wait_for(Duration::from_secs(3), || {
        rig.api(|c| c.get_sessions()).is_ok_and(|s| s.is_empty())
    });
    assert!(freed, "{}", diag("BYE removed the session"));
    let ports = rig.api(|c| c.get_ports()).expect("ports");
    let used: u32 = ports.pools.iter().map(|p| p.used_pairs).sum();
    let quarantined: u32 = ports.pools.iter().map(|p| p.quarantined_pairs).sum();
    assert_eq!((used, quarantined), (0, 2), "{ports:?}");
    for cmd in [
        "ng_cmd_ping",
        "ng_cmd_offer",
        "ng_cmd_answer",
        "ng_cmd_delete",
    ] {
        assert!(rig.ctl(cmd) >= 1, "{cmd}: {:?}", rig.stats().controller);
    }
    assert_eq!(rig.ctl("ng_errors"), 0, "{}", diag("no ng errors"));
    // Everything Kamailio's module sends with these flags is understood.
    assert_eq!(
        (rig.ctl("ng_unknown_keys"), rig.ctl("ng_unknown_flags")),
        (0, 0)
    );
    // Each side streamed 3 s of 20 ms packets (150); all but the first few went through XDP.
    let st = rig.stats();
    eprintln!(
        "XDP forwarded {} packets, the controller {}; ng counters {:?}",
        st.forwarded_kernel_packets,
        st.forwarded_user_packets,
        st.controller
            .iter()
            .filter(|(k, _)| k.starts_with("ng_"))
            .collect::<Vec<_>>()
    );
    assert!(
        st.forwarded_kernel_packets >= 250 && st.forwarded_user_packets <= 10,
        "{}",
        diag(&format!("forwarded: {st:?}"))
    );
}
