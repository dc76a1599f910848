//! The HTTP layer and the operator CLI binary over one in-memory `Control`: the real
//! `server::serve` on 127.0.0.1:0, driven by raw HTTP requests (status codes, error bodies,
//! content types, body limits, unknown routes) and by the real `relay-ctl` binary run with
//! `--api`. (The real daemon's `Control` is tested by the daemon's own end-to-end tests.)
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpStream},
    process::{Command, Output},
    sync::{Arc, Mutex},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use relay_ctl::{
    api::{
        ApiError, Control, CreateSession, FrontEnd, InterfaceView, LatchPolicy, LegView,
        PeerUpdate, PoolView, PortsView, SessionState, SessionView, SideRequest, StatsView,
        StreamRequest, StreamUpdate, StreamView, UpdateSession, router::MAX_BODY_BYTES, server,
    },
    client::ApiClient,
    client::ClientError,
    error::Error,
    events::Event,
};
use serde_json::{Value, json};

const RELAY_IP: [u8; 4] = [198, 18, 1, 1];

/// Sessions in a map; ports handed out in pairs from 30000, like the real pool.
#[derive(Default)]
struct MemControl {
    state: Mutex<MemState>,
    fail_stats: bool,
}

#[derive(Default)]
struct MemState {
    sessions: BTreeMap<String, SessionView>,
    next_port: u16,
}

fn leg(side: &str, port: u16, req: &SideRequest) -> LegView {
    LegView {
        side: side.into(),
        relay: SocketAddr::from((RELAY_IP, port)),
        signalled: req.peer,
        latched: None,
        rtcp_latched: None,
        kernel: false,
        packets_kernel: 0,
        bytes_kernel: 0,
        packets_user: 0,
        bytes_user: 0,
        idle_secs: None,
        relatches: 0,
    }
}

/// A leg that has seen media and is forwarded by XDP.
fn latch(l: &mut LegView, from: SocketAddr) {
    l.latched = Some(from);
    l.rtcp_latched = Some(SocketAddr::new(from.ip(), from.port() + 1));
    l.kernel = true;
    l.packets_kernel = 500;
    l.bytes_kernel = 86_000;
    l.packets_user = 2;
    l.bytes_user = 344;
    l.idle_secs = Some(1);
}

fn totals(v: &mut SessionView) {
    let legs = || v.streams.iter().flat_map(|s| &s.legs);
    let (pk, bk, pu, bu) = legs().fold((0, 0, 0, 0), |t, l| {
        (
            t.0 + l.packets_kernel,
            t.1 + l.bytes_kernel,
            t.2 + l.packets_user,
            t.3 + l.bytes_user,
        )
    });
    v.packets_kernel = pk;
    v.bytes_kernel = bk;
    v.packets_user = pu;
    v.bytes_user = bu;
}

impl MemControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().expect("poisoned")
    }
}

fn no_session(id: &str) -> Error {
    Error::not_found(format!("no session {id:?}"))
}

