//! What this binary is, for `relay-ctl --version` and `media_relay_build_info`: the crate
//! version, the git revision it was built from and a hash of the embedded XDP object (both
//! from `build.rs`), so an operator can tell two builds, and two data planes, apart.

/// Short git revision (`git rev-parse --short HEAD`), "unknown" outside a git checkout.
pub const GIT_REVISION: &str = env!("RELAY_GIT_REVISION");

/// FNV-1a 64 of the embedded XDP object (`dataplane::RELAY_OBJECT`), 16 hex digits.
pub const EBPF_HASH: &str = env!("RELAY_EBPF_FNV1A64");

/// `0.1.0 (git c7bb149, ebpf fnv1a64:0123456789abcdef)`; clap prefixes the binary's name.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("RELAY_GIT_REVISION"),
    ", ebpf fnv1a64:",
    env!("RELAY_EBPF_FNV1A64"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a 64 again, written from the spec (offset basis, prime), not copied from build.rs.
    fn fnv1a64(bytes: &[u8]) -> u64 {
        let mut h: u64 = 14_695_981_039_346_656_037;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(1_099_511_628_211);
        }
        h
    }

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_hash_is_the_embedded_objects() {
        let want = format!("{:016x}", fnv1a64(crate::dataplane::RELAY_OBJECT));
        assert_eq!(EBPF_HASH, want);
    }

    #[test]
    fn version_names_the_revision_and_the_object() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
        assert!(
            VERSION.ends_with(&format!("(git {GIT_REVISION}, ebpf fnv1a64:{EBPF_HASH})")),
            "{VERSION}"
        );
        assert!(
            GIT_REVISION == "unknown"
                || (GIT_REVISION.len() >= 7 && GIT_REVISION.chars().all(|c| c.is_ascii_hexdigit())),
            "{GIT_REVISION}"
        );
        assert_eq!(EBPF_HASH.len(), 16);
        assert!(
            EBPF_HASH.chars().all(|c| c.is_ascii_hexdigit()),
            "{EBPF_HASH}"
        );
    }
}
