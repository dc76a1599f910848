//! CRC-32 (ISO-HDLC / IEEE 802.3, reflected polynomial 0xEDB88320): the STUN FINGERPRINT
//! (RFC 8489 section 14.7). Bitwise, over fixed-length inputs: the data plane only ever sums
//! a 20-byte request header and a 32-byte response, and a constant trip count keeps the
//! verifier's job trivial (no table map needed).

const POLY: u32 = 0xedb8_8320;

/// CRC-32 of `N` bytes.
#[inline(always)]
pub fn crc32<const N: usize>(data: &[u8; N]) -> u32 {
    crc32_prefix::<N, N>(data)
}

/// CRC-32 of the first `N` of `M` bytes (no copy of the prefix).
#[inline(always)]
pub fn crc32_prefix<const N: usize, const M: usize>(data: &[u8; M]) -> u32 {
    let mut crc = !0u32;
    let mut i = 0;
    while i < N && i < M {
        crc ^= data[i] as u32;
        let mut b = 0;
        while b < 8 {
            // Branch-free: mask is all ones when the low bit is set.
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (POLY & mask);
            b += 1;
        }
        i += 1;
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_value() {
        // The catalogue's check value for CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    proptest! {
        #[test]
        fn matches_crc32fast(a in any::<[u8; 20]>(), b in any::<[u8; 32]>()) {
            prop_assert_eq!(crc32(&a), crc32fast::hash(&a));
            prop_assert_eq!(crc32(&b), crc32fast::hash(&b));
        }
    }
}
