//! What the controller's STUN server answers (RFC 8489 Binding, RFC 5780 NAT behaviour
//! discovery): a pure function of the request, the client, the address it came in on and the
//! server's addresses, so every branch is unit-tested without sockets.
use std::net::{IpAddr, SocketAddr};

use super::message::{
    self, ATTR_CHANGE_REQUEST, ATTR_MAPPED_ADDRESS, ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_NONCE, ATTR_OTHER_ADDRESS, ATTR_PADDING, ATTR_REALM,
    ATTR_RESPONSE_ORIGIN, ATTR_RESPONSE_PORT, ATTR_SOFTWARE, ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_USERHASH, ATTR_USERNAME, ATTR_XOR_MAPPED_ADDRESS, Builder, CHANGE_IP, CHANGE_PORT, Class,
    METHOD_BINDING, ParseError,
};

pub const SOFTWARE: &str = "media-relay";

/// The server's addresses and ports. With `alt` it does RFC 5780: OTHER-ADDRESS in every
/// answer, CHANGE-REQUEST honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Addresses listening on `port` (the relay's IPv4 addresses; the first is the primary).
    pub addrs: Vec<IpAddr>,
    pub alt: Option<IpAddr>,
    pub port: u16,
    pub alt_port: u16,
}

impl Layout {
    /// Every (address, port) the server listens on.
    pub fn sockets(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .addrs
            .iter()
            .chain(self.alt.as_ref())
            .map(|a| SocketAddr::new(*a, self.port))
            .collect();
        if let (Some(alt), Some(primary)) = (self.alt, self.addrs.first()) {
            v.push(SocketAddr::new(*primary, self.alt_port));
            v.push(SocketAddr::new(alt, self.alt_port));
        }
        v.dedup();
        v
    }

    /// The address differing in IP and port from `local` (RFC 5780 section 7.4).
    pub fn other(&self, local: SocketAddr) -> Option<SocketAddr> {
        let alt = self.alt?;
        let primary = *self.addrs.first()?;
        let ip = if local.ip() == alt { primary } else { alt };
        let port = if local.port() == self.alt_port {
            self.port
        } else {
            self.alt_port
        };
        Some(SocketAddr::new(ip, port))
    }
}

/// Why a datagram gets no answer (label of the drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silent {
    Malformed(ParseError),
    /// Indications and responses are never answered (section 6.3).
    NotRequest,
}