impl Control for MemControl {
    fn sessions(&self) -> Vec<SessionView> {
        self.lock().sessions.values().cloned().collect()
    }
    fn session(&self, call_id: &str) -> Result<SessionView, Error> {
        self.lock()
            .sessions
            .get(call_id)
            .cloned()
            .ok_or_else(|| no_session(call_id))
    }
    fn create_session(&self, req: CreateSession, _: FrontEnd) -> Result<SessionView, Error> {
        if req.streams.is_empty() {
            return Err(Error::invalid("a session needs at least one stream"));
        }
        let mut st = self.lock();
        if st.sessions.contains_key(&req.call_id) {
            return Err(Error::conflict(format!(
                "session {:?} already exists",
                req.call_id
            )));
        }
        let mut streams = Vec::new();
        for (i, s) in req.streams.iter().enumerate() {
            let port = 30000 + st.next_port;
            st.next_port += 4;
            streams.push(StreamView {
                index: i as u32,
                media: s.media.clone().unwrap_or_else(|| "audio".into()),
                shared_port: false,
                legs: vec![leg("a", port, &s.a), leg("b", port + 2, &s.b)],
            });
        }
        let answered = req.answered.unwrap_or_else(|| {
            req.streams
                .iter()
                .all(|s| s.a.peer.is_some() && s.b.peer.is_some())
        });
        let v = SessionView {
            call_id: req.call_id.clone(),
            policy: req.policy.unwrap_or_default(),
            state: if answered {
                SessionState::Answered
            } else {
                SessionState::Offered
            },
            created_unix: 1_700_000_000,
            age_secs: 65,
            idle_secs: None,
            streams,
            packets_kernel: 0,
            bytes_kernel: 0,
            packets_user: 0,
            bytes_user: 0,
        };
        st.sessions.insert(req.call_id, v.clone());
        Ok(v)
    }
    fn update_session(
        &self,
        call_id: &str,
        req: UpdateSession,
        _: FrontEnd,
    ) -> Result<SessionView, Error> {
        let mut st = self.lock();
        let v = st
            .sessions
            .get_mut(call_id)
            .ok_or_else(|| no_session(call_id))?;
        for (stream, upd) in v.streams.iter_mut().zip(&req.streams) {
            let Some(upd) = upd else { continue };
            for (l, p) in stream.legs.iter_mut().zip([&upd.a, &upd.b]) {
                if let Some(peer) = p.as_ref().and_then(|p| p.peer) {
                    l.signalled = Some(peer);
                    // Pretend media flowed right after the answer.
                    latch(l, peer);
                }
            }
        }
        if req.answered.unwrap_or(true) {
            v.state = SessionState::Answered;
        }
        v.idle_secs = Some(1);
        totals(v);
        Ok(v.clone())
    }
    fn delete_session(&self, call_id: &str, _: FrontEnd) -> Result<SessionView, Error> {
        self.lock()
            .sessions
            .remove(call_id)
            .ok_or_else(|| no_session(call_id))
    }
    fn stats(&self) -> Result<StatsView, Error> {
        if self.fail_stats {
            return Err(Error::internal("cannot read the pinned maps"));
        }
        let st = self.lock();
        let answered = st
            .sessions
            .values()
            .filter(|s| s.state == SessionState::Answered)
            .count() as u64;
        Ok(StatsView {
            instance: "default".into(),
            adopted: false,
            uptime_secs: 3725,
            sessions_offered: st.sessions.len() as u64 - answered,
            sessions_answered: answered,
            kernel_legs: 2,
            forwarded_kernel_packets: 900,
            forwarded_kernel_bytes: 154_800,
            forwarded_user_packets: 100,
            forwarded_user_bytes: 17_200,
            interfaces: vec![
                InterfaceView {
                    name: "r0".into(),
                    ifindex: 2,
                    xdp_mode: "native".into(),
                    addrs: vec![IpAddr::from(RELAY_IP)],
                },
                InterfaceView {
                    name: "uplink1".into(),
                    ifindex: 11,
                    xdp_mode: "generic".into(),
                    addrs: vec![],
                },
            ],
            dataplane: BTreeMap::from([
                ("verdict_redirect".into(), 900),
                ("pass_unlatched".into(), 100),
                ("drop_ttl".into(), 0),
            ]),
            controller: BTreeMap::from([("latches".into(), 2), ("expired".into(), 0)]),
        })
    }
    fn ports(&self) -> PortsView {
        let used = self
            .lock()
            .sessions
            .values()
            .map(|s| s.streams.len() as u32 * 2)
            .sum::<u32>();
        PortsView {
            port_min: 30000,
            port_max: 39999,
            quarantine_secs: 60,
            exhausted: 0,
            pools: vec![PoolView {
                addr: IpAddr::from(RELAY_IP),
                total_pairs: 5000,
                used_pairs: used,
                free_pairs: 5000 - used,
                quarantined_pairs: 0,
            }],
        }
    }
    fn metrics(&self) -> Result<String, Error> {
        Ok("relay_sessions 0\n".into())
    }
    fn count(&self, _event: Event) {}
}

