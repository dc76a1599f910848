//! Shared harness of the controller's end-to-end tests: a caller and a callee each behind
//! its own NAT, the real `relay-ctl daemon` on the relay box, its HTTP API reached from inside
//! the relay namespace, real UDP sockets on the end hosts.
#![allow(dead_code)]
use std::{
    net::{SocketAddr, SocketAddrV4, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use relay_ctl::{
    api::{CreateSession, LatchPolicy, SessionView, SideRequest, StatsView, StreamRequest},
    client::ApiClient,
    client::ClientError,
};
use relay_testbed::{
    CALLEE_IP, CALLER_IP, DaemonProcess, NatTopology, RELAY_A_IP, RELAY_B_IP, RELAY_IF_A,
    RELAY_IF_B,
};

pub const BPFFS_ROOT: &str = "/sys/fs/bpf/media-relay-test";
pub const API: &str = "127.0.0.1:9901";
pub const CALLER_PORT: u16 = 5004;
pub const CALLEE_PORT: u16 = 6004;

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_relay-ctl"))
}

pub fn api_addr() -> SocketAddr {
    API.parse().expect("constant")
}

/// A call's world: topology, daemon, state file (removed on drop).
pub struct Rig {
    pub name: String,
    pub state_file: PathBuf,
    pub daemon: DaemonProcess,
    pub topo: NatTopology,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.state_file);
        let _ = std::fs::remove_file(relay_ctl::reflector::service::ring_file(&self.state_file));
        let mut lock = self.state_file.as_os_str().to_owned();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
    }
}