impl Silent {
    pub fn as_str(self) -> &'static str {
        match self {
            Silent::Malformed(e) => e.as_str(),
            Silent::NotRequest => "not_request",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send `bytes` to `to` (the client, or its RESPONSE-PORT) from `from`. `code` is 0 for
    /// a success response.
    Reply {
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
        code: u16,
    },
    Drop(Silent),
}

/// Comprehension-required attributes this server understands in a request.
const KNOWN: [u16; 10] = [
    ATTR_MAPPED_ADDRESS,
    ATTR_CHANGE_REQUEST,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_USERHASH,
    ATTR_PADDING,
    ATTR_RESPONSE_PORT,
];

pub fn answer(datagram: &[u8], client: SocketAddr, local: SocketAddr, l: &Layout) -> Answer {
    let m = match message::parse(datagram) {
        Ok(m) => m,
        Err(e) => return Answer::Drop(Silent::Malformed(e)),
    };
    if m.class != Class::Request {
        return Answer::Drop(Silent::NotRequest);
    }
    let error = |code: u16, reason: &str, unknown: &[u16]| {
        let mut b = Builder::new(m.method, Class::Error, m.txid);
        b.error_code(code, reason);
        if !unknown.is_empty() {
            let v: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
            b.attr(ATTR_UNKNOWN_ATTRIBUTES, &v);
        }
        b.attr(ATTR_SOFTWARE, SOFTWARE.as_bytes());
        Answer::Reply {
            from: local,
            to: client,
            bytes: b.finish(m.fingerprint),
            code,
        }
    };
    if m.method != METHOD_BINDING {
        return error(400, "Bad Request: only Binding is served here", &[]);
    }
    // Section 9: this server has no credentials. A request that asks to be authenticated
    // gets the answer an unknown user gets.
    let has = |t: u16| m.attr(t).is_some();
    if has(ATTR_MESSAGE_INTEGRITY) || has(ATTR_MESSAGE_INTEGRITY_SHA256) {
        if !has(ATTR_USERNAME) && !has(ATTR_USERHASH) {
            return error(400, "Bad Request: MESSAGE-INTEGRITY without USERNAME", &[]);
        }
        return error(401, "Unauthenticated: no credentials on this server", &[]);
    }
    let mut unknown: Vec<u16> = m
        .attrs
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t < 0x8000 && !KNOWN.contains(t))
        .collect();
    unknown.dedup();
    // Without a second address CHANGE-REQUEST cannot be honoured: RFC 5780 section 6.1
    // treats it as an unknown attribute then.
    if l.alt.is_none() && has(ATTR_CHANGE_REQUEST) {
        unknown.push(ATTR_CHANGE_REQUEST);
    }
    if !unknown.is_empty() {
        return error(420, "Unknown Attribute", &unknown);
    }
    let mut from = local;
    if let Some(v) = m.attr(ATTR_CHANGE_REQUEST) {
        let Ok(b) = <[u8; 4]>::try_from(v) else {
            return error(400, "Bad Request: CHANGE-REQUEST must be 4 bytes", &[]);
        };
        let flags = u32::from_be_bytes(b);
        let Some(other) = l.other(local) else {
            return error(420, "Unknown Attribute", &[ATTR_CHANGE_REQUEST]);
        };
        if flags & CHANGE_IP != 0 {
            from.set_ip(other.ip());
        }
        if flags & CHANGE_PORT != 0 {
            from.set_port(other.port());
        }
    }
    // RESPONSE-PORT (RFC 5780 section 7.5): the answer goes to this port of the client's
    // address (never another address, so it cannot be aimed at a third party).
    let mut to = client;
    if let Some(v) = m.attr(ATTR_RESPONSE_PORT) {
        match v {
            [hi, lo, _, _] if u16::from_be_bytes([*hi, *lo]) != 0 => {
                to.set_port(u16::from_be_bytes([*hi, *lo]));
            }
            _ => {
                return error(
                    400,
                    "Bad Request: RESPONSE-PORT must be 4 bytes, port not 0",
                    &[],
                );
            }
        }
    }
    let mut b = Builder::new(METHOD_BINDING, Class::Success, m.txid);
    b.xor_address(ATTR_XOR_MAPPED_ADDRESS, client)
        .address(ATTR_MAPPED_ADDRESS, client)
        .address(ATTR_RESPONSE_ORIGIN, from);
    if let Some(other) = l.other(local) {
        b.address(ATTR_OTHER_ADDRESS, other);
    }
    b.attr(ATTR_SOFTWARE, SOFTWARE.as_bytes());
    // PADDING (section 7.6): answer with as much, so the client sees how its NAT treats
    // large (fragmented) datagrams both ways. Bounded by the request's own size.
    if let Some(p) = m.attr(ATTR_PADDING) {
        b.attr(ATTR_PADDING, &vec![0u8; p.len()]);
    }
    Answer::Reply {
        from,
        to,
        bytes: b.finish(m.fingerprint),
        code: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::message::{ATTR_ERROR_CODE, decode_address, parse};
    use proptest::prelude::*;

    fn layout(alt: bool) -> Layout {
        Layout {
            addrs: vec!["198.18.1.1".parse().unwrap(), "198.18.2.1".parse().unwrap()],
            alt: alt.then(|| "198.18.1.3".parse().unwrap()),
            port: 3478,
            alt_port: 3479,
        }
    }

    const CLIENT: &str = "198.18.1.2:40000";
    const LOCAL: &str = "198.18.1.1:3478";

    fn request(attrs: &[(u16, &[u8])], fp: bool) -> Vec<u8> {
        let mut b = Builder::new(METHOD_BINDING, Class::Request, [9; 12]);
        for (t, v) in attrs {
            b.attr(*t, v);
        }
        b.finish(fp)
    }

    fn reply(a: Answer) -> (SocketAddr, Vec<u8>, u16) {
        match a {
            Answer::Reply {
                from, bytes, code, ..
            } => (from, bytes, code),
            Answer::Drop(s) => panic!("dropped: {s:?}"),
        }
    }

    fn go(req: &[u8], alt: bool) -> Answer {
        answer(
            req,
            CLIENT.parse().unwrap(),
            LOCAL.parse().unwrap(),
            &layout(alt),
        )
    }

    #[test]
    fn sockets_and_other_address() {
        let l = layout(true);
        let s: Vec<String> = l.sockets().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            s,
            [
                "198.18.1.1:3478",
                "198.18.2.1:3478",
                "198.18.1.3:3478",
                "198.18.1.1:3479",
                "198.18.1.3:3479"
            ]
        );
        let o = |a: &str| l.other(a.parse().unwrap()).unwrap().to_string();
        assert_eq!(o("198.18.1.1:3478"), "198.18.1.3:3479");
        assert_eq!(o("198.18.1.3:3479"), "198.18.1.1:3478");
        assert_eq!(o("198.18.1.3:3478"), "198.18.1.1:3479");
        assert_eq!(layout(false).sockets().len(), 2);
        assert_eq!(layout(false).other(LOCAL.parse().unwrap()), None);
    }

