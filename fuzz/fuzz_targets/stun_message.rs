//! STUN at the controller's server: parse and answer, as the server would for a client.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relay_ctl::stun::{
    handler::{Answer, Layout, answer},
    message,
};

fuzz_target!(|data: &[u8]| {
    let _ = message::parse(data);
    let layout = Layout {
        addrs: vec!["198.18.1.1".parse().expect("address")],
        alt: Some("198.18.1.3".parse().expect("address")),
        port: 3478,
        alt_port: 3479,
    };
    let client = "203.0.113.7:40000".parse().expect("address");
    let local = "198.18.1.1:3478".parse().expect("address");
    if let Answer::Reply { bytes, to, .. } = answer(data, client, local, &layout) {
        // Answers go only to the asking client's address, and are themselves STUN.
        assert_eq!(to.ip(), client.ip());
        message::parse(&bytes).expect("our answer parses");
    }
});
