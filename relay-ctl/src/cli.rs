//! Operator CLI: `relay-ctl sessions|session ID|stats|ports|delete ID` talk to the daemon's HTTP
//! API through [`ApiClient`] (`client.rs`) and print aligned tables for people, or the API's JSON (`--json`)
//! for scripts. The table renderers are pure functions of the API's views, tested on fixed data.
use std::{
    fmt::{self, Write as _},
    net::SocketAddr,
};

use crate::{
    api::{LegView, PortsView, SessionView, StatsView},
    client::{ApiClient, ClientError, session_path},
};

/// Where the daemon's API listens unless `--api` or `RELAY_CTL_API` says otherwise.
pub const DEFAULT_API: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);
/// Environment variable naming the API address (overridden by `--api`).
pub const API_ENV: &str = "RELAY_CTL_API";

/// Exit code when the daemon cannot be reached (distinct from an API error's 1, so scripts can
/// tell "relay down" from "request refused").
pub const EXIT_UNREACHABLE: i32 = 2;
/// Exit code for an error answer from the API, or anything else that went wrong.
pub const EXIT_ERROR: i32 = 1;

impl ClientError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
            ClientError::Api(_) | ClientError::Other(_) => EXIT_ERROR,
        }
    }
}

/// How the CLI prints a client error: one line, control characters escaped.
impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The reason is almost always "connection refused"; the hint is what helps.
            ClientError::Unreachable { addr, .. } => write!(
                f,
                "cannot reach the daemon's API at {addr} (is `relay-ctl daemon` running?)"
            ),
            ClientError::Api(e) => write!(f, "{} (HTTP {})", one_line(&e.error), e.status),
            ClientError::Other(e) => f.write_str(&one_line(e)),
        }
    }
}

impl std::error::Error for ClientError {}

/// Resolve the API address: `--api`, else `RELAY_CTL_API`, else [`DEFAULT_API`].
pub fn api_addr(flag: Option<SocketAddr>) -> Result<SocketAddr, ClientError> {
    if let Some(a) = flag {
        return Ok(a);
    }
    match std::env::var(API_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e| {
            ClientError::Other(format!(
                "{API_ENV}={v:?} is not an address like 127.0.0.1:9901: {e}"
            ))
        }),
        _ => Ok(DEFAULT_API),
    }
}

/// One subcommand of the operator CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Sessions,
    Session(String),
    Stats,
    Ports,
    Delete(String),
    /// `relay-ctl reflector ticket`.
    Ticket(crate::api::TicketRequest),
    /// `relay-ctl turn allocations`.
    TurnAllocations,
}

/// Run `cmd` against the API; returns what to print on stdout.
pub fn run(client: &ApiClient, cmd: &Command, json: bool) -> Result<String, ClientError> {
    if json {
        // The API's own JSON (not re-encoded views), so scripts see every field it sends.
        let v: serde_json::Value = match cmd {
            Command::Sessions => client.get("/v1/sessions")?,
            Command::Session(id) => client.get(&session_path(id)?)?,
            Command::Stats => client.get("/v1/stats")?,
            Command::Ports => client.get("/v1/ports")?,
            Command::Delete(id) => client.delete(&session_path(id)?)?,
            Command::Ticket(req) => client.post("/v1/reflector/tickets", req)?,
            Command::TurnAllocations => client.get("/v1/turn/allocations")?,
        };
        let mut out = serde_json::to_string_pretty(&v)
            .map_err(|e| ClientError::Other(format!("cannot print JSON: {e}")))?;
        out.push('\n');
        return Ok(out);
    }
    Ok(match cmd {
        Command::Sessions => sessions_table(&client.get_sessions()?),
        Command::Session(id) => session_detail(&client.get_session(id)?),
        Command::Stats => stats_text(&client.get_stats()?),
        Command::Ports => ports_text(&client.get_ports()?),
        Command::Delete(id) => deleted_text(&client.delete_session(id)?),
        Command::Ticket(req) => {
            crate::reflector::tickets::ticket_text(&client.post("/v1/reflector/tickets", req)?)
        }
        Command::TurnAllocations => {
            crate::turn::view::render_table(&client.get("/v1/turn/allocations")?)
        }
    })
}

