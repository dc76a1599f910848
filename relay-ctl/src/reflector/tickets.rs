//! Tickets: checking a request against the configuration and signing the 56-byte header
//! (relay-common's `ReflectHeader`, docs/reflector.md). Pure functions; the service supplies
//! the key and the clock.
use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use relay_common::{Endpoint, reflector::ReflectHeader, siphash::SipKey};

use super::config::Prefix;
use crate::api::{TicketRequest, TicketView};

/// Why a ticket request was refused (label of `media_relay_reflector_tickets_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    Disabled,
    BadBody,
    BadSrc,
    BadDst,
    BadFrom,
    BadTtl,
    NoKey,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::Disabled,
        Refusal::BadBody,
        Refusal::BadSrc,
        Refusal::BadDst,
        Refusal::BadFrom,
        Refusal::BadTtl,
        Refusal::NoKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::BadBody => "bad_body",
            Refusal::BadSrc => "bad_src",
            Refusal::BadDst => "bad_dst",
            Refusal::BadFrom => "bad_from",
            Refusal::BadTtl => "bad_ttl",
            Refusal::NoKey => "no_key",
        }
    }
}

/// What a request may ask for.
pub struct Policy<'a> {
    /// Addresses a ticket may name as source.
    pub allowed_src: &'a [IpAddr],
    /// Destinations refused (built-in, this box's addresses, the operator's).
    pub deny: &'a [Prefix],
    pub max_ttl: u64,
}

/// A request that passed [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub from: SocketAddr,
    pub ttl: u64,
}

fn v4_endpoint(field: &str, s: &str, why: Refusal) -> Result<SocketAddr, (Refusal, String)> {
    let a: SocketAddr = s.trim().parse().map_err(|e| {
        (
            why,
            format!("{field} {s:?} is not an address:port like 198.51.100.7:40000 ({e})"),
        )
    })?;
    if !a.is_ipv4() {
        return Err((
            why,
            format!("{field} {a}: the reflector is IPv4 only for now"),
        ));
    }
    if a.port() == 0 {
        return Err((why, format!("{field} {a}: port 0")));
    }
    Ok(a)
}

