//! The SDP side of seed 003's relay interface: which media an invite's (or OK's) SDP offers
//! and where each is sent from (parsed by `crate::sdp`, the same parser the ng protocol
//! uses), and the SDP of the relay's 302 that names the relay resource (written by
//! sdp-types).
use std::net::{IpAddr, SocketAddr};

use sdp_types::{Attribute, Connection, Media, Origin, Session, Time};

use crate::{events::Event, sdp::Sdp};

/// The two media kinds the seed relays: "an audio port number 209 for relaying of audio
/// media and a video port number 210 for relaying of video media".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

/// One media description of the SDP, as far as the relay cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offered {
    pub kind: Kind,
    /// c= (media level, else session level) and the m= port. None when the port is 0 (a
    /// disabled stream) or the address unspecified (old-style hold): nothing to latch on.
    pub addr: Option<SocketAddr>,
    /// Where RTCP is sent from: a=rtcp, else the RTP port + 1.
    pub rtcp: Option<SocketAddr>,
    /// The transport (RTP/AVP, RTP/SAVP, ...) and formats, repeated in the relay's SDP.
    pub proto: String,
    pub fmt: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    Parse(String),
    /// No audio and no video m= line.
    NoMedia,
}

impl MediaError {
    pub fn event(&self) -> Event {
        match self {
            MediaError::Parse(_) => Event::SipErrBadSdp,
            MediaError::NoMedia => Event::SipErrNoMedia,
        }
    }
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaError::Parse(e) => write!(f, "malformed SDP: {e}"),
            MediaError::NoMedia => f.write_str("the SDP has no audio or video stream"),
        }
    }
}

/// The first audio and the first video stream of `sdp` (other media, and further audio or
/// video streams, are not the relay's: the seed assigns one port of each kind).
pub fn offered(sdp: &[u8]) -> Result<Vec<Offered>, MediaError> {
    let s = Sdp::parse(sdp).map_err(|e| MediaError::Parse(e.to_string()))?;
    let mut out: Vec<Offered> = vec![];
    for m in &s.media {
        let kind = match m.kind.as_str() {
            "audio" => Kind::Audio,
            "video" => Kind::Video,
            _ => continue,
        };
        if out.iter().any(|o| o.kind == kind) {
            continue;
        }
        let usable = m.active() && !m.addr.is_unspecified();
        out.push(Offered {
            kind,
            addr: usable.then(|| m.rtp()),
            rtcp: usable.then_some(m.rtcp),
            proto: m.proto.clone(),
            fmt: m.fmt.clone(),
        });
    }
    if out.is_empty() {
        return Err(MediaError::NoMedia);
    }
    Ok(out)
}