/// Run `cmd` and print its output, or one error line on stderr; returns the exit code.
pub fn main(api: Option<SocketAddr>, cmd: &Command, json: bool) -> i32 {
    let result = api_addr(api).and_then(|addr| run(&ApiClient::new(addr), cmd, json));
    match result {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            eprintln!("relay-ctl: {e}");
            e.exit_code()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering for people.

/// `59s`, `1m05s`, `2h03m`, `3d04h`: two units are enough to read at a glance.
pub fn fmt_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn opt_duration(secs: Option<u64>) -> String {
    secs.map_or_else(|| "-".into(), fmt_duration)
}

fn opt_addr(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "-".into(), |a| a.to_string())
}

/// Kernel share of a total in percent, one decimal; "-" when nothing was forwarded.
fn share(kernel: u64, user: u64) -> String {
    let total = kernel as f64 + user as f64;
    if total == 0.0 {
        "-".into()
    } else {
        format!("{:.1}%", kernel as f64 * 100.0 / total)
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// Control characters escaped so a hostile call id cannot break a table or the terminal.
fn clean(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect()
    } else {
        s.to_owned()
    }
}

/// An error message on one line (the CLI promises one line on stderr).
fn one_line(s: &str) -> String {
    clean(&s.replace(['\r', '\n'], " "))
}

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// A table with a header row; columns separated by two spaces, numbers right-aligned.
struct Table {
    head: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[(&'static str, Align)]) -> Table {
        Table {
            head: head.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.head.len());
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.head.iter().map(|(h, _)| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let head: Vec<String> = self.head.iter().map(|(h, _)| (*h).to_owned()).collect();
        for cells in std::iter::once(&head).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(c.chars().count());
                let align = self.head.get(i).map_or(Align::Left, |h| h.1);
                if align == Align::Right {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key  value` lines with the keys padded to one width.
fn kv_block(indent: &str, pairs: &[(String, String)]) -> String {
    let w = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let line = format!("{indent}{k:<w$}  {v}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn kv(k: &str, v: impl ToString) -> (String, String) {
    (k.to_owned(), v.to_string())
}

fn legs(s: &SessionView) -> impl Iterator<Item = &LegView> {
    s.streams.iter().flat_map(|st| &st.legs)
}

use Align::{Left as L, Right as R};

/// `relay-ctl sessions`: one row per session.
pub fn sessions_table(sessions: &[SessionView]) -> String {
    if sessions.is_empty() {
        return "no sessions\n".into();
    }
    let mut t = Table::new(&[
        ("CALL-ID", L),
        ("POLICY", L),
        ("STATE", L),
        ("AGE", R),
        ("IDLE", R),
        ("STREAMS", R),
        ("LEGS", R),
        ("PKTS-KERNEL", R),
        ("PKTS-USER", R),
    ]);
    for s in sessions {
        let total = legs(s).count();
        let kernel = legs(s).filter(|l| l.kernel).count();
        t.row(vec![
            clean(&s.call_id),
            s.policy.to_string(),
            s.state.as_str().into(),
            fmt_duration(s.age_secs),
            opt_duration(s.idle_secs),
            s.streams.len().to_string(),
            format!("{kernel}/{total}"),
            s.packets_kernel.to_string(),
            s.packets_user.to_string(),
        ]);
    }
    t.render()
}

/// `relay-ctl session ID`: the session, then one row per leg.
pub fn session_detail(s: &SessionView) -> String {
    let total = legs(s).count();
    let kernel = legs(s).filter(|l| l.kernel).count();
    let mut out = kv_block(
        "",
        &[
            kv("call id", clean(&s.call_id)),
            kv("policy", s.policy),
            kv("state", s.state.as_str()),
            kv("age", fmt_duration(s.age_secs)),
            kv("idle", opt_duration(s.idle_secs)),
            kv(
                "streams",
                format!(
                    "{} ({}, {kernel} in kernel)",
                    s.streams.len(),
                    plural(total, "leg")
                ),
            ),
            kv(
                "kernel",
                format!("{} packets, {} bytes", s.packets_kernel, s.bytes_kernel),
            ),
            kv(
                "userspace",
                format!("{} packets, {} bytes", s.packets_user, s.bytes_user),
            ),
        ],
    );
    if total == 0 {
        return out;
    }
    let mut t = Table::new(&[
        ("STREAM", R),
        ("MEDIA", L),
        ("SIDE", L),
        ("RELAY", L),
        ("SIGNALLED", L),
        ("LATCHED", L),
        ("RTCP-LATCHED", L),
        ("KERNEL", L),
        ("PKTS-K", R),
        ("BYTES-K", R),
        ("PKTS-U", R),
        ("BYTES-U", R),
        ("IDLE", R),
        ("RELATCHES", R),
    ]);
    for st in &s.streams {
        // The alternate policy's shared port is worth seeing next to the media label.
        let media = if st.shared_port {
            format!("{} (shared)", clean(&st.media))
        } else {
            clean(&st.media)
        };
        for l in &st.legs {
            t.row(vec![
                st.index.to_string(),
                media.clone(),
                clean(&l.side),
                l.relay.to_string(),
                opt_addr(l.signalled),
                opt_addr(l.latched),
                opt_addr(l.rtcp_latched),
                if l.kernel { "yes" } else { "no" }.into(),
                l.packets_kernel.to_string(),
                l.bytes_kernel.to_string(),
                l.packets_user.to_string(),
                l.bytes_user.to_string(),
                opt_duration(l.idle_secs),
                l.relatches.to_string(),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&t.render());
    out
}

/// `relay-ctl stats`: summary, interfaces, then the counters.
pub fn stats_text(s: &StatsView) -> String {
    let mut out = kv_block(
        "",
        &[
            kv("instance", clean(&s.instance)),
            kv(
                "adopted",
                if s.adopted {
                    "yes (took over a pinned data plane)"
                } else {
                    "no"
                },
            ),
            kv("uptime", fmt_duration(s.uptime_secs)),
            kv(
                "sessions",
                format!(
                    "{} ({} offered, {} answered)",
                    s.sessions_offered.saturating_add(s.sessions_answered),
                    s.sessions_offered,
                    s.sessions_answered
                ),
            ),
            kv("kernel legs", s.kernel_legs),
            kv(
                "forwarded kernel",
                format!(
                    "{} packets, {} bytes",
                    s.forwarded_kernel_packets, s.forwarded_kernel_bytes
                ),
            ),
            kv(
                "forwarded userspace",
                format!(
                    "{} packets, {} bytes",
                    s.forwarded_user_packets, s.forwarded_user_bytes
                ),
            ),
            kv(
                "kernel share",
                format!(
                    "{} of packets, {} of bytes",
                    share(s.forwarded_kernel_packets, s.forwarded_user_packets),
                    share(s.forwarded_kernel_bytes, s.forwarded_user_bytes)
                ),
            ),
        ],
    );

    out.push('\n');
    if s.interfaces.is_empty() {
        out.push_str("no interfaces attached\n");
    } else {
        let mut t = Table::new(&[("NAME", L), ("IFINDEX", R), ("XDP", L), ("ADDRS", L)]);
        for i in &s.interfaces {
            let addrs = if i.addrs.is_empty() {
                "-".to_owned()
            } else {
                i.addrs
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            t.row(vec![
                clean(&i.name),
                i.ifindex.to_string(),
                clean(&i.xdp_mode),
                addrs,
            ]);
        }
        out.push_str(&t.render());
    }

    // Most data-plane counters are error reasons that stay at zero; show what happened.
    for (title, counters) in [
        ("data-plane counters (non-zero)", &s.dataplane),
        ("controller counters (non-zero)", &s.controller),
    ] {
        out.push('\n');
        let pairs: Vec<(String, String)> = counters
            .iter()
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| (clean(k), v.to_string()))
            .collect();
        if pairs.is_empty() {
            let _ = writeln!(out, "{title}: none");
        } else {
            let _ = writeln!(out, "{title}:");
            out.push_str(&kv_block("  ", &pairs));
        }
    }
    out
}

/// `relay-ctl ports`: the range, one row per relay address, the exhaustion counter.
pub fn ports_text(p: &PortsView) -> String {
    let mut out = format!(
        "range {}-{}, quarantine {}\n\n",
        p.port_min,
        p.port_max,
        fmt_duration(p.quarantine_secs)
    );
    if p.pools.is_empty() {
        out.push_str("no relay addresses\n");
    } else {
        let mut t = Table::new(&[
            ("ADDR", L),
            ("TOTAL", R),
            ("USED", R),
            ("FREE", R),
            ("QUARANTINED", R),
        ]);
        for pool in &p.pools {
            t.row(vec![
                pool.addr.to_string(),
                pool.total_pairs.to_string(),
                pool.used_pairs.to_string(),
                pool.free_pairs.to_string(),
                pool.quarantined_pairs.to_string(),
            ]);
        }
        out.push_str(&t.render());
    }
    let _ = writeln!(
        out,
        "\nexhausted {} (allocations refused for lack of ports)",
        p.exhausted
    );
    out
}

/// `relay-ctl delete ID`.
pub fn deleted_text(s: &SessionView) -> String {
    format!(
        "deleted {} ({} removed, ports quarantined)\n",
        clean(&s.call_id),
        plural(legs(s).count(), "leg")
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{ApiError, InterfaceView, LatchPolicy, PoolView, SessionState, StreamView};

    fn leg(side: &str, port: u16, kernel: bool) -> LegView {
        LegView {
            side: side.into(),
            relay: SocketAddr::from(([198, 18, 1, 1], port)),
            signalled: Some(SocketAddr::from(([198, 18, 1, 2], 5004))),
            latched: kernel.then(|| SocketAddr::from(([203, 0, 113, 7], 40000))),
            rtcp_latched: None,
            kernel,
            packets_kernel: if kernel { 1234 } else { 0 },
            bytes_kernel: if kernel { 212_248 } else { 0 },
            packets_user: 3,
            bytes_user: 516,
            idle_secs: kernel.then_some(2),
            relatches: 0,
        }
    }

    fn session(id: &str, kernel: bool) -> SessionView {
        SessionView {
            call_id: id.into(),
            policy: LatchPolicy::Immediate,
            state: SessionState::Answered,
            created_unix: 1_700_000_000,
            age_secs: 65,
            idle_secs: None,
            streams: vec![StreamView {
                index: 0,
                media: "audio".into(),
                shared_port: false,
                legs: vec![leg("a", 30000, kernel), leg("b", 30002, kernel)],
            }],
            packets_kernel: 2468,
            bytes_kernel: 424_496,
            packets_user: 6,
            bytes_user: 1032,
        }
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(0), "0s");
        assert_eq!(fmt_duration(59), "59s");
        assert_eq!(fmt_duration(60), "1m00s");
        assert_eq!(fmt_duration(65), "1m05s");
        assert_eq!(fmt_duration(3599), "59m59s");
        assert_eq!(fmt_duration(2 * 3600 + 3 * 60 + 59), "2h03m");
        assert_eq!(fmt_duration(86399), "23h59m");
        assert_eq!(fmt_duration(86400 + 4 * 3600), "1d04h");
        assert_eq!(fmt_duration(u64::MAX).chars().last(), Some('h'));
        assert_eq!(opt_duration(None), "-");
    }

    #[test]
    fn sessions_empty() {
        assert_eq!(sessions_table(&[]), "no sessions\n");
    }

    #[test]
    fn sessions_aligned() {
        let mut long = session("a-much-longer-call-id@example.org", false);
        long.policy = LatchPolicy::Alternate;
        long.state = SessionState::Offered;
        long.age_secs = 7380;
        long.idle_secs = Some(59);
        long.packets_kernel = 0;
        let got = sessions_table(&[session("c1", true), long]);
        let want = "\
CALL-ID                            POLICY     STATE       AGE  IDLE  STREAMS  LEGS  PKTS-KERNEL  PKTS-USER
c1                                 immediate  answered  1m05s     -        1   2/2         2468          6
a-much-longer-call-id@example.org  alternate  offered   2h03m   59s        1   0/2            0          6
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn session_detail_table() {
        let got = session_detail(&session("c1", true));
        let want = "\
call id    c1
policy     immediate
state      answered
age        1m05s
idle       -
streams    1 (2 legs, 2 in kernel)
kernel     2468 packets, 424496 bytes
userspace  6 packets, 1032 bytes

STREAM  MEDIA  SIDE  RELAY             SIGNALLED        LATCHED            RTCP-LATCHED  KERNEL  PKTS-K  BYTES-K  PKTS-U  BYTES-U  IDLE  RELATCHES
     0  audio  a     198.18.1.1:30000  198.18.1.2:5004  203.0.113.7:40000  -             yes       1234   212248       3      516    2s          0
     0  audio  b     198.18.1.1:30002  198.18.1.2:5004  203.0.113.7:40000  -             yes       1234   212248       3      516    2s          0
";
        assert_eq!(got, want, "\n{got}");

        // Unlatched legs: every missing value is "-".
        let got = session_detail(&session("c2", false));
        let row = got.lines().last().expect("a leg row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "0",
                "audio",
                "b",
                "198.18.1.1:30002",
                "198.18.1.2:5004",
                "-",
                "-",
                "no",
                "0",
                "0",
                "3",
                "516",
                "-",
                "0"
            ]
        );
    }

    #[test]
    fn hostile_call_id_stays_on_one_line() {
        let got = sessions_table(&[session("evil\n\u{1b}[2J", true)]);
        assert_eq!(got.lines().count(), 2, "{got}");
        assert!(got.contains("evil\\n\\u{1b}[2J"), "{got}");
    }

    fn stats() -> StatsView {
        StatsView {
            instance: "default".into(),
            adopted: false,
            uptime_secs: 7380,
            sessions_offered: 1,
            sessions_answered: 2,
            kernel_legs: 4,
            forwarded_kernel_packets: 950,
            forwarded_kernel_bytes: 163_400,
            forwarded_user_packets: 50,
            forwarded_user_bytes: 8600,
            interfaces: vec![
                InterfaceView {
                    name: "r0".into(),
                    ifindex: 2,
                    xdp_mode: "native".into(),
                    addrs: vec!["198.18.1.1".parse().expect("ip")],
                },
                InterfaceView {
                    name: "relay-uplink".into(),
                    ifindex: 17,
                    xdp_mode: "generic".into(),
                    addrs: vec![],
                },
            ],
            dataplane: BTreeMap::from([
                ("verdict_redirect".into(), 950),
                ("drop_ttl".into(), 0),
                ("pass_unknown_port".into(), 12),
            ]),
            controller: BTreeMap::from([("latch".into(), 4), ("expired".into(), 0)]),
        }
    }

    #[test]
    fn stats_block() {
        let got = stats_text(&stats());
        let want = "\
instance             default
adopted              no
uptime               2h03m
sessions             3 (1 offered, 2 answered)
kernel legs          4
forwarded kernel     950 packets, 163400 bytes
forwarded userspace  50 packets, 8600 bytes
kernel share         95.0% of packets, 95.0% of bytes

NAME          IFINDEX  XDP      ADDRS
r0                  2  native   198.18.1.1
relay-uplink       17  generic  -

data-plane counters (non-zero):
  pass_unknown_port  12
  verdict_redirect   950

controller counters (non-zero):
  latch  4
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn stats_nothing_forwarded() {
        let mut s = stats();
        s.forwarded_kernel_packets = 0;
        s.forwarded_kernel_bytes = 0;
        s.forwarded_user_packets = 0;
        s.forwarded_user_bytes = 0;
        s.interfaces.clear();
        s.dataplane.clear();
        s.controller.clear();
        let got = stats_text(&s);
        assert!(
            got.contains("kernel share         - of packets, - of bytes\n"),
            "{got}"
        );
        assert!(got.contains("no interfaces attached\n"), "{got}");
        assert!(
            got.contains("data-plane counters (non-zero): none\n"),
            "{got}"
        );
        assert!(
            got.contains("controller counters (non-zero): none\n"),
            "{got}"
        );
    }

    #[test]
    fn ports_table() {
        let p = PortsView {
            port_min: 30000,
            port_max: 39999,
            quarantine_secs: 60,
            exhausted: 3,
            pools: vec![
                PoolView {
                    addr: "198.18.1.1".parse().expect("ip"),
                    total_pairs: 5000,
                    used_pairs: 2,
                    free_pairs: 4990,
                    quarantined_pairs: 8,
                },
                PoolView {
                    addr: "2001:db8::1".parse().expect("ip"),
                    total_pairs: 5000,
                    used_pairs: 0,
                    free_pairs: 5000,
                    quarantined_pairs: 0,
                },
            ],
        };
        let want = "\
range 30000-39999, quarantine 1m00s

ADDR         TOTAL  USED  FREE  QUARANTINED
198.18.1.1    5000     2  4990            8
2001:db8::1   5000     0  5000            0

exhausted 3 (allocations refused for lack of ports)
";
        let got = ports_text(&p);
        assert_eq!(got, want, "\n{got}");
        let empty = PortsView { pools: vec![], ..p };
        assert!(ports_text(&empty).contains("no relay addresses\n"));
    }

    #[test]
    fn deleted_line() {
        assert_eq!(
            deleted_text(&session("c1", true)),
            "deleted c1 (2 legs removed, ports quarantined)\n"
        );
    }

    #[test]
    fn error_lines() {
        let e = ClientError::Unreachable {
            addr: DEFAULT_API,
            reason: "refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach the daemon's API at 127.0.0.1:9901 (is `relay-ctl daemon` running?)"
        );
        assert_eq!(e.exit_code(), 2);
        let e = ClientError::Api(ApiError::not_found("no session \"x\"\nsecond line"));
        assert_eq!(e.to_string(), "no session \"x\" second line (HTTP 404)");
        assert_eq!(e.exit_code(), 1);
    }
}