/// Daemon arguments every test uses, plus `extra`.
pub fn daemon_args(state_file: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["--iface", RELAY_IF_A, "--iface", RELAY_IF_B, "--state-file"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(state_file.display().to_string());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

impl Rig {
    pub fn start(tag: &str, extra: &[&str]) -> Rig {
        Self::start_prepared(tag, extra, |_| {})
    }

    /// [`Rig::start`], running `prep` on the topology before the daemon starts (e.g. to add a
    /// second relay address).
    pub fn start_prepared(tag: &str, extra: &[&str], prep: impl FnOnce(&NatTopology)) -> Rig {
        Self::start_full(tag, extra, prep, |_| vec![])
    }

    /// [`Rig::start`] with extra environment variables for the daemon, computed from its log
    /// file's path (see `DaemonProcess::start_with_env`).
    pub fn start_env(
        tag: &str,
        extra: &[&str],
        env: impl FnOnce(&Path) -> Vec<(String, String)>,
    ) -> Rig {
        Self::start_full(tag, extra, |_| {}, env)
    }

    fn start_full(
        tag: &str,
        extra: &[&str],
        prep: impl FnOnce(&NatTopology),
        env: impl FnOnce(&Path) -> Vec<(String, String)>,
    ) -> Rig {
        let name = format!("{tag}{}", std::process::id());
        let topo = NatTopology::build(&name).expect("topology");
        prep(&topo);
        topo.prime_neighbours().expect("neighbours");
        let state_file = std::env::temp_dir().join(format!("mr-state-{name}.json"));
        let _ = std::fs::remove_file(&state_file);
        let daemon = DaemonProcess::start_with_env(
            bin(),
            &topo.relay,
            Path::new(BPFFS_ROOT),
            &name,
            &daemon_args(&state_file, extra),
            true,
            env,
        )
        .expect("daemon starts");
        Rig {
            name,
            state_file,
            daemon,
            topo,
        }
    }

    /// Run `f` with an API client inside the relay namespace (the API is on its loopback).
    pub fn api<T: Send>(&self, f: impl FnOnce(&ApiClient) -> T + Send) -> T {
        self.topo
            .relay
            .run(|| f(&ApiClient::new(api_addr())))
            .expect("enter the relay namespace")
    }

    pub fn create(&self, req: CreateSession) -> Result<SessionView, ClientError> {
        self.api(|c| c.create_session(req))
    }

    pub fn session(&self, id: &str) -> SessionView {
        self.api(|c| c.get_session(id)).expect("session exists")
    }

    pub fn stats(&self) -> StatsView {
        self.api(|c| c.get_stats()).expect("stats")
    }

    pub fn ctl(&self, name: &str) -> u64 {
        self.stats().controller.get(name).copied().unwrap_or(0)
    }

    pub fn caller(&self, port: u16) -> UdpSocket {
        self.topo
            .caller
            .udp_socket(SocketAddr::from((CALLER_IP, port)))
            .expect("caller socket")
    }

    pub fn callee(&self, port: u16) -> UdpSocket {
        self.topo
            .callee
            .udp_socket(SocketAddr::from((CALLEE_IP, port)))
            .expect("callee socket")
    }

    /// The daemon's log, for failure messages.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

/// An audio call as a SIP proxy would create it: the peers' (private) SDP addresses, side A
/// on the relay's caller-facing address, side B on the callee-facing one.
pub fn call(id: &str, policy: LatchPolicy) -> CreateSession {
    CreateSession {
        call_id: id.to_owned(),
        policy: Some(policy),
        answered: Some(true),
        streams: vec![StreamRequest {
            media: Some("audio".into()),
            a: SideRequest {
                peer: Some(SocketAddr::from((CALLER_IP, CALLER_PORT))),
                rtcp_peer: None,
                relay_addr: Some(RELAY_A_IP.into()),
            },
            b: SideRequest {
                peer: Some(SocketAddr::from((CALLEE_IP, CALLEE_PORT))),
                rtcp_peer: None,
                relay_addr: Some(RELAY_B_IP.into()),
            },
        }],
    }
}

/// Relay endpoints (A's, B's) of stream 0.
pub fn relays(v: &SessionView) -> (SocketAddr, SocketAddr) {
    (v.streams[0].legs[0].relay, v.streams[0].legs[1].relay)
}

pub fn rtcp(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port() + 1)
}

/// Receive until `n` datagrams arrived or `quiet` passed without one; returns payloads and
/// the sources they came from.
pub fn recv_n(sock: &UdpSocket, n: usize, quiet: Duration) -> Vec<(String, SocketAddr)> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    let mut out = vec![];
    let mut buf = [0u8; 2048];
    while out.len() < n {
        match sock.recv_from(&mut buf) {
            Ok((len, from)) => out.push((String::from_utf8_lossy(&buf[..len]).into_owned(), from)),
            Err(_) => break,
        }
    }
    out
}

/// Send `n` RTP-sized datagrams tagged `tag-i`, paced so no socket buffer overflows.
pub fn send_n(sock: &UdpSocket, to: SocketAddr, tag: &str, n: usize) {
    for i in 0..n {
        let mut p = format!("{tag}-{i}").into_bytes();
        p.resize(160, b'.');
        sock.send_to(&p, to).expect("send");
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Payload tags of received datagrams (padding stripped).
pub fn tags(got: &[(String, SocketAddr)]) -> Vec<String> {
    got.iter()
        .map(|(p, _)| p.trim_end_matches('.').to_owned())
        .collect()
}

pub fn expect_tags(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// Poll `f` until it is true or `limit` passed.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Both parties send one opener (that is what opens each NAT's pinhole and latches each
/// leg), then the caller drains what the relay forwarded of the callee's opener.
pub fn open_call(rig: &Rig, caller: &UdpSocket, callee: &UdpSocket, v: &SessionView) {
    let (ra, rb) = relays(v);
    caller.send_to(b"open-a", ra).expect("send");
    assert!(
        wait_for(Duration::from_secs(3), || rig.session(&v.call_id).streams
            [0]
        .legs[0]
            .latched
            .is_some()),
        "caller's leg latched:\n{}",
        rig.log()
    );
    callee.send_to(b"open-b", rb).expect("send");
    let got = recv_n(caller, 1, Duration::from_secs(2));
    assert_eq!(
        tags(&got),
        vec!["open-b"],
        "callee's opener reached the caller via the controller:\n{}",
        rig.log()
    );
    assert_eq!(got[0].1, ra, "from the caller's relay endpoint");
}

pub fn v4(s: SocketAddr) -> SocketAddrV4 {
    match s {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("v4 expected"),
    }
}
