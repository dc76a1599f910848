//! Incremental Internet checksum updates (RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')`).
//!
//! The fast path rewrites addresses, ports and TTL and must fix the IPv4 header checksum and the
//! UDP checksum without summing the payload again. All words are taken exactly as they sit in
//! memory (no byte swapping): the one's-complement sum commutes with swapping the bytes of every
//! word, so a checksum read from and written back to the packet stays consistent.

/// Accumulated change to a checksum: words taken out and words put in.
///
/// Bounded use: up to 32768 replaced 16-bit words before the `u32` could overflow; the data
/// plane replaces at most 19 (two IPv6 addresses, two ports, TTL).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CsumDelta(u32);

impl CsumDelta {
    pub const fn new() -> CsumDelta {
        CsumDelta(0)
    }

    /// Replace a 16-bit word `old` by `new` (`~m + m'`).
    #[inline(always)]
    pub const fn replace16(self, old: u16, new: u16) -> CsumDelta {
        CsumDelta(self.0 + (!old) as u32 + new as u32)
    }

    /// Replace a 32-bit field (e.g. an IPv4 address) by its two 16-bit halves.
    #[inline(always)]
    pub const fn replace32(self, old: u32, new: u32) -> CsumDelta {
        self.replace16((old >> 16) as u16, (new >> 16) as u16)
            .replace16(old as u16, new as u16)
    }

    /// Replace a 128-bit field (an IPv6 address) given as four 32-bit words.
    #[inline(always)]
    pub const fn replace128(self, old: [u32; 4], new: [u32; 4]) -> CsumDelta {
        self.replace32(old[0], new[0])
            .replace32(old[1], new[1])
            .replace32(old[2], new[2])
            .replace32(old[3], new[3])
    }

    /// The updated checksum for a field whose current value is `csum` (IPv4 header checksum).
    #[inline(always)]
    pub const fn apply(self, csum: u16) -> u16 {
        !fold((!csum) as u32 + self.0)
    }

    /// The updated UDP checksum. Over IPv4, 0 means "no checksum" and must stay 0; a computed
    /// 0 is sent as 0xffff (RFC 768).
    #[inline(always)]
    pub const fn apply_udp(self, csum: u16) -> u16 {
        if csum == 0 {
            return 0;
        }
        match self.apply(csum) {
            0 => 0xffff,
            c => c,
        }
    }
}

/// Fold a 32-bit one's-complement accumulator to 16 bits with end-around carry.
#[inline(always)]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Full IPv4 header checksum over the header's ten 16-bit words in memory order. The checksum
/// word (index 5) is summed as it is: 0 when computing it for a freshly written header, and
/// a valid header sums to 0 with it included.
#[inline(always)]
pub const fn ipv4_header(words: &[u16; 10]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < words.len() {
        sum += words[i] as u32;
        i += 1;
    }
    !fold(sum)
}

/// UDP-over-IPv4 checksum of a whole datagram (RFC 768): pseudo-header, UDP header with its
/// checksum 0, and `payload`, whose bytes past the datagram's end must be zero (they add
/// nothing). Addresses, ports and `udp_len_be` are network order as they sit in the packet;
/// `N` is even. A computed 0 is sent as 0xffff (0 means "no checksum").
#[inline(always)]
pub const fn udp4<const N: usize>(
    src: u32,
    dst: u32,
    sport_be: u16,
    dport_be: u16,
    udp_len_be: u16,
    payload: &[u8; N],
) -> u16 {
    // The length appears twice: in the pseudo-header and in the UDP header.
    let mut sum = (dst as u16) as u32
        + ((dst >> 16) as u16) as u32
        + (src as u16) as u32
        + ((src >> 16) as u16) as u32
        + 17u16.to_be() as u32
        + udp_len_be as u32
        + dport_be as u32
        + sport_be as u32
        + udp_len_be as u32;
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_ne_bytes([payload[i], payload[i + 1]]) as u32;
        i += 2;
    }
    match !fold(sum) {
        0 => 0xffff,
        c => c,
    }
}