    #[test]
    fn binding_success_carries_all_addresses() {
        let (from, bytes, code) = reply(go(&request(&[(ATTR_SOFTWARE, b"x")], true), true));
        assert_eq!((from, code), (LOCAL.parse().unwrap(), 0));
        let m = parse(&bytes).unwrap();
        assert_eq!(
            (m.class, m.txid, m.fingerprint),
            (Class::Success, [9; 12], true)
        );
        let client: SocketAddr = CLIENT.parse().unwrap();
        assert_eq!(
            decode_address(m.attr(ATTR_XOR_MAPPED_ADDRESS).unwrap(), Some(&m.txid)),
            Some(client)
        );
        assert_eq!(
            decode_address(m.attr(ATTR_MAPPED_ADDRESS).unwrap(), None),
            Some(client)
        );
        assert_eq!(
            decode_address(m.attr(ATTR_RESPONSE_ORIGIN).unwrap(), None),
            Some(from)
        );
        assert_eq!(
            decode_address(m.attr(ATTR_OTHER_ADDRESS).unwrap(), None),
            Some("198.18.1.3:3479".parse().unwrap())
        );
        // Without FINGERPRINT in the request, none in the answer; without alt, no OTHER-ADDRESS.
        let (_, bytes, _) = reply(go(&request(&[], false), false));
        let m = parse(&bytes).unwrap();
        assert!(!m.fingerprint);
        assert!(m.attr(ATTR_OTHER_ADDRESS).is_none());
    }

    #[test]
    fn change_request_picks_the_reply_address() {
        for (flags, want) in [
            (0u32, "198.18.1.1:3478"),
            (CHANGE_PORT, "198.18.1.1:3479"),
            (CHANGE_IP, "198.18.1.3:3478"),
            (CHANGE_IP | CHANGE_PORT, "198.18.1.3:3479"),
        ] {
            let (from, bytes, _) = reply(go(
                &request(&[(ATTR_CHANGE_REQUEST, &flags.to_be_bytes())], false),
                true,
            ));
            assert_eq!(from.to_string(), want, "flags {flags}");
            let m = parse(&bytes).unwrap();
            assert_eq!(
                decode_address(m.attr(ATTR_RESPONSE_ORIGIN).unwrap(), None),
                Some(from)
            );
        }
    }