/// Check a request; the error names the field and says what is wrong.
pub fn check(req: &TicketRequest, p: &Policy) -> Result<Checked, (Refusal, String)> {
    let src = v4_endpoint("src", &req.src, Refusal::BadSrc)?;
    if !p.allowed_src.contains(&src.ip()) {
        return Err((
            Refusal::BadSrc,
            format!(
                "src {} is not one of this relay's reflect sources ({})",
                src.ip(),
                p.allowed_src
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let dst = v4_endpoint("dst", &req.dst, Refusal::BadDst)?;
    if let Some(d) = p.deny.iter().find(|d| d.contains(dst.ip())) {
        return Err((
            Refusal::BadDst,
            format!("dst {} is refused (deny list: {d})", dst.ip()),
        ));
    }
    let from = v4_endpoint("from", &req.from, Refusal::BadFrom)?;
    if from.ip().is_unspecified() || from.ip().is_multicast() || from.ip().is_loopback() {
        return Err((
            Refusal::BadFrom,
            format!("from {from} is not a unicast sender"),
        ));
    }
    let ttl = req.ttl.unwrap_or(p.max_ttl);
    if ttl == 0 || ttl > p.max_ttl {
        return Err((
            Refusal::BadTtl,
            format!("ttl {ttl} must be 1..={} seconds", p.max_ttl),
        ));
    }
    Ok(Checked {
        src,
        dst,
        from,
        ttl,
    })
}

fn endpoint(a: SocketAddr) -> Endpoint {
    Endpoint::from(a)
}

/// Sign `c` with `key` (`key_id`) at unix time `now`.
pub fn sign(c: &Checked, key: &SipKey, key_id: u16, now: u64) -> TicketView {
    // The wire field is 32 bits: clamp instead of wrapping (until 2106).
    let expiry = now.saturating_add(c.ttl).min(u64::from(u32::MAX));
    let mut h = ReflectHeader::new(key_id, &endpoint(c.src), &endpoint(c.dst), expiry as u32);
    h.sign(key, &endpoint(c.from));
    let bytes = h.to_bytes();
    TicketView {
        header_hex: hex(&bytes),
        header_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        key_id,
        expiry,
        ttl: c.ttl,
        src: c.src,
        dst: c.dst,
        from: c.from,
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes of a hex string (for clients decoding `header_hex`).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `relay-ctl reflector ticket` for people: the fields, then the header in hex, 8 bytes a
/// line (the layout of docs/reflector.md).
pub fn ticket_text(t: &TicketView) -> String {
    let mut out = format!(
        "ticket  {} -> {}  for sender {}\nkey id  {}\nexpiry  {} (in {}s)\nbase64  {}\nheader\n",
        t.src, t.dst, t.from, t.key_id, t.expiry, t.ttl, t.header_base64
    );
    let bytes = unhex(&t.header_hex).unwrap_or_default();
    for line in bytes.chunks(8) {
        out.push_str("  ");
        out.push_str(
            &line
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reflector::config::BUILTIN_DENY;
    use relay_common::reflector::HEADER_LEN;

    fn deny() -> Vec<Prefix> {
        let mut d: Vec<Prefix> = BUILTIN_DENY
            .iter()
            .map(|&(a, len)| Prefix {
                addr: a.into(),
                len,
            })
            .collect();
        d.push("198.18.1.1".parse().unwrap());
        d.push("203.0.113.0/24".parse().unwrap());
        d
    }

    fn req(src: &str, dst: &str, from: &str, ttl: Option<u64>) -> TicketRequest {
        TicketRequest {
            src: src.into(),
            dst: dst.into(),
            from: from.into(),
            ttl,
        }
    }

    #[test]
    fn checks_each_field() {
        let allowed: Vec<IpAddr> = vec!["198.18.1.1".parse().unwrap()];
        let d = deny();
        let p = Policy {
            allowed_src: &allowed,
            deny: &d,
            max_ttl: 300,
        };
        let ok = check(
            &req(
                "198.18.1.1:3478",
                "198.18.2.2:40000",
                "198.18.1.2:5004",
                None,
            ),
            &p,
        )
        .unwrap();
        assert_eq!(ok.ttl, 300);
        let cases: [(TicketRequest, Refusal, &str); 11] = [
            (
                req("198.18.2.1:3478", "198.18.2.2:1", "198.18.1.2:1", None),
                Refusal::BadSrc,
                "not one of",
            ),
            (
                req("bogus", "198.18.2.2:1", "198.18.1.2:1", None),
                Refusal::BadSrc,
                "not an address:port",
            ),
            (
                req("198.18.1.1:0", "198.18.2.2:1", "198.18.1.2:1", None),
                Refusal::BadSrc,
                "port 0",
            ),
            (
                req("198.18.1.1:1", "127.0.0.1:1", "198.18.1.2:1", None),
                Refusal::BadDst,
                "127.0.0.0/8",
            ),
            (
                req("198.18.1.1:1", "239.1.2.3:1", "198.18.1.2:1", None),
                Refusal::BadDst,
                "224.0.0.0/4",
            ),
            (
                req("198.18.1.1:1", "255.255.255.255:1", "198.18.1.2:1", None),
                Refusal::BadDst,
                "240.0.0.0/4",
            ),
            (
                req("198.18.1.1:1", "198.18.1.1:9", "198.18.1.2:1", None),
                Refusal::BadDst,
                "198.18.1.1/32",
            ),
            (
                req("198.18.1.1:1", "203.0.113.9:9", "198.18.1.2:1", None),
                Refusal::BadDst,
                "203.0.113.0/24",
            ),
            (
                req("198.18.1.1:1", "[2001:db8::1]:9", "198.18.1.2:1", None),
                Refusal::BadDst,
                "IPv4 only",
            ),
            (
                req("198.18.1.1:1", "198.18.2.2:1", "0.0.0.0:1", None),
                Refusal::BadFrom,
                "unicast",
            ),
            (
                req("198.18.1.1:1", "198.18.2.2:1", "198.18.1.2:1", Some(301)),
                Refusal::BadTtl,
                "1..=300",
            ),
        ];
        for (r, why, needle) in cases {
            let (got, msg) = check(&r, &p).unwrap_err();
            assert_eq!(got, why, "{r:?}: {msg}");
            assert!(msg.contains(needle), "{r:?}: {msg}");
        }
        let (got, _) = check(
            &req("198.18.1.1:1", "198.18.2.2:1", "198.18.1.2:1", Some(0)),
            &p,
        )
        .unwrap_err();
        assert_eq!(got, Refusal::BadTtl);
    }

    #[test]
    fn signed_header_verifies_for_the_sender_only() {
        let key = SipKey::from_bytes([7; 16]);
        let c = Checked {
            src: "198.18.1.1:3478".parse().unwrap(),
            dst: "198.18.2.2:40000".parse().unwrap(),
            from: "198.18.1.2:5004".parse().unwrap(),
            ttl: 30,
        };
        let t = sign(&c, &key, 9, 1000);
        assert_eq!((t.key_id, t.expiry), (9, 1030));
        let bytes = unhex(&t.header_hex).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&t.header_base64)
                .unwrap(),
            bytes
        );
        let h = ReflectHeader::from_bytes(&bytes).unwrap();
        assert_eq!(h.src(), Endpoint::from(c.src));
        assert_eq!(h.dst(), Endpoint::from(c.dst));
        assert_eq!(h.expiry(), 1030);
        let from = Endpoint::from(c.from);
        assert_eq!(h.mac, h.compute_mac(&key, &from.addr, from.port_be));
        let other = Endpoint::from("198.18.1.3:5004".parse::<SocketAddr>().unwrap());
        assert_ne!(h.mac, h.compute_mac(&key, &other.addr, other.port_be));
        let text = ticket_text(&t);
        assert!(text.starts_with("ticket  198.18.1.1:3478 -> 198.18.2.2:40000  for sender 198.18.1.2:5004\nkey id  9\nexpiry  1030 (in 30s)\n"), "{text}");
        assert!(text.contains("\n  52 46 4c 01 01 00 00 09\n"), "{text}");
        assert_eq!(text.lines().count(), 5 + 7);
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }
}