/// Seed 003 FIG. 8b: the relay server response's "SDP payload 184 that identifies the relay
/// server resource which is the IP address 208 of the relay server 22 and an audio port
/// number 209 [...] and a video port number 210". One m= line per relayed stream, with the
/// offer's transport and formats so the proxy can splice it into the client's SDP, and
/// a=rtcp naming the RTCP port of the pair.
pub fn relay_sdp(relay: IpAddr, session_version: u64, streams: &[(Offered, u16)]) -> Vec<u8> {
    let mut s = Session::new(
        Origin::with_ip_addr(session_version, session_version, relay),
        "media-relay",
    );
    s.connection = Some(Connection::from_ip_addr(relay));
    s.times.push(Time::new(0, 0));
    for (o, port) in streams {
        let mut m = Media {
            media: o.kind.as_str().to_owned(),
            port: *port,
            num_ports: None,
            proto: o.proto.clone(),
            fmt: o.fmt.clone(),
            media_title: None,
            connections: vec![],
            bandwidths: vec![],
            key: None,
            attributes: vec![],
        };
        m.attributes.push(Attribute {
            attribute: "rtcp".into(),
            value: Some(port.saturating_add(1).to_string()),
        });
        s.medias.push(m);
    }
    let mut out = vec![];
    // Writing into a Vec cannot fail.
    let _ = s.write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
        o=alice 2890844526 2890844526 IN IP4 192.0.2.2\r\n\
        s=-\r\n\
        c=IN IP4 192.0.2.2\r\n\
        t=0 0\r\n\
        m=audio 49170 RTP/AVP 0 8 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        m=video 51372 RTP/AVP 96\r\n\
        c=IN IP4 203.0.113.7\r\n\
        m=application 9 TCP/BFCP *\r\n\
        m=audio 49180 RTP/AVP 0\r\n";

    #[test]
    fn takes_first_audio_and_video_with_media_level_connection() {
        let o = offered(OFFER.as_bytes()).expect("parses");
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].kind, Kind::Audio);
        assert_eq!(o[0].addr, "192.0.2.2:49170".parse().ok());
        assert_eq!(
            (o[0].proto.as_str(), o[0].fmt.as_str()),
            ("RTP/AVP", "0 8 101")
        );
        assert_eq!(o[1].kind, Kind::Video);
        assert_eq!(o[1].addr, "203.0.113.7:51372".parse().ok());
    }

    #[test]
    fn port_zero_and_hold_have_no_address_fqdn_is_refused() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\n\
                   c=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n\
                   m=video 0 RTP/AVP 96\r\nc=IN IP4 192.0.2.2\r\n";
        let o = offered(sdp.as_bytes()).expect("parses");
        assert_eq!((o[0].addr, o[0].rtcp), (None, None));
        assert_eq!(o[1].addr, None);
        let fqdn = sdp.replace("c=IN IP4 0.0.0.0", "c=IN IP4 host.example.invalid");
        assert!(matches!(
            offered(fqdn.as_bytes()),
            Err(MediaError::Parse(_))
        ));
    }

    #[test]
    fn rtcp_from_the_attribute() {
        let sdp = OFFER.replace(
            "m=audio 49170 RTP/AVP 0 8 101\r\n",
            "m=audio 49170 RTP/AVP 0 8 101\r\na=rtcp:49300\r\n",
        );
        let o = offered(sdp.as_bytes()).expect("parses");
        assert_eq!(o[0].rtcp, "192.0.2.2:49300".parse().ok());
        assert_eq!(o[1].rtcp, "203.0.113.7:51373".parse().ok());
    }

    proptest::proptest! {
        #[test]
        fn damaged_sdp_never_panics(cut in 0usize..OFFER.len(), pos in 0usize..OFFER.len(), b in proptest::prelude::any::<u8>()) {
            let mut bytes = OFFER.as_bytes().to_vec();
            bytes[pos] = b;
            bytes.truncate(cut);
            let _ = offered(&bytes);
        }
    }

    #[test]
    fn errors() {
        assert!(matches!(offered(b"garbage"), Err(MediaError::Parse(_))));
        let only_app = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n\
                        m=application 9 TCP/BFCP *\r\n";
        assert_eq!(offered(only_app.as_bytes()), Err(MediaError::NoMedia));
    }

    #[test]
    fn relay_sdp_names_the_relay_and_ports_and_parses_back() {
        let o = offered(OFFER.as_bytes()).expect("parses");
        let relay: IpAddr = "198.18.1.1".parse().expect("ip");
        let body = relay_sdp(relay, 7, &[(o[0].clone(), 30000), (o[1].clone(), 30002)]);
        let text = String::from_utf8(body.clone()).expect("utf8");
        assert!(text.contains("c=IN IP4 198.18.1.1\r\n"), "{text}");
        assert!(
            text.contains("m=audio 30000 RTP/AVP 0 8 101\r\na=rtcp:30001\r\n"),
            "{text}"
        );
        assert!(
            text.contains("m=video 30002 RTP/AVP 96\r\na=rtcp:30003\r\n"),
            "{text}"
        );
        let back = offered(&body).expect("our SDP parses");
        assert_eq!(back[0].addr, "198.18.1.1:30000".parse().ok());
        assert_eq!(back[1].addr, "198.18.1.1:30002".parse().ok());
    }
}
