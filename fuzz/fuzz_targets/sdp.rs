//! SDP from ng offers and SIP invites: parse, then rewrite as the relay would; the rewritten
//! body must parse again with the same number of media sections.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relay_ctl::sdp::{MediaPlan, Plan, Sdp, rewrite::rewrite};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = Sdp::parse(data) else {
        return;
    };
    let relay = "198.18.1.1".parse().expect("address");
    let plan = Plan {
        origin: Some(relay),
        session_conn: Some(relay),
        media: s
            .media
            .iter()
            .map(|_| {
                Some(MediaPlan {
                    addr: relay,
                    port: 30000,
                    rtcp_port: 30001,
                })
            })
            .collect(),
        strip_ice: true,
        strip_rtcp: false,
    };
    let out = rewrite(&s, &plan);
    let again = Sdp::parse(&out).expect("a rewritten SDP parses");
    assert_eq!(again.media.len(), s.media.len());
});
