//! STUN Binding (RFC 8489) as far as the data plane answers it: a Binding request with no
//! attribute, or with only FINGERPRINT, gets a success response carrying XOR-MAPPED-ADDRESS
//! (and FINGERPRINT if the request had one). Everything else is the userspace server's.
use crate::crc32::crc32_prefix;

pub const HEADER_LEN: usize = 20;
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
pub const BINDING_REQUEST: u16 = 0x0001;
pub const BINDING_SUCCESS: u16 = 0x0101;
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const ATTR_FINGERPRINT: u16 = 0x8028;
/// XORed into the CRC-32 to make FINGERPRINT (section 14.7).
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// FINGERPRINT attribute: 4-byte attribute header + CRC.
pub const FINGERPRINT_LEN: usize = 8;
/// XOR-MAPPED-ADDRESS for IPv4: attribute header + reserved, family, port, address.
pub const XMA_V4_LEN: usize = 12;
/// The longest response the data plane writes.
pub const MAX_RESPONSE_LEN: usize = HEADER_LEN + XMA_V4_LEN + FINGERPRINT_LEN;

/// What a request on the STUN port is, judged from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Binding request, no attributes.
    Plain,
    /// Binding request whose only attribute is a correct FINGERPRINT.
    WithFingerprint,
    /// Well-formed STUN the data plane does not answer (other class or method, attributes).
    Unsupported,
    /// Not STUN, truncated, inconsistent length, or a wrong FINGERPRINT.
    Malformed,
}

/// Classify a request: `head` holds the message's first 28 bytes (zero-padded if shorter) and
/// `len` is the UDP payload length.
#[inline(always)]
pub fn classify(head: &[u8; HEADER_LEN + FINGERPRINT_LEN], len: usize) -> Request {
    if len < HEADER_LEN {
        return Request::Malformed;
    }
    let msg_type = u16::from_be_bytes([head[0], head[1]]);
    let msg_len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let cookie = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    // Top two bits zero, magic cookie, attribute length a multiple of 4 that fills the datagram.
    if msg_type & 0xc000 != 0 || cookie != MAGIC_COOKIE || !msg_len.is_multiple_of(4) {
        return Request::Malformed;
    }
    if HEADER_LEN + msg_len != len {
        return Request::Malformed;
    }
    if msg_type != BINDING_REQUEST {
        return Request::Unsupported;
    }
    if msg_len == 0 {
        return Request::Plain;
    }
    let attr = u16::from_be_bytes([head[20], head[21]]);
    let attr_len = u16::from_be_bytes([head[22], head[23]]);
    if msg_len != FINGERPRINT_LEN || attr != ATTR_FINGERPRINT || attr_len != 4 {
        return Request::Unsupported;
    }
    let want = crc32_prefix::<HEADER_LEN, { HEADER_LEN + FINGERPRINT_LEN }>(head) ^ FINGERPRINT_XOR;
    if u32::from_be_bytes([head[24], head[25], head[26], head[27]]) != want {
        return Request::Malformed;
    }
    Request::WithFingerprint
}