/// Add a 64-bit memory word (four 16-bit words) to a one's-complement accumulator as its two
/// 32-bit halves: no carry is lost for up to 2^31 words.
#[inline(always)]
pub const fn add64(acc: u64, word: u64) -> u64 {
    acc + (word & 0xffff_ffff) + (word >> 32)
}

/// Fold an [`add64`] accumulator to the 16-bit one's-complement sum of the words added (not
/// complemented: the sum of a span of memory, e.g. to take it out with [`CsumDelta`]).
#[inline(always)]
pub const fn fold64(acc: u64) -> u16 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    fold(((acc & 0xffff_ffff) + (acc >> 32)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, UdpHeader};
    use proptest::prelude::*;

    /// Memory-order 16-bit word from two wire bytes, as the data plane reads it.
    fn w(b: [u8; 2]) -> u16 {
        u16::from_ne_bytes(b)
    }
    fn dw(b: [u8; 4]) -> u32 {
        u32::from_ne_bytes(b)
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        let got = CsumDelta::new().replace16(0x5555, 0x3285).apply(0xdd2f);
        assert_eq!(got, 0x0000);
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let d = CsumDelta::new().replace32(0x01020304, 0x05060708);
        assert_eq!(d.apply_udp(0), 0);
    }

    #[test]
    fn no_change_keeps_checksum() {
        let same = CsumDelta::new().replace16(0xabcd, 0xabcd);
        for c in [0u16, 1, 0x1234, 0xfffe] {
            assert_eq!(same.apply(c), c);
        }
        // 0xffff and 0x0000 are the two zeros of one's complement; UDP must send 0xffff for a
        // computed zero (0 means "no checksum"), so apply_udp keeps it.
        assert_eq!(same.apply(0xffff), 0);
        assert_eq!(same.apply_udp(0xffff), 0xffff);
    }

    /// Memory-order words of a 20-byte header, as the data plane reads them.
    fn words10(b: &[u8]) -> [u16; 10] {
        let mut o = [0u16; 10];
        for (i, c) in b.chunks(2).enumerate() {
            o[i] = w([c[0], c[1]]);
        }
        o
    }

    #[test]
    fn ipv4_header_known_vector() {
        // The worked example of Wikipedia's "IPv4 header checksum" (bytes only, never sent):
        // 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&words10(&hdr)), w([0xb8, 0x61]));
        // With the checksum in place the header sums to zero.
        let mut full = hdr;
        full[10..12].copy_from_slice(&[0xb8, 0x61]);
        assert_eq!(ipv4_header(&words10(&full)), 0);
    }

    fn ip_header(src: [u8; 4], dst: [u8; 4], ttl: u8, payload_len: u16) -> Ipv4Header {
        let mut h = Ipv4Header::new(payload_len, ttl, IpNumber::UDP, src, dst).unwrap();
        h.header_checksum = h.calc_header_checksum();
        h
    }

    proptest! {
        /// What the relay does to IPv4+UDP, checked against etherparse's full recompute.
        #[test]
        fn incremental_matches_full_recompute(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            nsrc in any::<[u8; 4]>(), ndst in any::<[u8; 4]>(),
            sport in any::<u16>(), dport in any::<u16>(),
            nsport in any::<u16>(), ndport in any::<u16>(),
            ttl in 2u8..=255,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let ip = ip_header(src, dst, ttl, (8 + payload.len()) as u16);
            let udp = UdpHeader::with_ipv4_checksum(sport, dport, &ip, &payload).unwrap();

            let nip = ip_header(nsrc, ndst, ttl - 1, (8 + payload.len()) as u16);
            let nudp = UdpHeader::with_ipv4_checksum(nsport, ndport, &nip, &payload).unwrap();

            // IPv4 header: addresses and the TTL/protocol word.
            let ip_delta = CsumDelta::new()
                .replace32(dw(src), dw(nsrc))
                .replace32(dw(dst), dw(ndst))
                .replace16(w([ttl, 17]), w([ttl - 1, 17]));
            let got = ip_delta.apply(w(ip.header_checksum.to_be_bytes()));
            prop_assert_eq!(got, w(nip.header_checksum.to_be_bytes()));

            // UDP: pseudo-header addresses and both ports.
            let udp_delta = CsumDelta::new()
                .replace32(dw(src), dw(nsrc))
                .replace32(dw(dst), dw(ndst))
                .replace16(w(sport.to_be_bytes()), w(nsport.to_be_bytes()))
                .replace16(w(dport.to_be_bytes()), w(ndport.to_be_bytes()));
            let got = udp_delta.apply_udp(w(udp.checksum.to_be_bytes()));
            prop_assert_eq!(got, w(nudp.checksum.to_be_bytes()));
        }

        /// A full IPv4 header checksum matches etherparse's.
        #[test]
        fn ipv4_header_matches_etherparse(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), ttl in any::<u8>(),
            len in 0u16..1400, id in any::<u16>(), tos in any::<u8>(),
        ) {
            let mut ip = ip_header(src, dst, ttl, len);
            ip.identification = id;
            ip.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap();
            ip.ecn = etherparse::IpEcn::try_new(tos & 3).unwrap();
            ip.header_checksum = ip.calc_header_checksum();
            let mut b = ip.to_bytes();
            let want = w([b[10], b[11]]);
            b[10] = 0;
            b[11] = 0;
            prop_assert_eq!(ipv4_header(&words10(&b)), want);
        }

        /// A whole UDP datagram's checksum (the STUN answer's) matches etherparse's, for
        /// payloads zero-padded to a longer even buffer.
        #[test]
        fn udp4_matches_etherparse(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            sport in any::<u16>(), dport in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..=64),
        ) {
            let ip = ip_header(src, dst, 64, (8 + payload.len()) as u16);
            let udp = UdpHeader::with_ipv4_checksum(sport, dport, &ip, &payload).unwrap();
            let mut buf = [0u8; 64];
            buf[..payload.len()].copy_from_slice(&payload);
            let got = udp4(
                dw(src), dw(dst),
                w(sport.to_be_bytes()), w(dport.to_be_bytes()),
                w((8 + payload.len() as u16).to_be_bytes()),
                &buf,
            );
            prop_assert_eq!(got, w(udp.checksum.to_be_bytes()));
        }

        /// Summing 64-bit words by halves is the 16-bit one's-complement sum of their bytes.
        #[test]
        fn add64_fold64_is_the_word_sum(bytes in any::<[u8; 56]>()) {
            let mut acc = 0u64;
            let mut sum = 0u32;
            for c in bytes.chunks(8) {
                acc = add64(acc, u64::from_ne_bytes(c.try_into().unwrap()));
            }
            for c in bytes.chunks(2) {
                sum += w([c[0], c[1]]) as u32;
            }
            prop_assert_eq!(fold64(acc), fold(sum));
        }

        #[test]
        fn ipv6_address_replacement_matches_recompute(
            a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), rest in any::<[u8; 8]>(),
        ) {
            // Sum over (address, rest) before and after replacing the address.
            fn sum(addr: &[u8; 16], rest: &[u8; 8]) -> u16 {
                let mut s = 0u32;
                for c in addr.chunks(2).chain(rest.chunks(2)) {
                    s += u16::from_ne_bytes([c[0], c[1]]) as u32;
                }
                !fold(s)
            }
            let words = |x: &[u8; 16]| {
                let mut o = [0u32; 4];
                for (i, c) in x.chunks(4).enumerate() {
                    o[i] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
                }
                o
            };
            let before = sum(&a, &rest);
            let after = CsumDelta::new().replace128(words(&a), words(&b)).apply(before);
            // One's complement has two zeros; compare as sums.
            let want = sum(&b, &rest);
            prop_assert!(after == want || (after == 0 && want == 0xffff) || (after == 0xffff && want == 0));
        }
    }
}