/// `server::serve` on its own runtime thread; stopped (gracefully) on drop.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    fn start(ctl: MemControl) -> Server {
        Server::start_with(ctl, server::Limits::default())
    }

    fn start_with(ctl: MemControl, limits: server::Limits) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    server::serve(listener, Arc::new(ctl), limits, async {
                        let _ = stopped.await;
                    })
                    .await
                })
        });
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Shut down gracefully and return what `server::serve` returned.
    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stop.take());
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("server thread panicked")
    }

    /// A server with two sessions: "call-1@pbx" answered with media, "call-2" only offered.
    fn with_sessions() -> Server {
        let s = Server::start(MemControl::default());
        let api = ApiClient::new(s.addr);
        let peer = |p: u16| SocketAddr::from(([203, 0, 113, 5], p));
        let offer = CreateSession {
            call_id: "call-1@pbx".into(),
            policy: None,
            answered: None,
            streams: vec![StreamRequest {
                media: None,
                a: SideRequest {
                    peer: Some(peer(5004)),
                    ..Default::default()
                },
                b: SideRequest::default(),
            }],
        };
        let v = api.create_session(offer).expect("create call-1");
        assert_eq!(v.state, SessionState::Offered);
        let answer = UpdateSession {
            streams: vec![Some(StreamUpdate {
                a: Some(PeerUpdate {
                    peer: Some(peer(5004)),
                    rtcp_peer: None,
                }),
                b: Some(PeerUpdate {
                    peer: Some(peer(6004)),
                    rtcp_peer: None,
                }),
            })],
            answered: None,
        };
        let v = api.update_session("call-1@pbx", answer).expect("answer");
        assert_eq!(v.state, SessionState::Answered);
        api.create_session(CreateSession {
            call_id: "call-2".into(),
            policy: Some(LatchPolicy::Strict),
            answered: Some(false),
            streams: vec![StreamRequest::default(), StreamRequest::default()],
        })
        .expect("create call-2");
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(r) => r.expect("serve returned an error"),
                Err(_) => panic!("server thread panicked"),
            }
        }
    }
}

// The HTTP layer: raw requests, so statuses, headers and error bodies are seen as sent.

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    /// Assert an ApiError body with `status` and return its message.
    fn api_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert!(
            self.content_type.starts_with("application/json"),
            "content type {:?}",
            self.content_type
        );
        let e: ApiError = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not an ApiError ({e}): {:?}", self.body));
        assert_eq!(e.status, status);
        assert!(!e.error.is_empty());
        e.error
    }
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("request failed");
    Reply {
        status: r.status().as_u16(),
        content_type: r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body: r.body_mut().read_to_string().expect("body"),
    }
}

fn get(s: &Server, path: &str) -> Reply {
    reply(agent().get(s.url(path)).call())
}

fn post(s: &Server, path: &str, content_type: Option<&str>, body: &str) -> Reply {
    let mut req = agent().post(s.url(path));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    reply(req.send(body))
}

const JSON: Option<&str> = Some("application/json");

fn create(s: &Server, id: &str) -> Reply {
    post(
        s,
        "/v1/sessions",
        JSON,
        &json!({"call_id": id, "streams": [{}]}).to_string(),
    )
}

#[test]
fn healthz_and_metrics() {
    let s = Server::start(MemControl::default());
    let r = get(&s, "/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok"}));

    let r = get(&s, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/plain; version=0.0.4");
    assert!(r.body.contains("relay_sessions 0"));
    s.stop().expect("graceful shutdown");
}

