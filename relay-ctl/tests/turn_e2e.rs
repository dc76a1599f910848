//! The TURN server against a client nobody here wrote: coturn's `turnutils_uclient` (and
//! `turnutils_peer` as the unmodified peer; Debian's `coturn` package, installed by
//! `./x setup`), run in the test namespaces against the real daemon. Seed 000's two modes:
//! forwarding (an allocation sending to a plain peer, channels and Send indications) and
//! relay (two allocations that are each other's peers, `-y`). Every client run is under
//! `timeout`; the peer is killed by its guard.
mod common;

use std::process::{Child, Command, Stdio};

use common::Rig;
use relay_testbed::{NAT_B_OUT_IP, Netns, RELAY_A_IP};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";
const SECRET: &str = "rest-secret-for-tests";

/// `turnutils_peer` in a namespace, killed on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peer(ns: &Netns, ip: &str, port: u16) -> Peer {
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "turnutils_peer", "-L", ip, "-p"])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnutils_peer (is coturn installed? ./x setup)");
    // Let it bind before the client sends.
    std::thread::sleep(std::time::Duration::from_millis(300));
    Peer(child)
}

/// Run the client in `ns`; returns (exit code, stdout + stderr).
fn uclient(ns: &Netns, args: &[&str]) -> (i32, String) {
    let mut a = vec![
        "netns",
        "exec",
        ns.name(),
        "timeout",
        "40",
        "turnutils_uclient",
    ];
    a.extend_from_slice(args);
    let out = Command::new("ip")
        .args(&a)
        .output()
        .expect("ip netns exec timeout turnutils_uclient (is coturn installed? ./x setup)");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The number after `key` in uclient's report (e.g. "tot_send_msgs=50").
fn report(out: &str, key: &str) -> Option<u64> {
    out.lines().rev().find_map(|l| {
        let (_, rest) = l.split_once(key)?;
        let digits: String = rest
            .trim_start_matches(['=', ':', ' '])
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().ok()
    })
}

/// The TURN server's counter `event` from /metrics.
fn turn_event(rig: &Rig, event: &str) -> u64 {
    let m = rig.api(|c| c.metrics()).expect("metrics");
    let needle = format!("media_relay_turn_events_total{{event=\"{event}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(needle.as_str())?.trim().parse().ok())
        .unwrap_or(0)
}

/// An XDP counter (`relay_common::Counter` by name).
fn xdp(rig: &Rig, name: &str) -> u64 {
    rig.stats().dataplane.get(name).copied().unwrap_or(0)
}

/// ChannelData relayed (client -> peer, peer -> client) by XDP and by userspace, so far.
fn channel_data(rig: &Rig) -> [u64; 4] {
    [
        xdp(rig, "turn_channel_to_peer"),
        xdp(rig, "turn_peer_to_channel"),
        turn_event(rig, "channel_data_from_client"),
        turn_event(rig, "channel_data_to_client"),
    ]
}

fn metric(rig: &Rig, name: &str) -> u64 {
    let m = rig.api(|c| c.metrics()).expect("metrics");
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
        .unwrap_or(0)
}

/// Sent and received as uclient reports them, asserting nothing was lost.
fn assert_all_received(out: &str, n: u64, clients: u64) {
    let sent = report(out, "tot_send_msgs").unwrap_or_else(|| panic!("no report:\n{out}"));
    let recv = report(out, "tot_recv_msgs").unwrap_or_else(|| panic!("no report:\n{out}"));
    assert_eq!(sent, n * clients, "sent:\n{out}");
    assert_eq!(recv, n * clients, "all echoed back:\n{out}");
}

fn turn_args(port: &str) -> Vec<&str> {
    vec![
        "--turn-port",
        port,
        "--turn-realm",
        "example.org",
        "--turn-user",
        "alice:wonderland",
        "--turn-secret",
        SECRET,
    ]
}

#[test]
fn forwarding_mode_channels_indications_and_credentials() {
    // TURN on the STUN port: one socket serves both.
    let rig = Rig::start("tfw", &turn_args("3478"));
    let _peer = peer(&rig.topo.nat_b, &NAT_B_OUT_IP.to_string(), 3480);
    let server = RELAY_A_IP.to_string();
    let peer_ip = NAT_B_OUT_IP.to_string();
    let base = [
        "-u", USER, "-w", PASSWORD, "-e", &peer_ip, "-r", "3480", "-n", "50", "-l", "120", "-z",
        "5", "-c",
    ];

    // Channels (uclient's default).
    let mut a = base.to_vec();
    a.push(&server);
    let (rc, out) = uclient(&rig.topo.caller, &a);
    assert_eq!(rc, 0, "{out}\n{}", rig.log());
    assert_all_received(&out, 50, 1);
    assert!(turn_event(&rig, "channel_bind_ok") >= 1, "{}", rig.log());
    // Every message went both ways; XDP carried the ChannelData once the channel was bound
    // (uclient binds before it sends), userspace at most the odd one that raced the entry.
    let [to_peer, to_client, user_from, user_to] = channel_data(&rig);
    eprintln!(
        "ChannelData: XDP {to_peer} to peer, {to_client} to client; userspace {user_from}, {user_to}"
    );
    assert!(to_peer + user_from >= 50 && to_client + user_to >= 50);
    assert!(
        to_peer >= 45 && to_client >= 45,
        "XDP carried too little: {to_peer} {to_client}"
    );
    // uclient allocates once more than it uses (a probe it deallocates again).
    assert!(turn_event(&rig, "allocate_ok") >= 1);

    // Send and Data indications (-s).
    let mut a = base.to_vec();
    a.extend_from_slice(&["-s", &server]);
    let (rc, out) = uclient(&rig.topo.caller, &a);
    assert_eq!(rc, 0, "{out}\n{}", rig.log());
    assert_all_received(&out, 50, 1);
    assert!(turn_event(&rig, "send_indication") >= 50);
    assert!(turn_event(&rig, "data_indication") >= 50);
    assert!(turn_event(&rig, "permission_ok") >= 1);
    // Indications are userspace's (50 each way); the channels' data was XDP's.
    assert!(metric(&rig, "media_relay_turn_user_relayed_packets_total") >= 100);

    // The STUN server still answers on the shared port (XDP answers plain Bindings; the
    // controller's handler is reached through the same socket for the rest).
    let (rc, out) = {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                rig.topo.caller.name(),
                "timeout",
                "10",
                "turnutils_stunclient",
                &server,
            ])
            .output()
            .expect("turnutils_stunclient");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("UDP reflexive addr"), "{out}");

    // Wrong password: the client gives up, the server counted why.
    let before = turn_event(&rig, "error_401_bad_integrity");
    let mut a = base.to_vec();
    a[3] = "not-the-password";
    a.push(&server);
    let (rc, out) = uclient(&rig.topo.caller, &a);
    assert_ne!(rc, 0, "{out}");
    assert!(
        turn_event(&rig, "error_401_bad_integrity") > before,
        "{out}\n{}",
        rig.log()
    );

    // TURN REST API credentials: uclient derives the username and password from the secret.
    let mut a = vec![
        "-W", SECRET, "-u", "bob", "-e", &peer_ip, "-r", "3480", "-n", "20", "-z", "5", "-c",
    ];
    a.push(&server);
    let before = turn_event(&rig, "allocate_ok");
    let (rc, out) = uclient(&rig.topo.caller, &a);
    assert_eq!(rc, 0, "{out}\n{}", rig.log());
    assert_all_received(&out, 20, 1);
    assert!(turn_event(&rig, "allocate_ok") > before);

    // Nothing may be relayed to the box itself: uclient with the relay's loopback as peer
    // gets 403 on its permission.
    let before = turn_event(&rig, "error_403_forbidden_peer");
    let mut a = base.to_vec();
    a[5] = "127.0.0.1";
    a.push(&server);
    let (_, out) = uclient(&rig.topo.caller, &a);
    assert!(
        turn_event(&rig, "error_403_forbidden_peer") > before,
        "{out}\n{}",
        rig.log()
    );

    // The operator view: uclient leaves its probe allocations behind (no permissions, no
    // channels), the ones that relayed deallocated. The CLI renders the same.
    let v = rig.api(|c| c.get::<serde_json::Value>("/v1/turn/allocations"));
    let v = v.expect("allocations");
    let allocs = v["allocations"].as_array().expect("a list");
    assert!(!allocs.is_empty(), "{v}");
    for a in allocs {
        let user = a["user"].as_str().unwrap_or("");
        assert!(user == USER || user.ends_with(":bob"), "{a}");
        assert_eq!(a["server"], format!("{server}:3478"), "{a}");
        let relayed: std::net::SocketAddr = a["relayed"][0]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("relayed address");
        assert_eq!(relayed.ip().to_string(), server);
        assert!((30000..=39999).contains(&relayed.port()), "{a}");
        assert_eq!(a["transport"], "udp");
    }
    // The kernel's legs map holds a LEG_F_TURN port entry for exactly the live relayed
    // addresses: the deallocated ones were unmarked.
    let dp = relay_ctl::dataplane::DataPlane::open(rig.daemon.instance()).expect("pinned maps");
    let mut marked: Vec<String> = dp
        .legs()
        .expect("legs")
        .into_iter()
        .filter(|(_, v)| v.flags & relay_common::leg::LEG_F_TURN != 0)
        .filter_map(|(k, _)| k.relay.to_socket_addr().map(|a| a.to_string()))
        .collect();
    let mut live: Vec<String> = allocs
        .iter()
        .filter_map(|a| a["relayed"][0].as_str().map(str::to_string))
        .collect();
    marked.sort();
    live.sort();
    assert_eq!(marked, live);
    let out = rig
        .daemon
        .cli(common::api_addr(), &["turn", "allocations"])
        .expect("relay-ctl turn allocations");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("RELAYED") && text.contains(USER), "{text}");
    assert_eq!(
        metric(&rig, "media_relay_turn_allocations"),
        allocs.len() as u64
    );
}

