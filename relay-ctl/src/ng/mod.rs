//! rtpengine's "ng" control protocol, so a SIP proxy's `rtpengine` module (Kamailio,
//! OpenSIPS) drives this relay unchanged: `<cookie> <bencode dictionary>` over UDP.
//! docs/ng.md lists the commands, keys and flags, and where we differ from rtpengine.
pub mod bencode;
pub mod cache;
pub mod commands;
pub mod listener;
pub mod reply;
pub mod request;

pub use commands::{Ng, NgConfig};

/// Largest cookie we accept (rtpengine's clients use a few dozen bytes).
pub const MAX_COOKIE: usize = 128;
/// Largest reply body that fits one UDP datagram (IPv4's 65,507-byte payload) after the
/// longest cookie and its space: `list` is cut to it, and anything larger is answered
/// with an error, so every request gets a reply.
pub const MAX_REPLY_BODY: usize = 65_507 - MAX_COOKIE - 1;

/// `relay-ctl daemon --help`: how a SIP proxy drives the relay (the lines the Kamailio test
/// config, relay-ctl/tests/kamailio/kamailio.cfg, uses).
pub const DAEMON_HELP: &str = "\
SIP proxies: the daemon speaks rtpengine's ng protocol on udp:127.0.0.1:2223 (--ng-listen), so
Kamailio's or OpenSIPS' stock rtpengine module drives it unchanged. Kamailio:

    loadmodule \"rtpengine.so\"
    modparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:2223\")
    # INVITE, its SDP replies and re-INVITEs (offer/answer); BYE, CANCEL, failures (delete):
    rtpengine_manage(\"trust-address replace-origin replace-session-connection ICE=remove RTP/AVP direction=r0 direction=r1\");

OpenSIPS: modparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:2223\") and the same
rtpengine_manage()/rtpengine_offer()/rtpengine_answer()/rtpengine_delete() calls. `direction`
names the relay interface (or address) facing the caller, then the callee. Supported commands,
keys, flags and differences from rtpengine: docs/ng.md.";

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};

use crate::api::Control;

/// Bind the ng socket (the daemon does this before touching the data plane, so a taken
/// address fails the start cleanly).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::UdpSocket> {
    tokio::net::UdpSocket::bind(addr)
        .await
        .with_context(|| format!("binding the ng control socket to udp:{addr} (--ng-listen)"))
}

/// Serve ng on `sock` over `ctl`, and every few seconds forget the calls whose sessions the
/// controller expired. The task ends when aborted.
pub fn spawn(
    sock: tokio::net::UdpSocket,
    ctl: Arc<dyn Control>,
    cfg: NgConfig,
) -> tokio::task::JoinHandle<()> {
    let ng = Arc::new(Ng::new(ctl, cfg));
    tokio::spawn(async move {
        let pruner = {
            let ng = ng.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    ng.prune();
                }
            }
        };
        tokio::select! {
            () = listener::serve(sock, ng) => {}
            () = pruner => {}
        }
    })
}

#[cfg(test)]
mod tests {
    /// The help text quotes the Kamailio config the end-to-end test runs; keep them equal.
    #[test]
    fn help_quotes_the_tested_kamailio_config() {
        let cfg = include_str!("../../tests/kamailio/kamailio.cfg");
        let sock = r#"modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:2223")"#;
        assert!(cfg.contains(sock) && super::DAEMON_HELP.contains(sock));
        let flags = "trust-address replace-origin replace-session-connection ICE=remove RTP/AVP direction=r0 direction=r1";
        assert!(cfg.contains(&format!("#!define RTPENGINE_FLAGS \"{flags}\"")));
        assert!(super::DAEMON_HELP.contains(&format!("rtpengine_manage(\"{flags}\")")));
        let readme = include_str!("../../../README.md");
        assert!(readme.contains(sock) && readme.contains(flags));
    }
}
