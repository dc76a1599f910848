//! The daemon's log formats end to end: the real daemon in the NAT topology with
//! `--log-format json`, `kv`, and the default under journald (`JOURNAL_STREAM` naming its
//! stderr); a call created through the HTTP API, latched by one packet and deleted. Every
//! stderr line must parse in the chosen format, and the lines about the call carry its id as
//! `call_id`, even an id full of quotes, `=` and backslashes.
//!
//! Run as root under the namespace lock:
//! `flock /tmp/relay-netns.lock cargo +1.99.1 test -p relay-ctl --test logs_e2e`.
mod common;

use std::{collections::HashMap, os::unix::fs::MetadataExt, time::Duration};

use common::*;
use relay_ctl::api::LatchPolicy;

/// A call id that would break a naive formatter: quotes, `=`, a backslash, a fake field,
/// non-ASCII (the API refuses whitespace and control characters; the formatter's unit tests
/// cover those).
const ID: &str = r#"lg"q"=1\x,level=error;ü"#;
/// `ID` as a logfmt value: quoted, `"` and `\` escaped.
const ID_LOGFMT: &str = r#""lg\"q\"=1\\x,level=error;ü""#;

/// Create the call, latch the caller's leg with one packet, delete the call; returns the
/// daemon's log afterwards (the lines are written before the API answers).
fn one_call(rig: &Rig) -> String {
    let v = rig
        .create(call(ID, LatchPolicy::Immediate))
        .expect("create");
    let caller = rig.caller(CALLER_PORT);
    caller.send_to(b"open-a", relays(&v).0).expect("send");
    assert!(
        wait_for(Duration::from_secs(3), || rig.session(ID).streams[0].legs
            [0]
        .latched
        .is_some()),
        "caller's leg latched:\n{}",
        rig.log()
    );
    rig.api(|c| c.delete_session(ID)).expect("delete");
    rig.log()
}

/// The messages about the call (they name the session) must all carry `call_id == ID`, and
/// the create, latch and delete lines must be among them.
fn check_call_lines(lines: &[(String, Option<String>)], log: &str) {
    let about: Vec<&(String, Option<String>)> = lines
        .iter()
        .filter(|(msg, _)| msg.contains(&format!("session {ID}")))
        .collect();
    for (msg, id) in &about {
        assert_eq!(id.as_deref(), Some(ID), "call_id of {msg:?}:\n{log}");
    }
    for what in [" created:", " latched to ", " deleted ("] {
        assert!(
            about.iter().any(|(m, _)| m.contains(what)),
            "a line with {what:?} about the call:\n{log}"
        );
    }
    // No line carries another call id (nothing was split or shifted into it); the ng request
    // of `ng_delete` has its own.
    for (msg, id) in lines {
        if let Some(id) = id.as_ref().filter(|id| *id != NG_SESSION) {
            assert_eq!(id, ID, "call_id of {msg:?}:\n{log}");
        }
    }
}

/// The ng request's Call-ID, and the session id it maps to (`/` escaped as in the API path).
const NG_CALL_ID: &str = r#"ng/1"x"#;
const NG_SESSION: &str = r#"ng%2F1"x"#;

/// An ng `delete` of a call the relay does not know, from inside the relay namespace: an
/// error reply, and a log line with the call's id.
fn ng_delete(rig: &Rig) {
    let sock = rig
        .topo
        .relay
        .udp_socket("127.0.0.1:0".parse().expect("addr"))
        .expect("ng client socket");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let msg = format!(
        "c1 d7:call-id{}:{NG_CALL_ID}7:command6:delete8:from-tag1:ae",
        NG_CALL_ID.len()
    );
    sock.send_to(msg.as_bytes(), "127.0.0.1:2223")
        .expect("send");
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("ng reply");
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.contains("6:result5:error"), "{reply}");
}

