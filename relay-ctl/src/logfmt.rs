//! The daemon's log lines: `text`, `kv` (logfmt) or `json`, each carrying the record's
//! structured key-values (`call_id`, `stream`, `side`, `peer`, ...), and journald-friendly when
//! stderr is the journal.
//!
//! This is a formatter on env_logger's `Builder::format` closure rather than a `log::Log` of
//! our own: env_logger keeps doing the filtering (RUST_LOG syntax, `--log-level`) and writes
//! each record to stderr in one buffered write, so concurrent tasks never interleave half
//! lines; only the rendering is ours. [`render`] is a pure function of the record, so the
//! escaping is unit-tested without a logger.
//!
//! Every format writes exactly one line per record: newlines and other control characters in
//! the message or in a value (a call id comes from the network) are escaped, so a value can
//! neither start a new line nor, in `kv`, inject a field of its own (a value with a space,
//! `=` or `"` is quoted).
use std::{
    fmt::{Display, Write as _},
    io::Write as _,
};

use log::{
    Level, Record,
    kv::{self, Key, Value, VisitSource},
};
use serde::Deserialize;

/// Log line format (`--log-format`, `log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `[ts LEVEL target] message key=value ...` (journald: `<N>[LEVEL target] ...`).
    Text,
    /// logfmt: `ts=... level=info target=... msg="..." key=value ...`.
    Kv,
    /// One JSON object per line: `{"ts":...,"level":...,"target":...,"msg":...,"key":...}`.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Kv => "kv",
            LogFormat::Json => "json",
        }
    }
}

/// How lines are written: the format, and whether stderr is journald (then every line starts
/// with the sd-daemon(3) priority prefix `<3>`..`<7>` and carries no timestamp of ours: the
/// journal stamps each line and records the priority from the prefix, which it strips).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub format: LogFormat,
    pub journald: bool,
    /// Colour the level of `text` (stderr is a terminal and NO_COLOR is unset), as
    /// env_logger's own format does.
    pub color: bool,
}

/// Field names of the record itself; a key-value with one of these names is written as
/// `_name` so it cannot shadow them (or make a JSON object with a duplicate key).
const RESERVED: [&str; 4] = ["ts", "level", "target", "msg"];

/// sd-daemon(3) priority of a level: err, warning, info, debug.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether stderr is the journal: systemd sets `JOURNAL_STREAM=<dev>:<inode>` of the stream
/// it connected stdout/stderr to; compare it with stderr's own, so a child whose stderr was
/// redirected elsewhere does not take the variable it inherited for its own.
pub fn stderr_is_journal() -> bool {
    use std::os::{fd::AsFd, unix::fs::MetadataExt};
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    var.to_str()
        .is_some_and(|v| journal_stream_matches(v, meta.dev(), meta.ino()))
}

/// `JOURNAL_STREAM`'s `<dev>:<inode>` (decimal) names this device and inode.
pub fn journal_stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.trim().split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// The style for a `--log-format` choice (None: not given): the choice, else `text`; journald
/// when stderr is the journal; colour on a terminal.
pub fn style(choice: Option<LogFormat>) -> Style {
    use std::io::IsTerminal;
    let journald = stderr_is_journal();
    Style {
        format: choice.unwrap_or(LogFormat::Text),
        journald,
        color: !journald
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::io::stderr().is_terminal(),
    }
}

/// Install the logger: env_logger's filter (RUST_LOG if set, else `level`, else `info`) with
/// our formatter.
pub fn init(style: Style, level: Option<&str>) {
    let env = env_logger::Env::default().default_filter_or(level.unwrap_or("info"));
    env_logger::Builder::from_env(env)
        .format(move |buf, record| {
            let ts = if style.journald {
                None
            } else {
                Some(buf.timestamp_millis())
            };
            let line = render(style, ts.as_ref().map(|t| t as &dyn Display), record);
            buf.write_all(line.as_bytes())
        })
        .init();
}

