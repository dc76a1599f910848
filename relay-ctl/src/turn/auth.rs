//! Long-term credentials (RFC 8489 section 9.2) for the TURN server: static users from the
//! configuration and the TURN REST API's time-limited usernames (`expiry:user`, password
//! base64(HMAC-SHA1(secret, username)), coturn's `use-auth-secret`); nonces that expire
//! (438 Stale Nonce) and are bound to the client's address, minted statelessly under a
//! random key; MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 checks.
//!
//! Neither passwords nor keys are ever logged: [`Credentials`]' Debug prints the user names
//! and whether a secret is set, nothing else.
use std::{collections::HashMap, fmt, net::IpAddr};

use base64::Engine;
use md5::{Digest, Md5};

use crate::stun::message::{
    ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256, hmac, integrity_input,
};

/// How long a nonce is good for before the client gets 438 and a fresh one.
pub const DEFAULT_NONCE_SECS: u64 = 600;

/// The long-term key: MD5(username ":" realm ":" password) (RFC 8489 section 9.2.2; the
/// strings are used as given, no SASLprep: user names here are the operator's and the REST
/// scheme's ASCII).
pub type Key = [u8; 16];

pub fn long_term_key(username: &str, realm: &str, password: &str) -> Key {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// The TURN REST API password of `username` under `secret`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(hmac(secret, username.as_bytes(), false))
}

/// Why a username has no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Neither a configured user nor a REST username.
    UnknownUser,
    /// A REST username whose expiry has passed.
    Expired,
}

/// Who may allocate.
#[derive(Clone, Default)]
pub struct Credentials {
    pub realm: String,
    /// name -> password.
    pub users: HashMap<String, String>,
    /// The TURN REST API shared secret, if that scheme is on.
    pub secret: Option<Vec<u8>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.users.keys().collect();
        names.sort();
        f.debug_struct("Credentials")
            .field("realm", &self.realm)
            .field("users", &names)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Credentials {
    /// The key of `username` at Unix time `now`. A configured user wins over the REST scheme;
    /// a REST username is `<expiry unix seconds><sep ':'><anything>`.
    pub fn key(&self, username: &str, now_unix: u64) -> Result<Key, Refused> {
        if let Some(pw) = self.users.get(username) {
            return Ok(long_term_key(username, &self.realm, pw));
        }
        let Some(secret) = &self.secret else {
            return Err(Refused::UnknownUser);
        };
        let stamp = username.split(':').next().unwrap_or("");
        let Ok(expiry) = stamp.parse::<u64>() else {
            return Err(Refused::UnknownUser);
        };
        if expiry < now_unix {
            return Err(Refused::Expired);
        }
        let pw = rest_password(secret, username);
        Ok(long_term_key(username, &self.realm, &pw))
    }
}

/// USERHASH of `username` in `realm` (RFC 8489 section 14.4): SHA-256 of "username:realm".
pub fn userhash(username: &str, realm: &str) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.finalize().into()
}

impl Credentials {
    /// The configured user whose USERHASH is `hash` (REST usernames cannot be found this way:
    /// they are not known before they are used).
    pub fn user_by_hash(&self, hash: &[u8]) -> Option<&str> {
        self.users
            .keys()
            .find(|u| constant_eq(&userhash(u, &self.realm), hash))
            .map(String::as_str)
    }
}

/// Mints and checks nonces: `<expiry unix, 16 hex><MAC, 24 hex>`, the MAC over the expiry and
/// the client's address under a key drawn at start (a restart makes every nonce stale,
/// which costs each client one 438).
pub struct Nonces {
    key: [u8; 32],
    pub ttl_secs: u64,
}

/// A nonce's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Expired, or not one of ours (RFC 8489 answers both with 438 and a fresh nonce).
    Stale,
}

impl Nonces {
    pub fn new(key: [u8; 32], ttl_secs: u64) -> Nonces {
        Nonces { key, ttl_secs }
    }

