//! Parse an SDP body: `sdp-types` (gstreamer's parser, lenient about field order, maintained)
//! decides whether the body is SDP and gives the fields; our own line index records where
//! each line starts and ends so `rewrite` can edit in place.
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

/// Bodies larger than this are refused (a SIP body over UDP is well under 64 KiB).
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// More m= lines than this are refused.
pub const MAX_MEDIA: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdpError {
    TooLarge(usize),
    /// What `sdp-types` said.
    Syntax(String),
    TooManyMedia(usize),
    /// A connection or origin address that is not an IP address (FQDNs are not resolved).
    NotAnIp(String),
    /// A media section with no connection address and none at session level.
    NoConnection(usize),
    /// Our line index disagrees with the parser (a body we would not edit safely).
    Inconsistent,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::TooLarge(n) => {
                write!(f, "SDP is {n} bytes, more than {MAX_SDP_BYTES}")
            }
            SdpError::Syntax(e) => write!(f, "malformed SDP: {e}"),
            SdpError::TooManyMedia(n) => {
                write!(f, "SDP has {n} media sections, more than {MAX_MEDIA}")
            }
            SdpError::NotAnIp(a) => write!(f, "SDP address {a:?} is not an IP address"),
            SdpError::NoConnection(i) => write!(
                f,
                "SDP media section {} has no connection address (c=) and the session has none",
                i + 1
            ),
            SdpError::Inconsistent => write!(f, "SDP lines could not be indexed consistently"),
        }
    }
}

impl std::error::Error for SdpError {}

/// One line of the body: `[start, end)` is its text without the line ending, `next` is where
/// the following line starts.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub start: usize,
    pub end: usize,
    pub next: usize,
    /// `None`: session level; `Some(i)`: inside media section `i` (its m= line included).
    pub section: Option<usize>,
}

/// What the relay needs to know about one m= section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaInfo {
    /// "audio", "video", ...
    pub kind: String,
    /// 0: the stream is rejected or disabled, nothing to relay.
    pub port: u16,
    /// "RTP/AVP", "RTP/SAVP", ...
    pub proto: String,
    /// The m= line's format list ("0 8 101").
    pub fmt: String,
    /// The effective connection address (media level, else session level).
    pub addr: IpAddr,
    /// From a=rtcp; the RTP port + 1 otherwise.
    pub rtcp: SocketAddr,
    /// The stream carries an a=rtcp-mux attribute.
    pub rtcp_mux: bool,
}

impl MediaInfo {
    pub fn rtp(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }
    /// Port 0 rejects a stream; an unspecified address (0.0.0.0, old-style hold) names no peer.
    pub fn active(&self) -> bool {
        self.port != 0
    }
}

/// A parsed body with its line index.
#[derive(Clone, Debug)]
pub struct Sdp {
    pub(crate) raw: Vec<u8>,
    pub(crate) lines: Vec<Line>,
    pub media: Vec<MediaInfo>,
    pub origin_addr: String,
    pub session_addr: Option<IpAddr>,
}

impl Sdp {
    pub fn parse(raw: &[u8]) -> Result<Sdp, SdpError> {
        if raw.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge(raw.len()));
        }
        let parsed = sdp_types::Session::parse(raw).map_err(|e| SdpError::Syntax(e.to_string()))?;
        if parsed.medias.len() > MAX_MEDIA {
            return Err(SdpError::TooManyMedia(parsed.medias.len()));
        }
        let lines = index_lines(raw);
        let m_lines = lines
            .iter()
            .filter(|l| raw[l.start..l.end].starts_with(b"m="))
            .count();
        if m_lines != parsed.medias.len() {
            return Err(SdpError::Inconsistent);
        }
        let session_addr = parsed
            .connection
            .as_ref()
            .map(|c| ip_of(&c.connection_address))
            .transpose()?;
        let mut media = Vec::with_capacity(parsed.medias.len());
        for (i, m) in parsed.medias.iter().enumerate() {
            let addr = match m.connections.first() {
                Some(c) => ip_of(&c.connection_address)?,
                None => session_addr.ok_or(SdpError::NoConnection(i))?,
            };
            let mut rtcp = SocketAddr::new(addr, m.port.wrapping_add(1));
            let mut rtcp_mux = false;
            for a in &m.attributes {
                match a.attribute.as_str() {
                    "rtcp" => {
                        if let Some(v) = &a.value {
                            rtcp = parse_rtcp(v, addr)?;
                        }
                    }
                    "rtcp-mux" => rtcp_mux = true,
                    _ => {}
                }
            }
            media.push(MediaInfo {
                kind: m.media.clone(),
                port: m.port,
                proto: m.proto.clone(),
                fmt: m.fmt.clone(),
                addr,
                rtcp,
                rtcp_mux,
            });
        }
        Ok(Sdp {
            raw: raw.to_vec(),
            lines,
            media,
            origin_addr: parsed.origin.unicast_address.clone(),
            session_addr,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The body with `plan` applied (see `rewrite.rs`); everything not named there is kept
    /// byte for byte.
    pub fn rewrite(&self, plan: &super::Plan) -> Vec<u8> {
        super::rewrite::rewrite(self, plan)
    }

    /// Media kinds of the active (port != 0) sections, in order: what a re-INVITE compares.
    pub fn active_kinds(&self) -> Vec<&str> {
        self.media
            .iter()
            .filter(|m| m.active())
            .map(|m| m.kind.as_str())
            .collect()
    }
}

/// "a.b.c.d" or "a.b.c.d/ttl[/n]" (multicast); FQDNs are refused.
fn ip_of(s: &str) -> Result<IpAddr, SdpError> {
    let host = s.split('/').next().unwrap_or(s);
    host.parse().map_err(|_| SdpError::NotAnIp(s.to_owned()))
}

/// "port" or "port IN IP4 addr" (RFC 3605).
fn parse_rtcp(v: &str, default: IpAddr) -> Result<SocketAddr, SdpError> {
    let mut it = v.split_ascii_whitespace();
    let port = it
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| SdpError::Syntax(format!("a=rtcp:{v}: no port")))?;
    let addr = match (it.next(), it.next(), it.next()) {
        (Some(_), Some(_), Some(a)) => ip_of(a)?,
        _ => default,
    };
    Ok(SocketAddr::new(addr, port))
}