/// One record as one line (with its `\n`). `ts` is left out when None (journald).
pub fn render(style: Style, ts: Option<&dyn Display>, record: &Record) -> String {
    let mut out = String::with_capacity(160);
    if style.journald {
        let _ = write!(out, "<{}>", syslog_priority(record.level()));
    }
    let msg = record.args().to_string();
    let mut kvs = Collect(Vec::new());
    // Our visitor never fails; a failing source only loses its remaining pairs.
    let _ = record.key_values().visit(&mut kvs);
    match style.format {
        LogFormat::Text => {
            out.push('[');
            if let Some(ts) = ts {
                let _ = write!(out, "{ts} ");
            }
            let level = record.level();
            if style.color {
                // env_logger's colours: red bold, yellow, green, blue, cyan.
                let sgr = match level {
                    Level::Error => "1;31",
                    Level::Warn => "33",
                    Level::Info => "32",
                    Level::Debug => "34",
                    Level::Trace => "36",
                };
                let _ = write!(out, "\x1b[{sgr}m{level:<5}\x1b[0m {}] ", record.target());
            } else {
                let _ = write!(out, "{level:<5} {}] ", record.target());
            }
            escape_into(&mut out, &msg);
            for (k, v) in &kvs.0 {
                out.push(' ');
                logfmt_pair(&mut out, &field_key(k), v);
            }
        }
        LogFormat::Kv => {
            if let Some(ts) = ts {
                logfmt_pair(&mut out, "ts", ts);
                out.push(' ');
            }
            logfmt_pair(&mut out, "level", level_name(record.level()));
            out.push(' ');
            logfmt_pair(&mut out, "target", record.target());
            out.push(' ');
            logfmt_pair(&mut out, "msg", &msg);
            for (k, v) in &kvs.0 {
                out.push(' ');
                logfmt_pair(&mut out, &field_key(k), v);
            }
        }
        LogFormat::Json => {
            out.push('{');
            let mut first = true;
            let mut field = |out: &mut String, k: &str, v: serde_json::Value| {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&json_string(k));
                out.push(':');
                // A Value's Display is valid JSON (strings escaped, one line).
                let _ = write!(out, "{v}");
            };
            if let Some(ts) = ts {
                field(&mut out, "ts", ts.to_string().into());
            }
            field(&mut out, "level", level_name(record.level()).into());
            field(&mut out, "target", record.target().into());
            field(&mut out, "msg", msg.into());
            for (k, v) in kvs.0 {
                field(&mut out, &field_key(&k), v.json());
            }
            out.push('}');
        }
    }
    out.push('\n');
    out
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// A key-value, owned: numbers and bools stay typed for JSON.
#[derive(Debug, Clone, PartialEq)]
enum Owned {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl Owned {
    fn from_value(v: &Value) -> Owned {
        if let Some(s) = v.to_borrowed_str() {
            Owned::Str(s.to_owned())
        } else if let Some(b) = v.to_bool() {
            Owned::Bool(b)
        } else if let Some(n) = v.to_u64() {
            Owned::U64(n)
        } else if let Some(n) = v.to_i64() {
            Owned::I64(n)
        } else if let Some(f) = v.to_f64().filter(|f| f.is_finite()) {
            Owned::F64(f)
        } else {
            Owned::Str(v.to_string())
        }
    }

    fn json(self) -> serde_json::Value {
        match self {
            Owned::Str(s) => s.into(),
            Owned::U64(n) => n.into(),
            Owned::I64(n) => n.into(),
            Owned::F64(f) => f.into(),
            Owned::Bool(b) => b.into(),
        }
    }
}

impl Display for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owned::Str(s) => f.write_str(s),
            Owned::U64(n) => write!(f, "{n}"),
            Owned::I64(n) => write!(f, "{n}"),
            Owned::F64(x) => write!(f, "{x}"),
            Owned::Bool(b) => write!(f, "{b}"),
        }
    }
}

struct Collect(Vec<(String, Owned)>);

impl<'kvs> VisitSource<'kvs> for Collect {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        self.0
            .push((key.as_str().to_owned(), Owned::from_value(&value)));
        Ok(())
    }
}

/// A key as written: characters outside `[A-Za-z0-9_.-]` become `_` (keys come from our code,
/// but `Key::from_str` could take anything), and a reserved name gets a leading `_`.
fn field_key(k: &str) -> String {
    let mut s: String = k
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || RESERVED.contains(&s.as_str()) {
        s.insert(0, '_');
    }
    s
}

/// `key=value`, the value quoted and escaped when it must be (logfmt).
fn logfmt_pair(out: &mut String, k: &str, v: &(impl Display + ?Sized)) {
    out.push_str(k);
    out.push('=');
    logfmt_value(out, &v.to_string());
}