#[test]
fn session_lifecycle() {
    let s = Server::start(MemControl::default());
    assert_eq!(get(&s, "/v1/sessions").json(), json!([]));

    let r = create(&s, "c1@example");
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.content_type.starts_with("application/json"));
    let v: SessionView = serde_json::from_str(&r.body).expect("SessionView");
    assert_eq!(v.call_id, "c1@example");
    assert_eq!(v.state, SessionState::Offered);
    // charset parameter and +json are still JSON.
    let r = post(
        &s,
        "/v1/sessions",
        Some("application/json; charset=utf-8"),
        &json!({"call_id": "c2", "policy": "strict", "streams": [{}, {}]}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["policy"], "strict");

    let list: Vec<SessionView> = serde_json::from_str(&get(&s, "/v1/sessions").body).expect("list");
    assert_eq!(
        list.iter().map(|v| v.call_id.as_str()).collect::<Vec<_>>(),
        ["c1@example", "c2"]
    );

    let r = get(&s, "/v1/sessions/c1@example");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["call_id"], "c1@example");

    // Percent-encoded ids are decoded (a '/' in a call id must be encoded by clients).
    let r = create(&s, "x/y z");
    assert_eq!(r.status, 201);
    let r = get(&s, "/v1/sessions/x%2Fy%20z");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["call_id"], "x/y z");

    let r = post(&s, "/v1/sessions/c1@example", JSON, r#"{"streams":[null]}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "answered");

    let r = reply(agent().delete(s.url("/v1/sessions/c1@example")).call());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["call_id"], "c1@example");
    let msg = get(&s, "/v1/sessions/c1@example").api_error(404);
    assert!(msg.contains("c1@example"), "{msg}");
    s.stop().expect("graceful shutdown");
}

#[test]
fn stats_and_ports() {
    let s = Server::start(MemControl::default());
    let r = get(&s, "/v1/stats");
    assert_eq!(r.status, 200);
    let v: StatsView = serde_json::from_str(&r.body).expect("StatsView");
    assert_eq!(v.instance, "default");
    let r = get(&s, "/v1/ports");
    assert_eq!(r.status, 200);
    let v: PortsView = serde_json::from_str(&r.body).expect("PortsView");
    assert_eq!(v.pools.len(), 1);

    let s = Server::start(MemControl {
        fail_stats: true,
        ..Default::default()
    });
    assert_eq!(
        get(&s, "/v1/stats").api_error(500),
        "cannot read the pinned maps"
    );
}

#[test]
fn control_errors_keep_their_status() {
    let s = Server::start(MemControl::default());
    assert_eq!(create(&s, "dup").status, 201);
    let msg = create(&s, "dup").api_error(409);
    assert!(msg.contains("exists"), "{msg}");
    let r = post(
        &s,
        "/v1/sessions",
        JSON,
        r#"{"call_id":"none","streams":[]}"#,
    );
    assert_eq!(r.api_error(400), "a session needs at least one stream");
    get(&s, "/v1/sessions/nope").api_error(404);
    post(&s, "/v1/sessions/nope", JSON, "{}").api_error(404);
    reply(agent().delete(s.url("/v1/sessions/nope")).call()).api_error(404);
}

