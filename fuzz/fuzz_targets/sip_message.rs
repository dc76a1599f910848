//! SIP messages to the relay interface: parse, read the headers the interface uses, and build
//! a response to what is answerable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use relay_ctl::sip::{
    media,
    message::{Message, response},
};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        return;
    };
    let _ = (m.session_id(), m.cseq(), m.branch(), m.has_sdp());
    if m.has_sdp() {
        let _ = media::offered(&m.body);
    }
    if m.answerable().is_ok() {
        let r = response(
            &m,
            302,
            "tag",
            &[("Contact", "<sip:relay@198.18.1.1>".into())],
            None,
        )
        .expect("an answerable request gets a response");
        Message::parse(&r).expect("our response parses");
    }
});