/// A logfmt value: bare when it is non-empty and has no space, `=`, `"`, `\` or character
/// that needs escaping; else in double quotes with `\"`, `\\` and the escapes of
/// [`escape_into`] (a quoted value is also a valid JSON string).
pub fn logfmt_value(out: &mut String, v: &str) {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || needs_escape(c));
    if bare {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => escape_char(out, c),
        }
    }
    out.push('"');
}

/// Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: what could
/// end a line, move a terminal's cursor or fake one in a viewer.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn escape_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// `s` with its control characters escaped (`\n`, `\r`, `\t`, `\u001b`, ...): the text
/// format's message, kept on one line.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        escape_char(out, c);
    }
}

/// A JSON string literal (serde_json's escaping).
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-12-05T23:57:14.123Z";

    fn style(format: LogFormat, journald: bool) -> Style {
        Style {
            format,
            journald,
            color: false,
        }
    }

    /// Render a record at `level` with message `msg` and key-values `kvs`.
    fn line(s: Style, level: Level, msg: &str, kvs: &[(&str, &dyn kv::ToValue)]) -> String {
        let kvs: Vec<(&str, Value)> = kvs.iter().map(|(k, v)| (*k, v.to_value())).collect();
        let ts: &dyn Display = &TS;
        render(
            s,
            if s.journald { None } else { Some(ts) },
            &Record::builder()
                .level(level)
                .target("relay_ctl::sessions")
                .args(format_args!("{msg}"))
                .key_values(&kvs)
                .build(),
        )
    }

    /// A minimal logfmt parser (the format as documented): `key=bare` or `key="quoted"` with
    /// JSON escapes, separated by one space. Fails on anything else.
    fn parse_logfmt(line: &str) -> Vec<(String, String)> {
        let line = line.strip_suffix('\n').expect("newline at the end");
        assert!(!line.contains('\n'), "one line: {line:?}");
        let mut fields = vec![];
        let mut rest = line;
        while !rest.is_empty() {
            let (k, after) = rest.split_once('=').expect("key=");
            assert!(!k.contains([' ', '"']), "key {k:?} in {line:?}");
            let (v, after) = if let Some(q) = after.strip_prefix('"') {
                // Find the closing quote that is not escaped.
                let mut end = None;
                let mut escaped = false;
                for (i, c) in q.char_indices() {
                    match c {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.expect("closing quote");
                let v: String = serde_json::from_str(&format!("\"{}\"", &q[..end]))
                    .expect("quoted value is a JSON string");
                (v, &q[end + 1..])
            } else {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            };
            fields.push((k.to_owned(), v));
            rest = after.strip_prefix(' ').unwrap_or(after);
            assert!(
                after.is_empty() || after.starts_with(' '),
                "junk after a value: {after:?}"
            );
        }
        fields
    }

    fn get<'a>(fields: &'a [(String, String)], k: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// Call ids a hostile or sloppy peer could send.
    const NASTY: [&str; 9] = [
        "abc",
        "a\"b",
        "a=b level=error",
        "with spaces",
        "line\nlevel=error msg=\"fake\"",
        "cr\rlf\n",
        "esc\u{1b}[31mred\u{7f}\u{9b}",
        "",
        "back\\slash \u{2028} ünïcødé",
    ];

    #[test]
    fn kv_round_trips_every_nasty_call_id_on_one_line() {
        for id in NASTY {
            let l = line(
                style(LogFormat::Kv, false),
                Level::Info,
                &format!("session {id} created"),
                &[("call_id", &id), ("stream", &2u32)],
            );
            let f = parse_logfmt(&l);
            let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                ["ts", "level", "target", "msg", "call_id", "stream"],
                "{l}"
            );
            assert_eq!(get(&f, "ts"), Some(TS));
            assert_eq!(get(&f, "level"), Some("info"));
            assert_eq!(get(&f, "target"), Some("relay_ctl::sessions"));
            assert_eq!(
                get(&f, "msg"),
                Some(format!("session {id} created").as_str())
            );
            assert_eq!(get(&f, "call_id"), Some(id), "{l}");
            assert_eq!(get(&f, "stream"), Some("2"));
            // Nothing a terminal would act on.
            assert!(!l.trim_end().chars().any(needs_escape), "{l:?}");
        }
    }

    #[test]
    fn kv_quotes_only_when_needed() {
        let l = line(
            style(LogFormat::Kv, false),
            Level::Warn,
            "latched",
            &[("call_id", &"abc@host"), ("peer", &"192.0.2.2:5004")],
        );
        assert_eq!(
            l,
            format!(
                "ts={TS} level=warn target=relay_ctl::sessions msg=latched call_id=abc@host peer=192.0.2.2:5004\n"
            )
        );
        let mut s = String::new();
        logfmt_value(&mut s, "");
        assert_eq!(s, "\"\"");
    }

    #[test]
    fn json_is_one_valid_object_per_line_with_typed_values() {
        for id in NASTY {
            let l = line(
                style(LogFormat::Json, false),
                Level::Error,
                &format!("session {id}\ngone"),
                &[("call_id", &id), ("stream", &3u32), ("kernel", &true)],
            );
            assert!(l.ends_with("}\n") && l.matches('\n').count() == 1, "{l:?}");
            let v: serde_json::Value = serde_json::from_str(&l).expect("valid JSON");
            assert_eq!(v["ts"], TS);
            assert_eq!(v["level"], "error");
            assert_eq!(v["target"], "relay_ctl::sessions");
            assert_eq!(v["msg"], format!("session {id}\ngone"));
            assert_eq!(v["call_id"], id);
            assert_eq!(v["stream"], 3);
            assert_eq!(v["kernel"], true);
        }
    }

    #[test]
    fn reserved_and_odd_keys_cannot_shadow_the_record() {
        let l = line(
            style(LogFormat::Json, false),
            Level::Info,
            "m",
            &[("msg", &"x"), ("level", &"error"), ("a b=\"c", &1u8)],
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["msg"], "m");
        assert_eq!(v["level"], "info");
        assert_eq!(v["_msg"], "x");
        assert_eq!(v["_level"], "error");
        assert_eq!(v["a_b__c"], 1);
        let f = parse_logfmt(&line(
            style(LogFormat::Kv, false),
            Level::Info,
            "m",
            &[("msg", &"x")],
        ));
        assert_eq!(get(&f, "msg"), Some("m"));
        assert_eq!(get(&f, "_msg"), Some("x"));
    }

    #[test]
    fn text_keeps_env_loggers_shape_and_appends_the_pairs() {
        let l = line(
            style(LogFormat::Text, false),
            Level::Info,
            "session abc created",
            &[("call_id", &"abc"), ("stream", &0u32)],
        );
        assert_eq!(
            l,
            format!("[{TS} INFO  relay_ctl::sessions] session abc created call_id=abc stream=0\n")
        );
        // A newline in the message or a value stays escaped on the one line.
        let l = line(
            style(LogFormat::Text, false),
            Level::Warn,
            "bad\nline",
            &[("call_id", &"x\ny z")],
        );
        assert_eq!(
            l,
            format!("[{TS} WARN  relay_ctl::sessions] bad\\nline call_id=\"x\\ny z\"\n")
        );
    }

    #[test]
    fn text_colours_only_the_level_on_a_terminal() {
        let s = Style {
            color: true,
            ..style(LogFormat::Text, false)
        };
        let l = line(s, Level::Warn, "m\u{1b}", &[("call_id", &"c")]);
        assert_eq!(
            l,
            format!("[{TS} \x1b[33mWARN \x1b[0m relay_ctl::sessions] m\\u001b call_id=c\n")
        );
    }

    #[test]
    fn journald_prefixes_the_priority_and_drops_the_timestamp() {
        for (level, p) in [
            (Level::Error, "<3>"),
            (Level::Warn, "<4>"),
            (Level::Info, "<6>"),
            (Level::Debug, "<7>"),
            (Level::Trace, "<7>"),
        ] {
            let t = line(
                style(LogFormat::Text, true),
                level,
                "m",
                &[("call_id", &"c")],
            );
            assert_eq!(
                t,
                format!("{p}[{level:<5} relay_ctl::sessions] m call_id=c\n")
            );
            let k = line(style(LogFormat::Kv, true), level, "m", &[("call_id", &"c")]);
            let rest = k.strip_prefix(p).expect("priority prefix");
            let f = parse_logfmt(rest);
            assert_eq!(get(&f, "ts"), None);
            assert_eq!(get(&f, "call_id"), Some("c"));
            let j = line(style(LogFormat::Json, true), level, "m", &[]);
            let rest = j.strip_prefix(p).expect("priority prefix");
            let v: serde_json::Value = serde_json::from_str(rest).unwrap();
            assert!(v.get("ts").is_none());
            assert_eq!(v["level"], level_name(level));
        }
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(journal_stream_matches("8:12345\n", 8, 12345));
        assert!(!journal_stream_matches("8:12346", 8, 12345));
        assert!(!journal_stream_matches("9:12345", 8, 12345));
        assert!(!journal_stream_matches("", 8, 12345));
        assert!(!journal_stream_matches("8", 8, 12345));
        assert!(!journal_stream_matches("x:y", 8, 12345));
    }
}