#[test]
fn relay_mode_two_allocations_relay_to_each_other() {
    // A TURN port of its own (the STUN server keeps 3478).
    let rig = Rig::start("trl", &turn_args("3490"));
    let server = RELAY_A_IP.to_string();
    let (rc, out) = uclient(
        &rig.topo.caller,
        &[
            "-u", USER, "-w", PASSWORD, "-p", "3490", "-y", "-n", "50", "-l", "120", "-z", "5",
            "-c", &server,
        ],
    );
    assert_eq!(rc, 0, "{out}\n{}", rig.log());
    assert_all_received(&out, 50, 2);
    // Two allocations, each with a channel to the other's relayed address.
    assert!(turn_event(&rig, "allocate_ok") >= 2, "{}", rig.log());
    assert!(turn_event(&rig, "channel_bind_ok") >= 2);
    // Relay mode in XDP: ChannelData from one client goes straight to the other, renumbered
    // (no userspace hop, no second pass through the peer path).
    let local = xdp(&rig, "turn_channel_local");
    let user = turn_event(&rig, "channel_data_to_client");
    eprintln!("relay mode: XDP renumbered {local}, userspace {user}");
    assert!(local + user >= 100);
    assert!(
        local >= 90,
        "XDP carried too little: {local}\n{}",
        rig.log()
    );
}