#[test]
fn bad_bodies_are_400_with_serdes_message() {
    let s = Server::start(MemControl::default());
    let cases = [
        ("{", "EOF"),
        ("", "EOF"),
        (r#"{"call_id": 5, "streams": []}"#, "invalid type"),
        (r#"{"streams": []}"#, "missing field `call_id`"),
        (
            r#"{"call_id": "x", "streams": [], "bogus": 1}"#,
            "unknown field `bogus`",
        ),
        (
            r#"{"call_id": "x", "policy": "sometimes", "streams": []}"#,
            "unknown variant `sometimes`",
        ),
        (
            r#"{"call_id": "x", "streams": [{"a": {"peer": "nonsense"}}]}"#,
            "invalid socket address",
        ),
    ];
    for (body, want) in cases {
        let msg = post(&s, "/v1/sessions", JSON, body).api_error(400);
        assert!(msg.contains(want), "{body:?}: {msg:?} lacks {want:?}");
    }
    let msg = post(&s, "/v1/sessions/x", JSON, r#"{"answered": "yes"}"#).api_error(400);
    assert!(msg.contains("invalid type"), "{msg}");
}

#[test]
fn content_type_must_be_json() {
    let s = Server::start(MemControl::default());
    let body = json!({"call_id": "c", "streams": [{}]}).to_string();
    post(&s, "/v1/sessions", None, &body).api_error(415);
    post(&s, "/v1/sessions", Some("text/plain"), &body).api_error(415);
    post(
        &s,
        "/v1/sessions",
        Some("application/x-www-form-urlencoded"),
        &body,
    )
    .api_error(415);
    post(&s, "/v1/sessions/c", Some("text/json"), "{}").api_error(415);
}

/// Limits short enough for a test: a second for a request head and for a body.
fn quick_limits() -> server::Limits {
    server::Limits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        max_connections: 8,
    }
}

/// Write `bytes` on a fresh connection and read until the server closes it (or 5 s pass);
/// returns what came back and how long until the close.
fn raw(s: &Server, bytes: &[u8]) -> (String, Duration) {
    let mut c = TcpStream::connect(s.addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.write_all(bytes).expect("write");
    let t0 = Instant::now();
    let mut got = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), t0.elapsed())
}

#[test]
fn half_open_and_idle_connections_are_closed_after_the_header_timeout() {
    let s = Server::start_with(MemControl::default(), quick_limits());
    for (what, bytes) in [
        ("nothing", &b""[..]),
        ("a bare CRLF", &b"\r\n"[..]),
        (
            "half a request head",
            &b"GET /healthz HTTP/1.1\r\nHost: x\r\n"[..],
        ),
    ] {
        let (got, after) = raw(&s, bytes);
        assert!(
            after < Duration::from_secs(4),
            "{what}: closed only after {after:?}"
        );
        assert!(!got.contains("200 OK"), "{what}: {got:?}");
    }
    // A complete request on the same kind of connection is still served.
    let (got, _) = raw(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
}

#[test]
fn bodies_are_framed_strictly_and_never_waited_for_forever() {
    let s = Server::start_with(MemControl::default(), quick_limits());
    // 10 MB announced, 1 KB sent: refused from the head, at once.
    let mut big = b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
        Content-Length: 10000000\r\n\r\n"
        .to_vec();
    big.extend(std::iter::repeat_n(b'x', 1024));
    let (got, after) = raw(&s, &big);
    assert!(got.starts_with("HTTP/1.1 413"), "{got:?}");
    assert!(after < Duration::from_secs(1), "answered after {after:?}");
    // Both Transfer-Encoding and Content-Length, with a broken chunk: the smuggling shape.
    let (got, _) = raw(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
          Content-Length: 5\r\n\r\nzz\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 400"), "{got:?}");
    assert!(!got.contains("200 OK"), "{got:?}");
    // A body that stops arriving: 408 after the body timeout, not a hang.
    let (got, after) = raw(
        &s,
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"call_id\"",
    );
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(after < Duration::from_secs(4), "answered after {after:?}");
    // The server still serves well-formed requests.
    let (got, _) = raw(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
}

#[test]
fn body_over_64k_is_413() {
    let s = Server::start(MemControl::default());
    let big = format!(
        r#"{{"call_id": "{}", "streams": [{{}}]}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    post(&s, "/v1/sessions", JSON, &big).api_error(413);
    // Just under the limit is fine.
    let ok = format!(
        r#"{{"call_id": "{}", "streams": [{{}}]}}"#,
        "x".repeat(MAX_BODY_BYTES - 100)
    );
    assert_eq!(post(&s, "/v1/sessions", JSON, &ok).status, 201);
}

#[test]
fn unknown_paths_and_methods() {
    let s = Server::start(MemControl::default());
    for path in ["/", "/v1", "/v1/session", "/v1/sessions/a/b", "/v2/stats"] {
        get(&s, path).api_error(404);
    }
    post(&s, "/nope", JSON, "{}").api_error(404);

    post(&s, "/healthz", JSON, "{}").api_error(405);
    post(&s, "/v1/stats", JSON, "{}").api_error(405);
    post(&s, "/v1/ports", JSON, "{}").api_error(405);
    post(&s, "/metrics", JSON, "{}").api_error(405);
    reply(agent().delete(s.url("/v1/sessions")).call()).api_error(405);
    reply(agent().put(s.url("/v1/sessions/x")).send("{}")).api_error(405);
    reply(agent().patch(s.url("/v1/sessions")).send("{}")).api_error(405);
}

// The CLI binary.

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_env(args: &[&str], env: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay-ctl"));
    cmd.args(args).env_remove("RUST_LOG");
    match env {
        Some(v) => cmd.env("RELAY_CTL_API", v),
        None => cmd.env_remove("RELAY_CTL_API"),
    };
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run relay-ctl");
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

/// `relay-ctl <args> --api <addr>`.
fn run(addr: SocketAddr, args: &[&str]) -> Run {
    let a = addr.to_string();
    let mut all = args.to_vec();
    all.extend(["--api", &a]);
    run_env(&all, None)
}

/// Exit 0, nothing on stderr; returns stdout.
fn ok(r: Run) -> String {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert_eq!(r.stderr, "");
    r.stdout
}

fn json(r: Run) -> Value {
    let out = ok(r);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    // Pretty: more than one line for anything but an empty list.
    assert!(
        v == Value::Array(vec![]) || out.lines().count() > 1,
        "{out}"
    );
    v
}

/// Exit `code`, nothing on stdout, exactly one line `line` on stderr.
fn fails(r: Run, code: i32, line: &str) {
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, format!("{line}\n"));
}

/// Rows of a table: whitespace-split cells of each line starting with `first`.
fn row<'a>(out: &'a str, first: &str) -> Vec<&'a str> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first:?} in\n{out}"))
}

/// Every line of a table has its columns at the header's positions.
fn assert_header(out: &str, header: &[&str]) {
    let line = out
        .lines()
        .find(|l| l.starts_with(header[0]))
        .unwrap_or_else(|| panic!("no header {header:?} in\n{out}"));
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), header);
}

#[test]
fn sessions_table_and_json() {
    let s = Server::with_sessions();
    let out = ok(run(s.addr, &["sessions"]));
    assert_header(
        &out,
        &[
            "CALL-ID",
            "POLICY",
            "STATE",
            "AGE",
            "IDLE",
            "STREAMS",
            "LEGS",
            "PKTS-KERNEL",
            "PKTS-USER",
        ],
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(
        row(&out, "call-1@pbx"),
        [
            "call-1@pbx",
            "immediate",
            "answered",
            "1m05s",
            "1s",
            "1",
            "2/2",
            "1000",
            "4"
        ]
    );
    assert_eq!(
        row(&out, "call-2"),
        [
            "call-2", "strict", "offered", "1m05s", "-", "2", "0/4", "0", "0"
        ]
    );
    // Aligned: every row is as wide as its widest cell allows, columns line up with the header.
    let col = |l: &str, w: &str| l.find(w).expect("cell");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(col(lines[0], "POLICY"), col(lines[1], "immediate"));
    assert_eq!(col(lines[0], "POLICY"), col(lines[2], "strict"));

    let v = json(run(s.addr, &["sessions", "--json"]));
    let list: Vec<SessionView> = serde_json::from_value(v).expect("sessions JSON");
    assert_eq!(
        list,
        ApiClient::new(s.addr).get_sessions().expect("sessions")
    );
    assert_eq!(list.len(), 2);
}

#[test]
fn sessions_empty() {
    let s = Server::start(MemControl::default());
    assert_eq!(ok(run(s.addr, &["sessions"])), "no sessions\n");
    assert_eq!(
        json(run(s.addr, &["sessions", "--json"])),
        Value::Array(vec![])
    );
}

#[test]
fn session_detail_and_json() {
    let s = Server::with_sessions();
    let out = ok(run(s.addr, &["session", "call-1@pbx"]));
    assert!(out.starts_with("call id    call-1@pbx\n"), "{out}");
    assert!(out.contains("\nstate      answered\n"), "{out}");
    assert!(
        out.contains("\nstreams    1 (2 legs, 2 in kernel)\n"),
        "{out}"
    );
    assert!(
        out.contains("\nkernel     1000 packets, 172000 bytes\n"),
        "{out}"
    );
    assert_header(
        &out,
        &[
            "STREAM",
            "MEDIA",
            "SIDE",
            "RELAY",
            "SIGNALLED",
            "LATCHED",
            "RTCP-LATCHED",
            "KERNEL",
            "PKTS-K",
            "BYTES-K",
            "PKTS-U",
            "BYTES-U",
            "IDLE",
            "RELATCHES",
        ],
    );
    let legs: Vec<Vec<&str>> = out
        .lines()
        .skip_while(|l| !l.starts_with("STREAM"))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        legs,
        [
            [
                "0",
                "audio",
                "a",
                "198.18.1.1:30000",
                "203.0.113.5:5004",
                "203.0.113.5:5004",
                "203.0.113.5:5005",
                "yes",
                "500",
                "86000",
                "2",
                "344",
                "1s",
                "0"
            ],
            [
                "0",
                "audio",
                "b",
                "198.18.1.1:30002",
                "203.0.113.5:6004",
                "203.0.113.5:6004",
                "203.0.113.5:6005",
                "yes",
                "500",
                "86000",
                "2",
                "344",
                "1s",
                "0"
            ],
        ]
    );

    // Nothing latched yet: "-" for every unknown.
    let out = ok(run(s.addr, &["session", "call-2"]));
    let cells = row(&out, "1");
    assert_eq!(cells[4..8], ["-", "-", "-", "no"], "{out}");

    let v = json(run(s.addr, &["session", "call-1@pbx", "--json"]));
    assert_eq!(v["call_id"], "call-1@pbx");
    assert_eq!(v["streams"][0]["legs"][1]["latched"], "203.0.113.5:6004");
}

#[test]
fn unknown_session_is_one_line_exit_1() {
    let s = Server::with_sessions();
    let line = r#"relay-ctl: no session "nope" (HTTP 404)"#;
    fails(run(s.addr, &["session", "nope"]), 1, line);
    fails(run(s.addr, &["session", "nope", "--json"]), 1, line);
    fails(run(s.addr, &["delete", "nope"]), 1, line);
    fails(run(s.addr, &["delete", "nope", "--json"]), 1, line);
    // Ids that need percent-encoding reach the daemon intact.
    fails(
        run(s.addr, &["session", "a/b c%?#"]),
        1,
        r#"relay-ctl: no session "a/b c%?#" (HTTP 404)"#,
    );
}

#[test]
fn delete_then_gone() {
    let s = Server::with_sessions();
    assert_eq!(
        ok(run(s.addr, &["delete", "call-1@pbx"])),
        "deleted call-1@pbx (2 legs removed, ports quarantined)\n"
    );
    fails(
        run(s.addr, &["session", "call-1@pbx"]),
        1,
        r#"relay-ctl: no session "call-1@pbx" (HTTP 404)"#,
    );
    let v = json(run(s.addr, &["delete", "call-2", "--json"]));
    assert_eq!(v["call_id"], "call-2");
    assert_eq!(v["streams"].as_array().map(Vec::len), Some(2));
    assert_eq!(ok(run(s.addr, &["sessions"])), "no sessions\n");
}

#[test]
fn stats_text_and_json() {
    let s = Server::with_sessions();
    let out = ok(run(s.addr, &["stats"]));
    for want in [
        "instance             default\n",
        "adopted              no\n",
        "uptime               1h02m\n",
        "sessions             2 (1 offered, 1 answered)\n",
        "kernel legs          2\n",
        "forwarded kernel     900 packets, 154800 bytes\n",
        "forwarded userspace  100 packets, 17200 bytes\n",
        "kernel share         90.0% of packets, 90.0% of bytes\n",
        "\ndata-plane counters (non-zero):\n  pass_unlatched    100\n  verdict_redirect  900\n",
        "\ncontroller counters (non-zero):\n  latches  2\n",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    assert!(!out.contains("drop_ttl"), "zero counters are hidden\n{out}");
    assert_header(&out, &["NAME", "IFINDEX", "XDP", "ADDRS"]);
    assert_eq!(row(&out, "r0"), ["r0", "2", "native", "198.18.1.1"]);
    assert_eq!(row(&out, "uplink1"), ["uplink1", "11", "generic", "-"]);

    let v = json(run(s.addr, &["stats", "--json"]));
    let stats: StatsView = serde_json::from_value(v).expect("StatsView");
    assert_eq!(stats.dataplane["drop_ttl"], 0, "JSON keeps every counter");
}

#[test]
fn stats_server_error_exit_1() {
    let s = Server::start(MemControl {
        fail_stats: true,
        ..Default::default()
    });
    let line = "relay-ctl: cannot read the pinned maps (HTTP 500)";
    fails(run(s.addr, &["stats"]), 1, line);
    fails(run(s.addr, &["stats", "--json"]), 1, line);
}

#[test]
fn ports_text_and_json() {
    let s = Server::with_sessions();
    let out = ok(run(s.addr, &["ports"]));
    assert!(
        out.starts_with("range 30000-39999, quarantine 1m00s\n"),
        "{out}"
    );
    assert_header(&out, &["ADDR", "TOTAL", "USED", "FREE", "QUARANTINED"]);
    assert_eq!(
        row(&out, "198.18.1.1"),
        ["198.18.1.1", "5000", "6", "4994", "0"]
    );
    assert!(out.ends_with("\nexhausted 0 (allocations refused for lack of ports)\n"));

    let v = json(run(s.addr, &["ports", "--json"]));
    assert_eq!(v["pools"][0]["used_pairs"], 6);
    assert_eq!(v["port_min"], 30000);
}

#[test]
fn daemon_not_running_exit_2() {
    // Bind then drop: a free port where nothing listens.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind");
    let line = format!(
        "relay-ctl: cannot reach the daemon's API at {addr} (is `relay-ctl daemon` running?)"
    );
    for args in [
        &["sessions"][..],
        &["sessions", "--json"],
        &["session", "x"],
        &["stats"],
        &["ports", "--json"],
        &["delete", "x"],
    ] {
        fails(run(addr, args), 2, &line);
    }
    assert!(matches!(
        ApiClient::new(addr).get_stats(),
        Err(ClientError::Unreachable { .. })
    ));
}

#[test]
fn api_address_from_flag_position_or_env() {
    let s = Server::start(MemControl::default());
    let a = s.addr.to_string();
    // Before the subcommand, after it, or from the environment.
    assert_eq!(
        ok(run_env(&["--api", &a, "sessions"], None)),
        "no sessions\n"
    );
    assert_eq!(
        ok(run_env(&["sessions", "--api", &a], None)),
        "no sessions\n"
    );
    assert_eq!(ok(run_env(&["sessions"], Some(&a))), "no sessions\n");
    // The flag wins over the environment.
    assert_eq!(
        ok(run_env(&["sessions", "--api", &a], Some("127.0.0.1:1"))),
        "no sessions\n"
    );
    let r = run_env(&["sessions"], Some("not-an-address"));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .starts_with("relay-ctl: RELAY_CTL_API=\"not-an-address\"")
    );
    assert_eq!(r.stderr.lines().count(), 1);
}

#[test]
fn help_lists_old_and_new_subcommands() {
    let out = ok(run_env(&["--help"], None));
    for cmd in [
        "daemon", "counters", "detach", "sessions", "session", "stats", "ports", "delete",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from\n{out}"
        );
    }
    // Parsing the daemon's arguments still works alongside the global --api.
    ok(run_env(&["daemon", "--help"], None));
    ok(run_env(&["counters", "--help"], None));
}