/// A lint over the sources: every log line that names a session must carry `call_id` as a
/// key-value, so a new per-call line without it fails here rather than in an operator's
/// log search.
#[cfg(test)]
mod call_id_lint {
    use std::path::Path;

    const MACROS: [&str; 6] = [
        "error!(",
        "warn!(",
        "info!(",
        "debug!(",
        "trace!(",
        "log_limited!(",
    ];

    /// The invocation's text up to its closing parenthesis, and that text with the contents of
    /// string literals blanked (parentheses and `;` in a message are not code).
    fn invocation(src: &str) -> Option<(&str, String)> {
        let (mut depth, mut in_str, mut escaped) = (1usize, false, false);
        let mut code = String::new();
        for (i, c) in src.char_indices() {
            if in_str {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_str = false,
                    _ => {}
                }
                code.push(if c == '"' { '"' } else { ' ' });
                continue;
            }
            match c {
                '"' => in_str = true,
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some((&src[..i], code));
                    }
                }
                _ => {}
            }
            code.push(c);
        }
        None
    }

    /// Whether a line is about one call: its message or arguments name a session.
    fn about_a_call(text: &str) -> bool {
        ["call_id", "session {", "{session", "call.session"]
            .iter()
            .any(|p| text.contains(p))
    }

    /// The key-values are the code before the first `;` at the top level of the invocation.
    fn has_call_id_kv(code: &str) -> bool {
        let mut depth = 0i32;
        for (i, c) in code.char_indices() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                ';' if depth == 0 => {
                    let kvs = &code[..i];
                    return kvs.split([',', ';']).any(|kv| {
                        let k = kv.trim();
                        k == "call_id" || k.starts_with("call_id =") || k.starts_with("call_id:")
                    });
                }
                _ => {}
            }
        }
        false
    }

    /// (file:line, has call_id) of every log line about a call under `dir`.
    fn scan(dir: &Path, out: &mut Vec<(String, bool)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                scan(&p, out);
                continue;
            }
            // logs.rs defines log_limited!, this file holds the lint's own examples.
            if p.extension().is_none_or(|e| e != "rs")
                || p.ends_with("logs.rs")
                || p.ends_with("logfmt.rs")
            {
                continue;
            }
            let src = std::fs::read_to_string(&p).unwrap();
            for m in MACROS {
                for (at, _) in src.match_indices(m) {
                    // `warn!(` inside `log_limited!(`'s name would not match; a longer name
                    // ending in one (e.g. `my_info!(`) is not ours.
                    let before = src[..at].chars().next_back();
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    let Some((text, code)) = invocation(&src[at + m.len()..]) else {
                        continue;
                    };
                    if about_a_call(text) {
                        let line = src[..at].lines().count();
                        out.push((format!("{}:{line}", p.display()), has_call_id_kv(&code)));
                    }
                }
            }
        }
    }

    #[test]
    fn the_lint_sees_kvs_and_messages() {
        let (t, c) = invocation(r#"call_id, stream = 1; "session {call_id} (x;)", a)"#).unwrap();
        assert!(about_a_call(t) && has_call_id_kv(&c));
        let (t, c) = invocation(r#""session {}: (y)", s.call_id) + 1"#).unwrap();
        assert!(about_a_call(t) && !has_call_id_kv(&c));
        let (_, c) =
            invocation(r#"log::Level::Warn, "site", call_id = id.as_str(); "m")"#).unwrap();
        assert!(has_call_id_kv(&c));
        let (t, _) = invocation(r#""adopted {n} session(s)")"#).unwrap();
        assert!(!about_a_call(t));
    }

    #[test]
    fn every_log_line_about_a_call_carries_call_id() {
        let mut sites = vec![];
        scan(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut sites,
        );
        let missing: Vec<&str> = sites
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(s, _)| s.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "log lines about a call without a `call_id` key-value: {missing:#?}"
        );
        // The lint found the lines it is about (sessions, ng, SIP).
        assert!(sites.len() >= 15, "{sites:#?}");
        eprintln!("{} log lines about a call, all with call_id", sites.len());
    }
}
