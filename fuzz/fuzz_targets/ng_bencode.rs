//! ng requests: bencode decoding and the request options. What decodes must encode back to
//! a message that decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relay_ctl::ng::{
    bencode::{self, Value},
    request::Options,
};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = bencode::decode(data) else {
        return;
    };
    if matches!(v, Value::Dict(_)) {
        let _ = Options::parse(&v);
    }
    let again = bencode::decode(&bencode::encode(&v)).expect("our own encoding decodes");
    assert_eq!(again, v, "bencode round trip");
});
