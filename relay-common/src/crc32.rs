//! CRC-32 (ISO-HDLC / IEEE 802.3, reflected polynomial 0xEDB88320): the STUN FINGERPRINT
//! (RFC 8489 section 14.7), over fixed-length inputs (the data plane sums a 20-byte request
//! header and a 32-byte response). Byte-wise with a 256-entry table: in the eBPF object the
//! table is read-only global data, and one load per byte keeps the verifier's walk short
//! (the bitwise form cost it over 500k processed instructions).

const POLY: u32 = 0xedb8_8320;

const fn make_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut b = 0;
        while b < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            b += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC of every byte value (a static, so the eBPF object holds one copy in .rodata).
pub static TABLE: [u32; 256] = make_table();

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
        // The mask keeps the index provably inside the table (no bounds branch).
        crc = TABLE[((crc ^ data[i] as u32) & 0xff) as usize] ^ (crc >> 8);
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