/// Split on '\n', keeping a preceding '\r' out of the text (as sdp-types does).
fn index_lines(raw: &[u8]) -> Vec<Line> {
    let mut lines = vec![];
    let mut start = 0;
    let mut section: Option<usize> = None;
    while start < raw.len() {
        let nl = raw[start..].iter().position(|&b| b == b'\n');
        let (mut end, next) = match nl {
            Some(i) => (start + i, start + i + 1),
            None => (raw.len(), raw.len()),
        };
        if end > start && raw[end - 1] == b'\r' {
            end -= 1;
        }
        if raw[start..end].starts_with(b"m=") {
            section = Some(section.map_or(0, |s| s + 1));
        }
        lines.push(Line {
            start,
            end,
            next,
            section,
        });
        start = next;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::fixtures::AUDIO_VIDEO;

    #[test]
    fn parses_media_and_addresses() {
        let s = Sdp::parse(AUDIO_VIDEO.as_bytes()).expect("valid");
        assert_eq!(s.media.len(), 2);
        assert_eq!(s.session_addr, Some("192.0.2.2".parse().unwrap()));
        let a = &s.media[0];
        assert_eq!(
            (a.kind.as_str(), a.port, a.proto.as_str()),
            ("audio", 49170, "RTP/AVP")
        );
        assert_eq!(a.rtp(), "192.0.2.2:49170".parse().unwrap());
        assert_eq!(a.rtcp, "192.0.2.2:49171".parse().unwrap());
        let v = &s.media[1];
        assert_eq!(v.rtp(), "192.0.2.3:51372".parse().unwrap());
        assert_eq!(v.rtcp, "192.0.2.4:53020".parse().unwrap());
        assert_eq!(v.proto, "RTP/SAVP");
        assert_eq!(s.active_kinds(), ["audio", "video"]);
        assert_eq!(s.origin_addr, "192.0.2.2");
    }

    #[test]
    fn bare_newlines_and_no_trailing_newline() {
        let s = Sdp::parse(b"v=0\no=- 1 1 IN IP4 192.0.2.9\ns=-\nc=IN IP4 192.0.2.9\nt=0 0\nm=audio 4000 RTP/AVP 0")
            .expect("valid");
        assert_eq!(s.media[0].rtp(), "192.0.2.9:4000".parse().unwrap());
        assert_eq!(s.media[0].rtcp, "192.0.2.9:4001".parse().unwrap());
    }

    #[test]
    fn errors() {
        assert!(matches!(Sdp::parse(b"hello"), Err(SdpError::Syntax(_))));
        assert!(matches!(Sdp::parse(b""), Err(SdpError::Syntax(_))));
        let no_c = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            Sdp::parse(no_c.as_bytes()).err(),
            Some(SdpError::NoConnection(0))
        );
        let fqdn = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 host.example\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(matches!(
            Sdp::parse(fqdn.as_bytes()),
            Err(SdpError::NotAnIp(_))
        ));
        let bad_rtcp = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n";
        assert!(matches!(
            Sdp::parse(bad_rtcp.as_bytes()),
            Err(SdpError::Syntax(_))
        ));
        let big = vec![b'a'; MAX_SDP_BYTES + 1];
        assert_eq!(
            Sdp::parse(&big).err(),
            Some(SdpError::TooLarge(MAX_SDP_BYTES + 1))
        );
        let mut many =
            String::from("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n");
        for _ in 0..=MAX_MEDIA {
            many.push_str("m=audio 4000 RTP/AVP 0\r\n");
        }
        assert_eq!(
            Sdp::parse(many.as_bytes()).err(),
            Some(SdpError::TooManyMedia(MAX_MEDIA + 1))
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = Sdp::parse(&bytes);
        }
    }
}