#[test]
fn tcp_and_tls_client_transports() {
    // A self-signed certificate made for this run (uclient does not verify it without -E).
    let dir = std::env::temp_dir().join(format!("turn-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=turn.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl made no certificate");
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let mut args = turn_args("3478");
    args.extend_from_slice(&[
        "--turn-tls-port",
        "5349",
        "--turn-tls-cert",
        &cert_s,
        "--turn-tls-key",
        &key_s,
    ]);
    let rig = Rig::start("ttc", &args);
    let _peer = peer(&rig.topo.nat_b, &NAT_B_OUT_IP.to_string(), 3480);
    let server = RELAY_A_IP.to_string();
    let peer_ip = NAT_B_OUT_IP.to_string();
    let base = [
        "-u", USER, "-w", PASSWORD, "-e", &peer_ip, "-r", "3480", "-n", "30", "-l", "120", "-z",
        "5", "-c",
    ];
    // TCP with channels, then with indications.
    for extra in [&["-t"][..], &["-t", "-s"][..]] {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        a.push(&server);
        let (rc, out) = uclient(&rig.topo.caller, &a);
        assert_eq!(rc, 0, "{extra:?}: {out}\n{}", rig.log());
        assert_all_received(&out, 30, 1);
    }
    // TLS.
    let mut a = base.to_vec();
    a.extend_from_slice(&["-t", "-S", "-p", "5349", &server]);
    let (rc, out) = uclient(&rig.topo.caller, &a);
    assert_eq!(rc, 0, "TLS: {out}\n{}", rig.log());
    assert_all_received(&out, 30, 1);
    // Every allocation of a stream client ended with its connection.
    let v = rig
        .api(|c| c.get::<serde_json::Value>("/v1/turn/allocations"))
        .expect("allocations");
    let streams = v["allocations"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|x| x["transport"] != "udp").count());
    assert_eq!(streams, 0, "{v}");
    assert!(turn_event(&rig, "channel_data_to_client") >= 60);
    assert!(turn_event(&rig, "data_indication") >= 30);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ipv6_relayed_address_for_an_ipv4_client() {
    let rig = Rig::start_prepared("tv6", &turn_args("3478"), |t| {
        t.add_ipv6().expect("ipv6");
        t.prime_neighbours6().expect("ipv6 neighbours");
    });
    let peer_ip = relay_testbed::NAT_B_OUT_IP6.to_string();
    let _peer = peer(&rig.topo.nat_b, &peer_ip, 3480);
    let server = RELAY_A_IP.to_string();
    // -x: REQUESTED-ADDRESS-FAMILY IPv6; the client talks to the server over IPv4.
    let (rc, out) = uclient(
        &rig.topo.caller,
        &[
            "-u", USER, "-w", PASSWORD, "-x", "-e", &peer_ip, "-r", "3480", "-n", "30", "-z", "5",
            "-c", &server,
        ],
    );
    assert_eq!(rc, 0, "{out}\n{}", rig.log());
    assert_all_received(&out, 30, 1);
    assert!(
        rig.log().contains("relayed [2001:db8:"),
        "an IPv6 relayed address:\n{}",
        rig.log()
    );
}
