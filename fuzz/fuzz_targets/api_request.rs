//! The HTTP API's own request parsing (hyper parses HTTP itself): the JSON bodies of session
//! create/update and ticket requests as the router decodes them, and the Content-Type check.
//! A body that decodes must encode and decode again to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relay_ctl::api::{
    router::{decode_json, is_json},
    types::{CreateSession, TicketRequest, UpdateSession},
};
use serde::{Serialize, de::DeserializeOwned};

fn round_trip<T: DeserializeOwned + Serialize>(body: &[u8]) {
    let Ok(v) = decode_json::<T>(body) else {
        return;
    };
    let json = serde_json::to_vec(&v).expect("a decoded request encodes");
    let again: T = decode_json(&json).expect("a re-encoded request decodes");
    assert_eq!(
        serde_json::to_vec(&again).expect("encodes"),
        json,
        "decode(encode(x)) == x"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => round_trip::<CreateSession>(rest),
        1 => round_trip::<UpdateSession>(rest),
        2 => round_trip::<TicketRequest>(rest),
        _ => {
            if let Ok(ct) = std::str::from_utf8(rest) {
                let _ = is_json(Some(ct));
            }
        }
    }
});
