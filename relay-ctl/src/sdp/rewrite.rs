//! Rewrite a parsed SDP body line by line: only the lines that name an address or port the
//! relay replaces are rebuilt; every other byte (order, case, line endings, attributes we
//! do not know) goes out unchanged.
use std::net::IpAddr;

use super::parse::{Line, Sdp};

/// Where one media section's peer must send now: the relay's address and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaPlan {
    pub addr: IpAddr,
    pub port: u16,
    pub rtcp_port: u16,
}

/// What to change.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Replace the o= line's address (ng `replace: [origin]`).
    pub origin: Option<IpAddr>,
    /// The session-level c= address (rewritten if present).
    pub session_conn: Option<IpAddr>,
    /// Index-aligned with the m= sections; `None` leaves a section alone (rejected streams).
    pub media: Vec<Option<MediaPlan>>,
    /// Remove ICE attributes (ng `ICE: remove`): our relay does not take part in ICE.
    pub strip_ice: bool,
    /// Remove a=rtcp lines (ng flag `no-rtcp-attribute`).
    pub strip_rtcp: bool,
}

/// Attributes that belong to ICE (RFC 8839) at session or media level.
const ICE_ATTRS: &[&str] = &[
    "candidate",
    "remote-candidates",
    "end-of-candidates",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "ice-pacing",
];

fn addr_type(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IP4" } else { "IP6" }
}

/// The attribute name of an a= line ("a=rtcp:5 IN.." -> "rtcp").
fn attr_name(text: &[u8]) -> Option<&[u8]> {
    let rest = text.strip_prefix(b"a=")?;
    let end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
    Some(&rest[..end])
}

fn is_ice(text: &[u8]) -> bool {
    attr_name(text).is_some_and(|n| ICE_ATTRS.iter().any(|a| a.as_bytes() == n))
}

/// Replace the space-separated field `idx` of `text` (the m= port, the o= address); a field
/// past the end leaves the text as it is (the parser already accepted the line). Fields are
/// separated by runs of spaces, as the parser reads them: "IN  IP4" is two fields, not three
/// (found by fuzzing: counting the empty one rewrote the wrong field).
fn replace_field(text: &[u8], idx: usize, new: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    let mut field = 0;
    for (i, f) in text.split(|&b| b == b' ').enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        if f.is_empty() {
            continue;
        }
        if field == idx {
            out.extend_from_slice(new.as_bytes());
        } else {
            out.extend_from_slice(f);
        }
        field += 1;
    }
    out
}

/// The m= port field may carry "/count": keep the count.
fn m_port(text: &[u8], port: u16) -> Vec<u8> {
    let field = text
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .nth(1)
        .unwrap_or_default();
    let suffix = field
        .iter()
        .position(|&b| b == b'/')
        .map(|i| String::from_utf8_lossy(&field[i..]).into_owned())
        .unwrap_or_default();
    replace_field(text, 1, &format!("{port}{suffix}"))
}

fn conn_line(a: IpAddr) -> Vec<u8> {
    format!("c=IN {} {a}", addr_type(a)).into_bytes()
}