    #[test]
    fn response_port_and_padding() {
        // coturn's turnutils_stunclient second test: change IP and port, answer to port+1.
        let r = request(
            &[
                (ATTR_RESPONSE_PORT, &[0x9c, 0x41, 0, 0]),
                (ATTR_CHANGE_REQUEST, &[0, 0, 0, 6]),
            ],
            false,
        );
        match go(&r, true) {
            Answer::Reply { from, to, code, .. } => {
                assert_eq!(code, 0);
                assert_eq!(to.to_string(), "198.18.1.2:40001");
                assert_eq!(from.to_string(), "198.18.1.3:3479");
            }
            a => panic!("{a:?}"),
        }
        let r = request(&[(ATTR_PADDING, &[0; 100])], true);
        let (_, bytes, _) = reply(go(&r, true));
        let m = parse(&bytes).unwrap();
        assert_eq!(m.attr(ATTR_PADDING).map(<[u8]>::len), Some(100));
    }

    fn error_of(a: Answer) -> (u16, Vec<u16>) {
        let (_, bytes, code) = reply(a);
        let m = parse(&bytes).unwrap();
        assert_eq!(m.class, Class::Error);
        let ec = m.attr(ATTR_ERROR_CODE).unwrap();
        assert_eq!(u16::from(ec[2]) * 100 + u16::from(ec[3]), code);
        let unknown = m
            .attr(ATTR_UNKNOWN_ATTRIBUTES)
            .map(|v| {
                v.chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect()
            })
            .unwrap_or_default();
        (code, unknown)
    }

    #[test]
    fn errors() {
        // Unknown comprehension-required attributes are listed; optional ones are ignored.
        let r = request(
            &[(0x0030, &[0, 1, 0, 0]), (0x7fff, b""), (0x8fff, b"ok")],
            false,
        );
        assert_eq!(error_of(go(&r, true)), (420, vec![0x0030, 0x7fff]));
        let r = request(&[(ATTR_RESPONSE_PORT, &[0, 0, 0, 0])], false);
        assert_eq!(error_of(go(&r, true)).0, 400);
        // CHANGE-REQUEST without a second address.
        let r = request(&[(ATTR_CHANGE_REQUEST, &[0, 0, 0, 4])], true);
        assert_eq!(error_of(go(&r, false)), (420, vec![ATTR_CHANGE_REQUEST]));
        let r = request(&[(ATTR_CHANGE_REQUEST, &[0, 4])], false);
        assert_eq!(error_of(go(&r, true)).0, 400);
        // Authentication asked of a server without credentials.
        let r = request(&[(ATTR_MESSAGE_INTEGRITY, &[0; 20])], false);
        assert_eq!(error_of(go(&r, true)).0, 400);
        let r = request(
            &[(ATTR_USERNAME, b"bob"), (ATTR_MESSAGE_INTEGRITY, &[0; 20])],
            false,
        );
        assert_eq!(error_of(go(&r, true)).0, 401);
        // Another method.
        let r = Builder::new(0x003, Class::Request, [1; 12]).finish(false);
        let (_, bytes, code) = reply(go(&r, true));
        assert_eq!(code, 400);
        assert_eq!(u16::from_be_bytes([bytes[0], bytes[1]]), 0x0113);
    }

    #[test]
    fn silent_drops() {
        let ind = Builder::new(METHOD_BINDING, Class::Indication, [1; 12]).finish(false);
        assert_eq!(go(&ind, true), Answer::Drop(Silent::NotRequest));
        let resp = Builder::new(METHOD_BINDING, Class::Success, [1; 12]).finish(false);
        assert_eq!(go(&resp, true), Answer::Drop(Silent::NotRequest));
        assert_eq!(
            go(b"hello", true),
            Answer::Drop(Silent::Malformed(ParseError::Short))
        );
        let mut r = request(&[], true);
        let n = r.len();
        r[n - 1] ^= 1;
        assert_eq!(
            go(&r, true),
            Answer::Drop(Silent::Malformed(ParseError::BadFingerprint))
        );
    }

    proptest! {
        #[test]
        fn answer_never_panics(b in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = go(&b, true);
            let _ = go(&b, false);
        }
    }
}