/// The success response to a Binding request with transaction id `txid` (12 bytes) from IPv4
/// `addr` (wire order) and host-order `port`. Returns the buffer and how much of it is used.
#[inline(always)]
pub fn binding_response(
    txid: &[u8; 12],
    addr: [u8; 4],
    port: u16,
    fingerprint: bool,
) -> ([u8; MAX_RESPONSE_LEN], usize) {
    let mut r = [0u8; MAX_RESPONSE_LEN];
    let len = if fingerprint {
        MAX_RESPONSE_LEN
    } else {
        HEADER_LEN + XMA_V4_LEN
    };
    let t = BINDING_SUCCESS.to_be_bytes();
    let l = ((len - HEADER_LEN) as u16).to_be_bytes();
    let c = MAGIC_COOKIE.to_be_bytes();
    r[0] = t[0];
    r[1] = t[1];
    r[2] = l[0];
    r[3] = l[1];
    let mut i = 0;
    while i < 4 {
        r[4 + i] = c[i];
        i += 1;
    }
    i = 0;
    while i < 12 {
        r[8 + i] = txid[i];
        i += 1;
    }
    // XOR-MAPPED-ADDRESS: type, length 8, 0, family 1, port ^ cookie top half, addr ^ cookie.
    let a = ATTR_XOR_MAPPED_ADDRESS.to_be_bytes();
    r[20] = a[0];
    r[21] = a[1];
    r[23] = 8;
    r[25] = 0x01;
    let xp = (port ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes();
    r[26] = xp[0];
    r[27] = xp[1];
    i = 0;
    while i < 4 {
        r[28 + i] = addr[i] ^ c[i];
        i += 1;
    }
    if fingerprint {
        let f = ATTR_FINGERPRINT.to_be_bytes();
        r[32] = f[0];
        r[33] = f[1];
        r[35] = 4;
        let crc = crc32_prefix::<{ HEADER_LEN + XMA_V4_LEN }, MAX_RESPONSE_LEN>(&r);
        let crc = (crc ^ FINGERPRINT_XOR).to_be_bytes();
        r[36] = crc[0];
        r[37] = crc[1];
        r[38] = crc[2];
        r[39] = crc[3];
    }
    (r, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(msg: &[u8]) -> [u8; 28] {
        let mut h = [0u8; 28];
        let n = msg.len().min(28);
        h[..n].copy_from_slice(&msg[..n]);
        h
    }

    fn request(msg_type: u16, attrs: &[u8]) -> std::vec::Vec<u8> {
        let mut m = std::vec::Vec::new();
        m.extend_from_slice(&msg_type.to_be_bytes());
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(attrs);
        m
    }

    extern crate std;

    #[test]
    fn classifies() {
        let plain = request(BINDING_REQUEST, &[]);
        assert_eq!(classify(&head(&plain), plain.len()), Request::Plain);
        let mut fp = request(BINDING_REQUEST, &[0x80, 0x28, 0, 4, 0, 0, 0, 0]);
        let crc = crc32fast::hash(&fp[..20]) ^ 0x5354_554e;
        fp[24..28].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(classify(&head(&fp), fp.len()), Request::WithFingerprint);
        fp[27] ^= 1;
        assert_eq!(classify(&head(&fp), fp.len()), Request::Malformed);
        // CHANGE-REQUEST (RFC 5780) is the userspace server's.
        let cr = request(BINDING_REQUEST, &[0, 3, 0, 4, 0, 0, 0, 6]);
        assert_eq!(classify(&head(&cr), cr.len()), Request::Unsupported);
        let ind = request(0x0011, &[]);
        assert_eq!(classify(&head(&ind), ind.len()), Request::Unsupported);
        assert_eq!(classify(&head(&plain), 19), Request::Malformed);
        assert_eq!(classify(&head(&plain), 24), Request::Malformed);
        let mut bad = plain.clone();
        bad[4] = 0;
        assert_eq!(classify(&head(&bad), bad.len()), Request::Malformed);
    }

    #[test]
    fn response_bytes() {
        let (r, n) = binding_response(&[1; 12], [192, 0, 2, 1], 32853, true);
        assert_eq!(n, 40);
        assert_eq!(&r[..4], &[0x01, 0x01, 0, 20]);
        // RFC 8489 section 14.2: port XOR the cookie's top half, address XOR the cookie.
        let xp = (32853u16 ^ 0x2112).to_be_bytes();
        let want = [
            0,
            0x20,
            0,
            8,
            0,
            1,
            xp[0],
            xp[1],
            192 ^ 0x21,
            0x12,
            2 ^ 0xa4,
            1 ^ 0x42,
        ];
        assert_eq!(&r[20..32], &want);
        assert_eq!(&r[32..36], &[0x80, 0x28, 0, 4]);
        let crc = crc32fast::hash(&r[..32]) ^ 0x5354_554e;
        assert_eq!(&r[36..40], &crc.to_be_bytes());
        let (_, n) = binding_response(&[1; 12], [192, 0, 2, 1], 1, false);
        assert_eq!(n, 32);
    }
}
