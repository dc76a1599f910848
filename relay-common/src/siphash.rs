//! SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012): the MAC of
//! reflector tickets (docs/reflector.md says why).
//!
//! The data plane hashes a fixed-length message of whole 8-byte blocks ([`siphash24_blocks`]),
//! so the loop has a constant trip count the verifier (and LLVM's unroller) sees through.
//! [`siphash24`] takes any byte length; it exists to check the block form against the paper's
//! vectors and is what userspace may use for other lengths.

/// A 128-bit SipHash key as two little-endian 64-bit halves (`k0` = key bytes 0..8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SipKey {
    pub k0: u64,
    pub k1: u64,
}

impl SipKey {
    /// The key from its 16 bytes, as the paper writes it.
    pub const fn from_bytes(b: [u8; 16]) -> SipKey {
        SipKey {
            k0: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            k1: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        }
    }
}

struct State([u64; 4]);

impl State {
    #[inline(always)]
    fn new(key: &SipKey) -> State {
        State([
            key.k0 ^ 0x736f6d6570736575,
            key.k1 ^ 0x646f72616e646f6d,
            key.k0 ^ 0x6c7967656e657261,
            key.k1 ^ 0x7465646279746573,
        ])
    }

    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.0;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13);
        v[1] ^= v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16);
        v[3] ^= v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21);
        v[3] ^= v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17);
        v[1] ^= v[2];
        v[2] = v[2].rotate_left(32);
    }

    /// Absorb one message block: two compression rounds (the "2" of 2-4).
    #[inline(always)]
    fn block(&mut self, m: u64) {
        self.0[3] ^= m;
        self.round();
        self.round();
        self.0[0] ^= m;
    }

    /// Four finalization rounds (the "4").
    #[inline(always)]
    fn finish(mut self) -> u64 {
        self.0[2] ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.round();
        self.0[0] ^ self.0[1] ^ self.0[2] ^ self.0[3]
    }
}

/// SipHash-2-4 of a message of `N` whole little-endian 8-byte blocks (`8 * N` bytes, `N` < 32).
/// The last block the paper appends then holds only the length byte.
#[inline(always)]
pub fn siphash24_blocks<const N: usize>(key: &SipKey, blocks: &[u64; N]) -> u64 {
    let mut s = State::new(key);
    let mut i = 0;
    while i < N {
        s.block(blocks[i]);
        i += 1;
    }
    s.block(((8 * N) as u64 & 0xff) << 56);
    s.finish()
}

/// SipHash-2-4 of any byte string (the paper's algorithm as written).
pub fn siphash24(key: &SipKey, msg: &[u8]) -> u64 {
    let mut s = State::new(key);
    let (blocks, rest) = msg.as_chunks::<8>();
    for b in blocks {
        s.block(u64::from_le_bytes(*b));
    }
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = msg.len() as u8;
    s.block(u64::from_le_bytes(last));
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::hash::Hasher;
    use proptest::prelude::*;

    const PAPER_KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    /// Appendix A of the paper: key 00..0f, message 00..0e (15 bytes).
    #[test]
    fn paper_appendix_a() {
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        let key = SipKey::from_bytes(PAPER_KEY);
        assert_eq!(key.k0, 0x0706050403020100);
        assert_eq!(key.k1, 0x0f0e0d0c0b0a0908);
        assert_eq!(siphash24(&key, &msg), 0xa129ca6149be45e5);
    }

    /// The reference implementation's vectors (key 00..0f, message 00..len-1) for lengths 0
    /// and 8, little-endian tag bytes as `vectors.h` lists them.
    #[test]
    fn reference_vectors() {
        let key = SipKey::from_bytes(PAPER_KEY);
        assert_eq!(
            siphash24(&key, &[]).to_le_bytes(),
            [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72]
        );
        let msg: [u8; 8] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            siphash24(&key, &msg).to_le_bytes(),
            [0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93]
        );
    }

    fn reference(key: [u8; 16], msg: &[u8]) -> u64 {
        let mut h = siphasher::sip::SipHasher24::new_with_key(&key);
        h.write(msg);
        h.finish()
    }

    fn blocks9(msg: &[u8; 72]) -> [u64; 9] {
        core::array::from_fn(|i| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&msg[8 * i..8 * i + 8]);
            u64::from_le_bytes(b)
        })
    }

    proptest! {
        /// Both forms agree with the `siphasher` crate (an independent implementation).
        #[test]
        fn matches_siphasher(key in any::<[u8; 16]>(), msg in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(siphash24(&SipKey::from_bytes(key), &msg), reference(key, &msg));
        }

        #[test]
        fn block_form_matches(key in any::<[u8; 16]>(), msg in any::<[[u8; 8]; 9]>()) {
            let flat: [u8; 72] = core::array::from_fn(|i| msg[i / 8][i % 8]);
            let k = SipKey::from_bytes(key);
            prop_assert_eq!(siphash24_blocks(&k, &blocks9(&flat)), reference(key, &flat));
            let empty: [u64; 0] = [];
            prop_assert_eq!(siphash24_blocks(&k, &empty), reference(key, &[]));
        }
    }
}