#[test]
fn json_every_line_is_an_object_and_the_calls_carry_call_id() {
    let rig = Rig::start("logjson", &["--log-format", "json"]);
    one_call(&rig);
    ng_delete(&rig);
    let log = rig.log();
    let mut lines = vec![];
    for l in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{log}"));
        for k in ["ts", "level", "target", "msg"] {
            assert!(v[k].is_string(), "{k} in {l}");
        }
        lines.push((
            v["msg"].as_str().unwrap_or_default().to_owned(),
            v.get("call_id")
                .map(|c| c.as_str().expect("a string").to_owned()),
        ));
        if v["msg"]
            .as_str()
            .is_some_and(|m| m.contains(" latched to "))
        {
            assert_eq!(v["stream"], 0, "{l}");
            assert_eq!(v["side"], "a", "{l}");
            assert!(v["peer"].is_string(), "{l}");
        }
    }
    assert!(lines.iter().any(|(m, _)| m.starts_with("ready:")), "{log}");
    check_call_lines(&lines, &log);
    // The ng error names its call too.
    assert!(
        lines
            .iter()
            .any(|(m, id)| m.starts_with("ng delete:") && id.as_deref() == Some(NG_SESSION)),
        "ng error line with call_id {NG_SESSION:?}:\n{log}"
    );
}

/// A logfmt line as (key, value) pairs: `key=bare` or `key="quoted"` (JSON escapes),
/// separated by single spaces; panics on anything else.
fn parse_logfmt(line: &str) -> Vec<(String, String)> {
    let mut fields = vec![];
    let mut rest = line;
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("no key= in {line:?}"));
        assert!(
            !k.is_empty() && !k.contains([' ', '"']),
            "key {k:?} in {line:?}"
        );
        let (v, after) = if let Some(q) = after.strip_prefix('"') {
            let mut escaped = false;
            let end = q
                .char_indices()
                .find(|&(_, c)| match c {
                    _ if escaped => {
                        escaped = false;
                        false
                    }
                    '\\' => {
                        escaped = true;
                        false
                    }
                    c => c == '"',
                })
                .map(|(i, _)| i)
                .unwrap_or_else(|| panic!("unclosed quote in {line:?}"));
            let v: String = serde_json::from_str(&format!("\"{}\"", &q[..end]))
                .unwrap_or_else(|e| panic!("bad escape ({e}) in {line:?}"));
            (v, &q[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        assert!(
            after.is_empty() || after.starts_with(' '),
            "junk after a value in {line:?}"
        );
        fields.push((k.to_owned(), v));
        rest = after.strip_prefix(' ').unwrap_or(after);
    }
    fields
}

#[test]
fn kv_every_line_parses_back_and_the_calls_carry_call_id() {
    let rig = Rig::start("logkv", &["--log-format", "kv"]);
    let log = one_call(&rig);
    let mut lines = vec![];
    for l in log.lines() {
        let fields = parse_logfmt(l);
        let keys: Vec<&str> = fields.iter().take(4).map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ts", "level", "target", "msg"], "{l}");
        let map: HashMap<String, String> = fields.into_iter().collect();
        lines.push((map["msg"].clone(), map.get("call_id").cloned()));
    }
    check_call_lines(&lines, &log);
    assert!(log.contains(&format!(" call_id={ID_LOGFMT}")), "{log}");
}

#[test]
fn journald_default_has_priority_prefixes_and_no_timestamp() {
    // systemd names the stream it gave the service as JOURNAL_STREAM=<dev>:<inode>; here that
    // is the daemon's log file.
    let rig = Rig::start_env("logjd", &[], |log| {
        let m = std::fs::metadata(log).expect("log file");
        vec![(
            "JOURNAL_STREAM".to_owned(),
            format!("{}:{}", m.dev(), m.ino()),
        )]
    });
    let log = one_call(&rig);
    for l in log.lines() {
        let (p, rest) = l.split_at(3.min(l.len()));
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&p),
            "priority prefix: {l:?}"
        );
        // `[LEVEL target] message`: no timestamp of ours before the level.
        let level = rest
            .strip_prefix('[')
            .map(|r| r.split(' ').next().unwrap_or(""));
        let want = match p {
            "<3>" => "ERROR",
            "<4>" => "WARN",
            "<6>" => "INFO",
            _ => "DEBUG",
        };
        assert_eq!(level, Some(want), "{l:?}");
    }
    for what in [" created:", " latched to ", " deleted ("] {
        assert!(
            log.lines().any(|l| l.starts_with("<6>[INFO  relay_ctl::")
                && l.contains(&format!("session {ID}"))
                && l.contains(what)
                && l.contains(&format!(" call_id={ID_LOGFMT}"))),
            "{what:?} line with call_id:\n{log}"
        );
    }
}
