//! STUN messages (RFC 8489) for the controller's server: parsing a request from arbitrary
//! bytes (never panics; proptest below) and building responses. The data plane's narrower
//! Binding answer is `relay_common::stun`.
use std::net::{IpAddr, SocketAddr};

use relay_common::{
    crc32::TABLE,
    stun::{FINGERPRINT_XOR, HEADER_LEN, MAGIC_COOKIE},
};

pub const METHOD_BINDING: u16 = 0x001;

pub const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
pub const ATTR_CHANGE_REQUEST: u16 = 0x0003;
pub const ATTR_USERNAME: u16 = 0x0006;
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ATTR_ERROR_CODE: u16 = 0x0009;
pub const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000a;
pub const ATTR_REALM: u16 = 0x0014;
pub const ATTR_NONCE: u16 = 0x0015;
pub const ATTR_MESSAGE_INTEGRITY_SHA256: u16 = 0x001c;
pub const ATTR_USERHASH: u16 = 0x001e;
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// RFC 5780 section 7.6 and 7.5.
pub const ATTR_PADDING: u16 = 0x0026;
pub const ATTR_RESPONSE_PORT: u16 = 0x0027;
pub const ATTR_SOFTWARE: u16 = 0x8022;
pub const ATTR_FINGERPRINT: u16 = 0x8028;
pub const ATTR_RESPONSE_ORIGIN: u16 = 0x802b;
pub const ATTR_OTHER_ADDRESS: u16 = 0x802c;

/// CHANGE-REQUEST flags (RFC 5780 section 7.2).
pub const CHANGE_IP: u32 = 0x4;
pub const CHANGE_PORT: u32 = 0x2;

/// Message class (the two C bits of the type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        }
    }
}

/// The 16-bit message type of `method` in `class` (the class bits sit at 4 and 8).
pub fn message_type(method: u16, class: Class) -> u16 {
    let c = class.bits();
    (method & 0x000f)
        | ((method & 0x0070) << 1)
        | ((method & 0x0f80) << 2)
        | ((c & 1) << 4)
        | ((c & 2) << 7)
}

fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    let class = match ((t >> 7) & 2) | ((t >> 4) & 1) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}

/// Why bytes are not a STUN message we can answer (silently dropped, counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the 20-byte header.
    Short,
    /// Top two bits set or no magic cookie: not STUN (or RFC 3489's old format).
    NotStun,
    /// Length field not a multiple of 4 or not the datagram's length.
    BadLength,
    /// An attribute runs past the end of the message.
    BadAttribute,
    /// FINGERPRINT wrong, or not the last attribute.
    BadFingerprint,
}

impl ParseError {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseError::Short => "short",
            ParseError::NotStun => "not_stun",
            ParseError::BadLength => "bad_length",
            ParseError::BadAttribute => "bad_attribute",
            ParseError::BadFingerprint => "bad_fingerprint",
        }
    }
}

/// A parsed message: attributes borrowed from the datagram, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub method: u16,
    pub class: Class,
    pub txid: [u8; 12],
    pub attrs: Vec<(u16, &'a [u8])>,
    /// A correct FINGERPRINT was the last attribute.
    pub fingerprint: bool,
}

impl Message<'_> {
    pub fn attr(&self, t: u16) -> Option<&[u8]> {
        self.attrs.iter().find(|(k, _)| *k == t).map(|(_, v)| *v)
    }
}