    /// With a key from the kernel's CSPRNG.
    pub fn random(ttl_secs: u64) -> std::io::Result<Nonces> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Nonces::new(key, ttl_secs))
    }

    fn mac(&self, expiry: u64, client: IpAddr) -> String {
        let mut data = expiry.to_be_bytes().to_vec();
        match client {
            IpAddr::V4(a) => data.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => data.extend_from_slice(&a.octets()),
        }
        hex(&hmac(&self.key, &data, true)[..12])
    }

    pub fn mint(&self, client: IpAddr, now_unix: u64) -> String {
        let expiry = now_unix.saturating_add(self.ttl_secs);
        format!("{expiry:016x}{}", self.mac(expiry, client))
    }

    pub fn check(&self, nonce: &[u8], client: IpAddr, now_unix: u64) -> NonceCheck {
        let Some(expiry) = std::str::from_utf8(nonce)
            .ok()
            .filter(|s| s.len() == 40)
            .and_then(|s| u64::from_str_radix(&s[..16], 16).ok())
        else {
            return NonceCheck::Stale;
        };
        let want = self.mac(expiry, client);
        if !constant_eq(&nonce[16..], want.as_bytes()) || expiry < now_unix {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Comparison whose time does not depend on where the inputs differ.
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Which integrity attribute a request carried (the response uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    Sha1,
    Sha256,
}

impl Integrity {
    /// The one the request carries (SHA-256 preferred when both are there), if any.
    pub fn of(datagram: &[u8]) -> Option<Integrity> {
        if integrity_input(datagram, ATTR_MESSAGE_INTEGRITY_SHA256).is_some() {
            Some(Integrity::Sha256)
        } else if integrity_input(datagram, ATTR_MESSAGE_INTEGRITY).is_some() {
            Some(Integrity::Sha1)
        } else {
            None
        }
    }

    pub fn sha256(self) -> bool {
        self == Integrity::Sha256
    }
}

/// Whether the request's integrity attribute of kind `which` is right under `key`.
/// MESSAGE-INTEGRITY-SHA256 may be truncated to 16..32 bytes (RFC 8489 section 14.6).
pub fn verify(datagram: &[u8], which: Integrity, key: &[u8]) -> bool {
    let t = match which {
        Integrity::Sha1 => ATTR_MESSAGE_INTEGRITY,
        Integrity::Sha256 => ATTR_MESSAGE_INTEGRITY_SHA256,
    };
    let Some((covered, got)) = integrity_input(datagram, t) else {
        return false;
    };
    let want = hmac(key, &covered, which.sha256());
    match which {
        Integrity::Sha1 => constant_eq(got, &want),
        Integrity::Sha256 => {
            (16..=32).contains(&got.len())
                && got.len().is_multiple_of(4)
                && constant_eq(got, &want[..got.len()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::message::{self, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, Builder, Class};

    fn unhex(s: &str) -> Vec<u8> {
        let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..clean.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 5769 section 2.4: the sample request with long-term authentication. The password
    /// after SASLprep is "TheMatrIX"; the username is in katakana.
    #[test]
    fn rfc5769_long_term_known_answer() {
        let req = unhex(
            "00010060 2112a442 78ad3433 c6ad72c0 29da412e 00060012 e3839ee3 8388e383
             aae38383 e382afe3 82b90000 0015001c 662f2f34 39396b39 35346436 4f4c3334
             6f4c3946 53547679 36347341 0014000b 6578616d 706c652e 6f726700 00080014
             f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666",
        );
        let m = message::parse(&req).expect("the sample parses");
        let user = std::str::from_utf8(m.attr(ATTR_USERNAME).unwrap()).unwrap();
        assert_eq!(user, "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}");
        assert_eq!(m.attr(ATTR_REALM), Some(&b"example.org"[..]));
        assert_eq!(
            m.attr(ATTR_NONCE),
            Some(&b"f//499k954d6OL34oL9FSTvy64sA"[..])
        );
        let key = long_term_key(user, "example.org", "TheMatrIX");
        assert_eq!(Integrity::of(&req), Some(Integrity::Sha1));
        assert!(verify(&req, Integrity::Sha1, &key));
        assert!(!verify(
            &req,
            Integrity::Sha1,
            &long_term_key(user, "example.org", "TheMatrix")
        ));
        let mut bad = req.clone();
        bad[30] ^= 1;
        assert!(!verify(&bad, Integrity::Sha1, &key));
    }

    #[test]
    fn our_integrity_verifies_both_kinds() {
        let key = long_term_key("alice", "r", "pw");
        for sha256 in [false, true] {
            let mut b = Builder::new(3, Class::Request, [9; 12]);
            b.attr(ATTR_USERNAME, b"alice").integrity(&key, sha256);
            let wire = b.finish(true);
            let which = Integrity::of(&wire).unwrap();
            assert_eq!(which.sha256(), sha256);
            assert!(verify(&wire, which, &key));
            assert!(!verify(&wire, which, &long_term_key("alice", "r", "px")));
        }
    }

    #[test]
    fn rest_usernames_expire_and_need_the_secret() {
        let c = Credentials {
            realm: "example.org".into(),
            users: [("bob".to_string(), "pw".to_string())].into(),
            secret: Some(b"s3cret".to_vec()),
        };
        assert_eq!(
            c.key("bob", 0),
            Ok(long_term_key("bob", "example.org", "pw"))
        );
        let u = "1000:carol";
        let pw = rest_password(b"s3cret", u);
        assert_eq!(c.key(u, 999), Ok(long_term_key(u, "example.org", &pw)));
        assert_eq!(c.key(u, 1000), Ok(long_term_key(u, "example.org", &pw)));
        assert_eq!(c.key(u, 1001), Err(Refused::Expired));
        assert_eq!(c.key("carol", 0), Err(Refused::UnknownUser));
        assert_eq!(c.key("x:carol", 0), Err(Refused::UnknownUser));
        let no_secret = Credentials {
            secret: None,
            ..c.clone()
        };
        assert_eq!(no_secret.key(u, 0), Err(Refused::UnknownUser));
        // Debug shows neither passwords nor the secret.
        let d = format!("{c:?}");
        assert!(
            d.contains("bob") && !d.contains("pw") && !d.contains("s3cret"),
            "{d}"
        );
    }

    /// coturn's REST password for a known input (computed independently with
    /// `printf %s 1700000000:alice | openssl dgst -sha1 -hmac secret -binary | base64`).
    #[test]
    fn rest_password_known_answer() {
        assert_eq!(
            rest_password(b"secret", "1700000000:alice"),
            REST_KNOWN_ANSWER
        );
    }
    const REST_KNOWN_ANSWER: &str = "d8soP47RbdIKLDUOpnJPVQyq5Ts=";

    #[test]
    fn nonces_expire_and_bind_the_client() {
        let n = Nonces::new([7; 32], 600);
        let a: IpAddr = "198.18.1.2".parse().unwrap();
        let b: IpAddr = "198.18.1.3".parse().unwrap();
        let nonce = n.mint(a, 1000);
        assert_eq!(nonce.len(), 40);
        assert_eq!(n.check(nonce.as_bytes(), a, 1000), NonceCheck::Valid);
        assert_eq!(n.check(nonce.as_bytes(), a, 1600), NonceCheck::Valid);
        assert_eq!(n.check(nonce.as_bytes(), a, 1601), NonceCheck::Stale);
        assert_eq!(n.check(nonce.as_bytes(), b, 1000), NonceCheck::Stale);
        assert_eq!(n.check(b"short", a, 1000), NonceCheck::Stale);
        let other = Nonces::new([8; 32], 600);
        assert_eq!(other.check(nonce.as_bytes(), a, 1000), NonceCheck::Stale);
        // A forged expiry breaks the MAC.
        let mut forged = nonce.into_bytes();
        forged[0] = b'f';
        assert_eq!(n.check(&forged, a, 1000), NonceCheck::Stale);
    }
}
