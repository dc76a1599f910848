//! The reflector's ticket header and the STUN Binding classifier shared with XDP
//! (relay-common: the same code the data plane runs).
#![no_main]
use libfuzzer_sys::fuzz_target;
use relay_common::{
    reflector::{HEADER_LEN, ReflectHeader},
    stun::{FINGERPRINT_LEN, HEADER_LEN as STUN_HEADER_LEN, classify},
};

fuzz_target!(|data: &[u8]| {
    if let Some(h) = ReflectHeader::from_bytes(data) {
        assert_eq!(&h.to_bytes()[..], &data[..HEADER_LEN]);
        let _ = (h.src(), h.dst(), h.mac_blocks(&[0; 16], 0));
    }
    let mut head = [0u8; STUN_HEADER_LEN + FINGERPRINT_LEN];
    let n = data.len().min(head.len());
    head[..n].copy_from_slice(&data[..n]);
    let _ = classify(&head, data.len());
});