/// CRC-32 (IEEE) of `b`, with the table the data plane uses.
pub fn crc32(b: &[u8]) -> u32 {
    let mut c = u32::MAX;
    for &x in b {
        c = TABLE[((c ^ u32::from(x)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Parse a whole datagram.
pub fn parse(b: &[u8]) -> Result<Message<'_>, ParseError> {
    if b.len() < HEADER_LEN {
        return Err(ParseError::Short);
    }
    let t = u16::from_be_bytes([b[0], b[1]]);
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let cookie = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    if t & 0xc000 != 0 || cookie != MAGIC_COOKIE {
        return Err(ParseError::NotStun);
    }
    if !len.is_multiple_of(4) || HEADER_LEN + len != b.len() {
        return Err(ParseError::BadLength);
    }
    let mut txid = [0u8; 12];
    txid.copy_from_slice(&b[8..20]);
    let (method, class) = split_type(t);
    let mut attrs = vec![];
    let mut fingerprint = false;
    let mut at = HEADER_LEN;
    while at < b.len() {
        if fingerprint {
            return Err(ParseError::BadFingerprint);
        }
        let h = b.get(at..at + 4).ok_or(ParseError::BadAttribute)?;
        let at_type = u16::from_be_bytes([h[0], h[1]]);
        let at_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let value = b
            .get(at + 4..at + 4 + at_len)
            .ok_or(ParseError::BadAttribute)?;
        let padded = at_len.div_ceil(4) * 4;
        if at + 4 + padded > b.len() {
            return Err(ParseError::BadAttribute);
        }
        if at_type == ATTR_FINGERPRINT {
            let want = crc32(&b[..at]) ^ FINGERPRINT_XOR;
            if at_len != 4 || u32::from_be_bytes([value[0], value[1], value[2], value[3]]) != want {
                return Err(ParseError::BadFingerprint);
            }
            fingerprint = true;
        } else {
            attrs.push((at_type, value));
        }
        at += 4 + padded;
    }
    Ok(Message {
        method,
        class,
        txid,
        attrs,
        fingerprint,
    })
}

/// Builds a message attribute by attribute; [`Builder::finish`] fixes the length and adds
/// FINGERPRINT if asked.
pub struct Builder {
    buf: Vec<u8>,
    txid: [u8; 12],
}

impl Builder {
    pub fn new(method: u16, class: Class, txid: [u8; 12]) -> Builder {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid);
        Builder { buf, txid }
    }

    pub fn attr(&mut self, t: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    /// MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS: family, port, address in the clear.
    pub fn address(&mut self, t: u16, a: SocketAddr) -> &mut Self {
        let mut v = vec![0, family(a.ip())];
        v.extend_from_slice(&a.port().to_be_bytes());
        match a.ip() {
            IpAddr::V4(ip) => v.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => v.extend_from_slice(&ip.octets()),
        }
        self.attr(t, &v)
    }

    /// XOR-MAPPED-ADDRESS (section 14.2): port XOR the cookie's top half, address XOR the
    /// cookie (IPv4) or the cookie and the transaction id (IPv6).
    pub fn xor_address(&mut self, t: u16, a: SocketAddr) -> &mut Self {
        let mut pad = [0u8; 16];
        pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        pad[4..].copy_from_slice(&self.txid);
        let port = a.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut v = vec![0, family(a.ip())];
        v.extend_from_slice(&port.to_be_bytes());
        let octets: Vec<u8> = match a.ip() {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        };
        v.extend(octets.iter().zip(pad).map(|(x, p)| x ^ p));
        self.attr(t, &v)
    }

    /// ERROR-CODE (section 14.8): class and number, then the reason phrase.
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = vec![0, 0, (code / 100) as u8 & 0x7, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.attr(ATTR_ERROR_CODE, &v)
    }

    /// MESSAGE-INTEGRITY (HMAC-SHA1, section 14.5) or MESSAGE-INTEGRITY-SHA256 (section
    /// 14.6) over everything so far, the length field already counting the attribute. Any
    /// attribute after it but FINGERPRINT would break it, so this is the last before
    /// [`Builder::finish`].
    pub fn integrity(&mut self, key: &[u8], sha256: bool) -> &mut Self {
        let (t, mac_len) = if sha256 {
            (ATTR_MESSAGE_INTEGRITY_SHA256, 32)
        } else {
            (ATTR_MESSAGE_INTEGRITY, 20)
        };
        let len = (self.buf.len() - HEADER_LEN + 4 + mac_len) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        let mac = hmac(key, &self.buf, sha256);
        self.attr(t, &mac)
    }

    pub fn finish(mut self, fingerprint: bool) -> Vec<u8> {
        let extra = if fingerprint { 8 } else { 0 };
        let len = (self.buf.len() - HEADER_LEN + extra) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        if fingerprint {
            // CRC of everything before the attribute, the length field already counting it.
            let crc = crc32(&self.buf) ^ FINGERPRINT_XOR;
            self.buf.extend_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
            self.buf.extend_from_slice(&4u16.to_be_bytes());
            self.buf.extend_from_slice(&crc.to_be_bytes());
        }
        self.buf
    }
}

/// HMAC-SHA1 (20 bytes) or HMAC-SHA256 (32 bytes) of `data` under `key`.
pub fn hmac(key: &[u8], data: &[u8], sha256: bool) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    if sha256 {
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        m.update(data);
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
}

/// What a MESSAGE-INTEGRITY(-SHA256) attribute of type `t` in the datagram `b` covers: the
/// bytes before it with the header's length field set to end just after it (section 14.5),
/// and the attribute's value. `None` if `b` has no such attribute (or is malformed).
pub fn integrity_input(b: &[u8], t: u16) -> Option<(Vec<u8>, &[u8])> {
    let mut at = HEADER_LEN;
    while at + 4 <= b.len() {
        let at_type = u16::from_be_bytes([b[at], b[at + 1]]);
        let at_len = usize::from(u16::from_be_bytes([b[at + 2], b[at + 3]]));
        let value = b.get(at + 4..at + 4 + at_len)?;
        if at_type == t {
            let mut covered = b[..at].to_vec();
            let len = u16::try_from(at - HEADER_LEN + 4 + at_len).ok()?;
            covered[2..4].copy_from_slice(&len.to_be_bytes());
            return Some((covered, value));
        }
        at += 4 + at_len.div_ceil(4) * 4;
    }
    None
}

fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 1 } else { 2 }
}

/// Decode an address attribute (MAPPED-ADDRESS style, or XOR-ed with `xor_txid`).
pub fn decode_address(v: &[u8], xor_txid: Option<&[u8; 12]>) -> Option<SocketAddr> {
    let fam = *v.get(1)?;
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    let mut pad = [0u8; 16];
    if let Some(t) = xor_txid {
        port ^= (MAGIC_COOKIE >> 16) as u16;
        pad[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        pad[4..].copy_from_slice(t);
    }
    let ip = match fam {
        1 => {
            let b: [u8; 4] = v.get(4..8)?.try_into().ok()?;
            IpAddr::from(std::array::from_fn::<u8, 4, _>(|i| b[i] ^ pad[i]))
        }
        2 => {
            let b: [u8; 16] = v.get(4..20)?.try_into().ok()?;
            IpAddr::from(std::array::from_fn::<u8, 16, _>(|i| b[i] ^ pad[i]))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn type_encoding_matches_the_rfc() {
        assert_eq!(message_type(METHOD_BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(METHOD_BINDING, Class::Indication), 0x0011);
        assert_eq!(message_type(METHOD_BINDING, Class::Success), 0x0101);
        assert_eq!(message_type(METHOD_BINDING, Class::Error), 0x0111);
        // TURN Allocate (0x003) error response is 0x0113.
        assert_eq!(message_type(0x003, Class::Error), 0x0113);
        for t in [0x0001u16, 0x0011, 0x0101, 0x0111, 0x0113, 0x3eef] {
            let (m, c) = split_type(t);
            assert_eq!(message_type(m, c), t);
        }
    }

    /// RFC 5769 section 2.2: the IPv4 sample response, parsed (its MESSAGE-INTEGRITY is just
    /// an attribute to us) with its FINGERPRINT checked, and its XOR-MAPPED-ADDRESS decoded.
    #[test]
    fn rfc5769_sample_response() {
        let hexs = "0101003c 2112a442 b7e7a701 bc34d686 fa87dfae 8022000b 74657374 20766563
                    746f7220 00200008 0001a147 e112a643 00080014 2b91f599 fd9e90c3 8c7489f9
                    2af9ba53 f06be7d7 80280004 c07d4c96";
        let clean: String = hexs.chars().filter(|c| !c.is_whitespace()).collect();
        let b: Vec<u8> = (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap())
            .collect();
        let m = parse(&b).unwrap();
        assert_eq!((m.method, m.class), (METHOD_BINDING, Class::Success));
        assert!(m.fingerprint);
        let xma = decode_address(m.attr(ATTR_XOR_MAPPED_ADDRESS).unwrap(), Some(&m.txid));
        assert_eq!(xma, Some("192.0.2.1:32853".parse().unwrap()));
        assert_eq!(m.attr(ATTR_SOFTWARE), Some(&b"test vector"[..]));
        // A flipped bit anywhere before the FINGERPRINT breaks it.
        let mut bad = b.clone();
        bad[30] ^= 1;
        assert_eq!(parse(&bad), Err(ParseError::BadFingerprint));
    }

    #[test]
    fn build_then_parse() {
        let txid = [5u8; 12];
        let mut b = Builder::new(METHOD_BINDING, Class::Success, txid);
        b.xor_address(ATTR_XOR_MAPPED_ADDRESS, "198.18.1.2:5004".parse().unwrap())
            .xor_address(ATTR_XOR_MAPPED_ADDRESS, "[2001:db8::7]:9".parse().unwrap())
            .address(ATTR_OTHER_ADDRESS, "198.18.1.3:3479".parse().unwrap())
            .error_code(420, "Unknown Attribute");
        let wire = b.finish(true);
        let m = parse(&wire).unwrap();
        assert!(m.fingerprint);
        assert_eq!(m.txid, txid);
        let xs: Vec<_> = m
            .attrs
            .iter()
            .filter(|(t, _)| *t == ATTR_XOR_MAPPED_ADDRESS)
            .map(|(_, v)| decode_address(v, Some(&txid)).unwrap())
            .collect();
        assert_eq!(
            xs,
            [
                "198.18.1.2:5004".parse::<SocketAddr>().unwrap(),
                "[2001:db8::7]:9".parse().unwrap()
            ]
        );
        assert_eq!(
            decode_address(m.attr(ATTR_OTHER_ADDRESS).unwrap(), None),
            Some("198.18.1.3:3479".parse().unwrap())
        );
        let ec = m.attr(ATTR_ERROR_CODE).unwrap();
        assert_eq!(&ec[..4], &[0, 0, 4, 20]);
        assert_eq!(&ec[4..], b"Unknown Attribute");
    }

    #[test]
    fn malformed_inputs() {
        let ok = Builder::new(METHOD_BINDING, Class::Request, [1; 12]).finish(false);
        assert!(parse(&ok).is_ok());
        assert_eq!(parse(&ok[..19]), Err(ParseError::Short));
        let mut b = ok.clone();
        b[4] ^= 1;
        assert_eq!(parse(&b), Err(ParseError::NotStun));
        let mut b = ok.clone();
        b[0] |= 0x80;
        assert_eq!(parse(&b), Err(ParseError::NotStun));
        let mut b = ok.clone();
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(parse(&b), Err(ParseError::BadLength));
        // An attribute claiming more bytes than there are.
        let mut b = Builder::new(METHOD_BINDING, Class::Request, [1; 12]);
        b.attr(ATTR_SOFTWARE, b"abcd");
        let mut w = b.finish(false);
        w[23] = 8;
        assert_eq!(parse(&w), Err(ParseError::BadAttribute));
        // Something after FINGERPRINT.
        let mut w = Builder::new(METHOD_BINDING, Class::Request, [1; 12]).finish(true);
        w.extend_from_slice(&[0x80, 0x22, 0, 0]);
        let l = (w.len() - HEADER_LEN) as u16;
        w[2..4].copy_from_slice(&l.to_be_bytes());
        assert_eq!(parse(&w), Err(ParseError::BadFingerprint));
    }

    proptest! {
        #[test]
        fn parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&b);
        }

        /// Valid headers with arbitrary attribute bytes: the length checks are what stands
        /// between them and a panic.
        #[test]
        fn parse_never_panics_past_the_header(
            body in proptest::collection::vec(any::<u8>(), 0..120),
            t in any::<u16>(),
        ) {
            let mut b = Vec::new();
            b.extend_from_slice(&(t & 0x3fff).to_be_bytes());
            let len = body.len() / 4 * 4;
            b.extend_from_slice(&(len as u16).to_be_bytes());
            b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            b.extend_from_slice(&[7; 12]);
            b.extend_from_slice(&body[..len]);
            if let Ok(m) = parse(&b) {
                for (_, v) in &m.attrs {
                    let _ = decode_address(v, Some(&m.txid));
                }
            }
        }
    }
}