/// Apply `plan` to `sdp`.
pub fn rewrite(sdp: &Sdp, plan: &Plan) -> Vec<u8> {
    let raw = &sdp.raw;
    let mut out = Vec::with_capacity(raw.len() + 64);
    // A section whose address differs from the session-level one, but that has no c= line of
    // its own, gets one inserted before its first b=/k=/a= line (RFC 8866 field order).
    let session_c = plan.session_conn.filter(|_| sdp.session_addr.is_some());
    let has_c: Vec<bool> = (0..sdp.media.len())
        .map(|i| {
            sdp.lines
                .iter()
                .any(|l| l.section == Some(i) && raw[l.start..l.end].starts_with(b"c="))
        })
        .collect();
    let mut inserted = vec![false; sdp.media.len()];
    for (n, line) in sdp.lines.iter().enumerate() {
        let Line {
            start,
            end,
            next,
            section,
        } = *line;
        let text = &raw[start..end];
        let eol = &raw[end..next];
        let mplan = section.and_then(|i| plan.media.get(i).copied().flatten());
        if let (Some(i), Some(mp)) = (section, mplan)
            && !has_c[i]
            && !inserted[i]
            && session_c != Some(mp.addr)
            && !text.starts_with(b"m=")
            && !text.starts_with(b"i=")
        {
            out.extend_from_slice(&conn_line(mp.addr));
            out.extend_from_slice(line_ending(sdp, n));
            inserted[i] = true;
        }
        if plan.strip_ice && is_ice(text) {
            continue;
        }
        let new: Option<Vec<u8>> = if text.starts_with(b"o=") {
            plan.origin.map(|a| {
                let t = replace_field(text, 4, addr_type(a));
                replace_field(&t, 5, &a.to_string())
            })
        } else if text.starts_with(b"c=") {
            match section {
                None => session_c.map(conn_line),
                Some(_) => mplan.map(|mp| conn_line(mp.addr)),
            }
        } else if text.starts_with(b"m=") {
            mplan.map(|mp| m_port(text, mp.port))
        } else if attr_name(text) == Some(b"rtcp") {
            if plan.strip_rtcp && section.is_some() {
                continue;
            }
            mplan.map(|mp| {
                // Keep the address form if the original had one (RFC 3605).
                if text.split(|&b| b == b' ').count() >= 4 {
                    format!(
                        "a=rtcp:{} IN {} {}",
                        mp.rtcp_port,
                        addr_type(mp.addr),
                        mp.addr
                    )
                    .into_bytes()
                } else {
                    format!("a=rtcp:{}", mp.rtcp_port).into_bytes()
                }
            })
        } else {
            None
        };
        out.extend_from_slice(new.as_deref().unwrap_or(text));
        out.extend_from_slice(eol);
        // A section with nothing after its m= line still needs its c= line.
        if let (Some(i), Some(mp)) = (section, mplan)
            && !has_c[i]
            && !inserted[i]
            && session_c != Some(mp.addr)
            && sdp.lines.get(n + 1).is_none_or(|l| l.section != section)
        {
            if eol.is_empty() {
                out.extend_from_slice(line_ending(sdp, n));
            }
            out.extend_from_slice(&conn_line(mp.addr));
            out.extend_from_slice(line_ending(sdp, n));
            inserted[i] = true;
        }
    }
    out
}

