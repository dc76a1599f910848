//! Real browsers in the test namespaces: headless Chromium (Debian's `chromium`, installed by
//! `./x setup`) making a WebRTC call, and the tiny signalling server that serves its page
//! (`browser/page.html`), swaps the two SDPs and collects what each page reports from
//! `getStats()`. Used by the TURN tests to prove a browser's media really went through the
//! relay: the page forces `iceTransportPolicy: "relay"`, and the test checks the selected
//! candidate pair and the bytes received.
use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::netns::Netns;

const PAGE: &str = include_str!("browser/page.html");
/// Larger requests are refused: a page posts an SDP (a few KB) or a stats object.
const MAX_BODY: usize = 256 * 1024;

/// What the pages have told the signalling server.
#[derive(Default)]
struct Board {
    /// Session descriptions by role, as posted (`{"type":..,"sdp":..}`).
    sdp: HashMap<String, String>,
    /// The latest stats report by role.
    stats: HashMap<String, Value>,
    /// Log lines by role, in order.
    logs: Vec<(String, String)>,
}

/// The signalling server: HTTP/1.0-style (one request per connection), on a listener bound
/// inside a namespace, served by a thread until dropped.
pub struct Signalling {
    pub addr: SocketAddr,
    board: Arc<Mutex<Board>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Signalling {
    /// Listen on `addr` inside `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<Signalling> {
        let listener = ns
            .run(|| TcpListener::bind(addr))?
            .with_context(|| format!("signalling server: bind {addr}"))?;
        listener.set_nonblocking(true)?;
        let board = Arc::new(Mutex::new(Board::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (board.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        // A page that misbehaves only fails its own request.
                        let _ = serve(conn, &b);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Signalling {
            addr,
            board,
            stop,
            thread: Some(thread),
        })
    }

    /// The latest stats `role`'s page posted.
    pub fn stats(&self, role: &str) -> Option<Value> {
        self.lock().stats.get(role).cloned()
    }

    /// Every log line so far, `role: line`.
    pub fn logs(&self) -> String {
        self.lock()
            .logs
            .iter()
            .map(|(r, l)| format!("{r}: {l}\n"))
            .collect()
    }

    /// The SDP `role` posted, if any.
    pub fn sdp(&self, role: &str) -> Option<String> {
        self.lock().sdp.get(role).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Signalling {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answer one request on `conn`.
fn serve(conn: TcpStream, board: &Mutex<Board>) -> Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().context("content-length")?;
        }
    }
    if len > MAX_BODY {
        return respond(conn, "413 Payload Too Large", "text/plain", b"");
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let path = target.split('?').next().unwrap_or("");
    let (kind, role) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path.trim_start_matches('/'), ""));
    let role = role.to_owned();
    let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
    match (method.as_str(), kind) {
        ("GET", "") | ("GET", "index.html") => {
            drop(b);
            respond(conn, "200 OK", "text/html", PAGE.as_bytes())
        }
        ("GET", "sdp") => match b.sdp.get(&role).cloned() {
            Some(sdp) => {
                drop(b);
                respond(conn, "200 OK", "application/json", sdp.as_bytes())
            }
            None => {
                drop(b);
                respond(conn, "404 Not Found", "text/plain", b"")
            }
        },
        ("POST", "sdp") => {
            b.sdp.insert(role, body);
            drop(b);
            respond(conn, "204 No Content", "text/plain", b"")
        }
        ("POST", "stats") => {
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                b.stats.insert(role, v);
            }
            drop(b);
            respond(conn, "204 No Content", "text/plain", b"")
        }
        ("POST", "log") => {
            let msg = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(body);
            b.logs.push((role, msg));
            drop(b);
            respond(conn, "204 No Content", "text/plain", b"")
        }
        _ => {
            drop(b);
            respond(conn, "404 Not Found", "text/plain", b"")
        }
    }
}

fn respond(mut conn: TcpStream, status: &str, ctype: &str, body: &[u8]) -> Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body)?;
    Ok(())
}

