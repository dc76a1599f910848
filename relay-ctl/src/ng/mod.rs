//! rtpengine's "ng" control protocol, so a SIP proxy's `rtpengine` module (Kamailio,
//! OpenSIPS) drives this relay unchanged: `<cookie> <bencode dictionary>` over UDP.
//! docs/ng.md lists the commands, keys and flags, and where we differ from rtpengine.
pub mod bencode;
pub mod cache;
pub mod commands;
pub mod listener;
pub mod metrics;
pub mod reply;
pub mod request;

pub use commands::{Ng, NgConfig};

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