/// The line ending the body uses (that of line `n`, else the first line's, else CRLF).
fn line_ending(sdp: &Sdp, n: usize) -> &[u8] {
    let pick = |l: &Line| &sdp.raw[l.end..l.next];
    sdp.lines
        .get(n)
        .map(pick)
        .filter(|e| !e.is_empty())
        .or_else(|| sdp.lines.first().map(pick).filter(|e| !e.is_empty()))
        .unwrap_or(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::fixtures::AUDIO_VIDEO;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn plan(addr: &str, ports: &[u16]) -> Plan {
        Plan {
            origin: None,
            session_conn: Some(ip(addr)),
            media: ports
                .iter()
                .map(|&p| {
                    Some(MediaPlan {
                        addr: ip(addr),
                        port: p,
                        rtcp_port: p + 1,
                    })
                })
                .collect(),
            strip_ice: false,
            strip_rtcp: false,
        }
    }

    #[test]
    fn rewrites_addresses_ports_and_rtcp_only() {
        let s = Sdp::parse(AUDIO_VIDEO.as_bytes()).expect("valid");
        let out = rewrite(&s, &plan("198.18.2.1", &[30000, 30002]));
        let want = AUDIO_VIDEO
            .replace("c=IN IP4 192.0.2.2", "c=IN IP4 198.18.2.1")
            .replace("c=IN IP4 192.0.2.3", "c=IN IP4 198.18.2.1")
            .replace("m=audio 49170", "m=audio 30000")
            .replace("m=video 51372", "m=video 30002")
            .replace("a=rtcp:49171", "a=rtcp:30001")
            .replace(
                "a=rtcp:53020 IN IP4 192.0.2.4",
                "a=rtcp:30003 IN IP4 198.18.2.1",
            );
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // Parses again and names only the relay.
        let again = Sdp::parse(want.as_bytes()).expect("valid");
        assert!(again.media.iter().all(|m| m.addr == ip("198.18.2.1")));
    }

    #[test]
    fn strips_ice_and_replaces_origin() {
        let s = Sdp::parse(AUDIO_VIDEO.as_bytes()).expect("valid");
        let mut p = plan("198.18.2.1", &[30000, 30002]);
        p.strip_ice = true;
        p.origin = Some(ip("2001:db8::1"));
        let out = String::from_utf8(rewrite(&s, &p)).unwrap();
        for gone in ["ice-ufrag", "candidate", "ice-pwd", "end-of-candidates"] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        assert!(out.contains("o=alice 2890844526 2890844526 IN IP6 2001:db8::1\r\n"));
        assert!(out.contains("a=rtpmap:101 telephone-event/8000\r\n"));
    }

    #[test]
    fn rejected_streams_stay_untouched() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n";
        let s = Sdp::parse(sdp.as_bytes()).expect("valid");
        let mut p = plan("198.18.1.1", &[30000]);
        p.media.push(None);
        let out = String::from_utf8(rewrite(&s, &p)).unwrap();
        assert!(
            out.ends_with("m=audio 30000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n"),
            "{out}"
        );
    }

    #[test]
    fn inserts_media_connection_when_addresses_differ() {
        let sdp = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n\
m=audio 4000 RTP/AVP 0\na=sendrecv\nm=video 5000 RTP/AVP 96";
        let s = Sdp::parse(sdp.as_bytes()).expect("valid");
        let mut p = plan("198.18.1.1", &[30000, 30002]);
        p.media[1] = Some(MediaPlan {
            addr: ip("198.18.2.1"),
            port: 30002,
            rtcp_port: 30003,
        });
        let out = String::from_utf8(rewrite(&s, &p)).unwrap();
        assert_eq!(
            out,
            "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 198.18.1.1\nt=0 0\n\
m=audio 30000 RTP/AVP 0\na=sendrecv\nm=video 30002 RTP/AVP 96\nc=IN IP4 198.18.2.1\n"
        );
        let again = Sdp::parse(out.as_bytes()).expect("valid");
        assert_eq!(again.media[1].addr, ip("198.18.2.1"));
        assert_eq!(again.media[0].addr, ip("198.18.1.1"));
    }

    #[test]
    fn keeps_port_count_and_strips_rtcp_on_request() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000/2 RTP/AVP 0\r\na=rtcp:4001\r\n";
        let s = Sdp::parse(sdp.as_bytes()).expect("valid");
        let mut p = plan("198.18.1.1", &[30000]);
        p.strip_rtcp = true;
        let out = String::from_utf8(rewrite(&s, &p)).unwrap();
        assert!(out.contains("m=audio 30000/2 RTP/AVP 0\r\n"), "{out}");
        assert!(!out.contains("a=rtcp"));
    }

    /// Fuzzing found it: the parser takes runs of spaces as one separator, the rewriter once
    /// counted the empty field between them and wrote the relay address after the old one.
    #[test]
    fn fields_separated_by_runs_of_spaces() {
        let raw = b"v=0\r\no=alice 1 1 IN  IP4  192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\n\
                    t=0 0\r\nm=audio 49170 RTP/AVP 0\r\n";
        let s = Sdp::parse(raw).expect("valid");
        let mut p = plan("198.18.1.1", &[30000]);
        p.origin = Some(ip("198.18.1.1"));
        let out = rewrite(&s, &p);
        let text = String::from_utf8(out.clone()).expect("utf-8");
        assert!(
            text.contains("o=alice 1 1 IN  IP4  198.18.1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("m=audio 30000 RTP/AVP 0\r\n"), "{text}");
        assert_eq!(Sdp::parse(&out).expect("parses").media.len(), 1);
    }

    proptest::proptest! {
        /// Whatever parses also rewrites without panicking.
        #[test]
        fn never_panics_on_mutated_sdp(pos in 0usize..AUDIO_VIDEO.len(), b in proptest::prelude::any::<u8>()) {
            let mut raw = AUDIO_VIDEO.as_bytes().to_vec();
            raw[pos] = b;
            if let Ok(s) = Sdp::parse(&raw) {
                let plan = Plan {
                    origin: Some("198.18.1.1".parse().unwrap()),
                    session_conn: Some("198.18.1.1".parse().unwrap()),
                    media: s.media.iter().map(|_| Some(MediaPlan {
                        addr: "198.18.1.1".parse().unwrap(), port: 30000, rtcp_port: 30001,
                    })).collect(),
                    strip_ice: true,
                    strip_rtcp: false,
                };
                let _ = rewrite(&s, &plan);
            }
        }
    }
}