/// Where a page calls through: its role and the TURN server it must use.
pub struct CallPage<'a> {
    pub role: &'a str,
    /// `turn:host:port?transport=udp` (or `turns:`/`transport=tcp`).
    pub turn: &'a str,
    pub user: &'a str,
    pub pass: &'a str,
}

/// A headless Chromium in a namespace, with its own throw-away profile; killed (its whole
/// process group) and the profile removed when dropped.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    pub log: PathBuf,
}

impl Chromium {
    /// Open the call page in a new browser inside `ns`, from the signalling server at
    /// `server` (the address it is reached at from `ns`).
    pub fn open(ns: &Netns, server: SocketAddr, page: &CallPage) -> Result<Chromium> {
        let tag = format!("{}-{}-{}", ns.name(), page.role, std::process::id());
        let profile = std::env::temp_dir().join(format!("mr-chromium-{tag}"));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile)?;
        let log = std::env::temp_dir().join(format!("mr-chromium-{tag}.log"));
        let out = std::fs::File::create(&log)?;
        let origin = format!("http://{server}");
        let url = format!(
            "{origin}/?role={}&turn={}&user={}&pass={}",
            page.role,
            encode(page.turn),
            encode(page.user),
            encode(page.pass)
        );
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name(), "chromium"])
            .args([
                "--headless=new",
                // The tests run as root, where Chromium's sandbox refuses to start.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--mute-audio",
                // A fake microphone and no permission prompt.
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                // The page is plain HTTP on a test address; getUserMedia needs a secure context.
                &format!("--unsafely-treat-insecure-origin-as-secure={origin}"),
                // Keep timers running in a page nobody looks at.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                &format!("--user-data-dir={}", profile.display()),
            ])
            .arg(&url)
            .env("HOME", &profile)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let child = cmd
            .spawn()
            .context("starting chromium (is it installed? ./x setup)")?;
        Ok(Chromium {
            child,
            profile,
            log,
        })
    }

    /// The browser's own output (for a failing test's message).
    pub fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Whether the browser is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The group: Chromium's renderer, GPU and network processes go with it.
        let pgid = self.child.id() as i32;
        // SAFETY: plain syscall; the group is the one this guard started.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What one page reports about its call, from its latest stats.
#[derive(Debug, Clone, PartialEq)]
pub struct CallState {
    pub connected: bool,
    pub bytes_received: u64,
    pub packets_received: u64,
    /// Selected pair: local candidate type ("relay" expected), its address:port (the
    /// relayed address the TURN server gave), the relay protocol to the TURN server, and the
    /// remote candidate's type and address:port.
    pub local_type: String,
    pub local_addr: Option<SocketAddr>,
    pub relay_protocol: String,
    pub remote_type: String,
    pub remote_addr: Option<SocketAddr>,
}

impl CallState {
    pub fn from_stats(v: &Value) -> CallState {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let addr = |c: &Value| -> Option<SocketAddr> {
            let ip = c.get("address")?.as_str()?.parse().ok()?;
            Some(SocketAddr::new(ip, c.get("port")?.as_u64()? as u16))
        };
        let null = Value::Null;
        let pair = v.get("pair").unwrap_or(&null);
        let local = pair.get("local").unwrap_or(&null);
        let remote = pair.get("remote").unwrap_or(&null);
        CallState {
            connected: s(v, "connection") == "connected",
            bytes_received: n(v, "bytesReceived"),
            packets_received: n(v, "packetsReceived"),
            local_type: s(local, "type"),
            local_addr: addr(local),
            relay_protocol: s(local, "relayProtocol"),
            remote_type: s(remote, "type"),
            remote_addr: addr(remote),
        }
    }
}

/// Fail with everything useful when a browser exits early.
pub fn check_running(b: &mut Chromium, role: &str) -> Result<()> {
    if !b.running() {
        bail!("chromium ({role}) exited:\n{}", b.output());
    }
    Ok(())
}
