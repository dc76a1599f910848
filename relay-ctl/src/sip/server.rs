//! The SIP listener: one UDP socket per relay address on the SIP port (the proxy talks to
//! the address it will put in the SDP, and the reply must come from it).
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use anyhow::{Context, Result};
use log::warn;
use tokio::{net::UdpSocket, task::JoinSet};

use super::setup::SessionSetup;

/// Bind the SIP port on each relay address; fails (before the daemon touches the data
/// plane) if one is taken.
pub async fn bind(addrs: &[IpAddr], port: u16) -> Result<Vec<UdpSocket>> {
    let mut out = vec![];
    for a in addrs {
        let at = SocketAddr::new(*a, port);
        out.push(
            UdpSocket::bind(at)
                .await
                .with_context(|| format!("binding the SIP relay interface to {at}"))?,
        );
    }
    Ok(out)
}

/// Serve until the tasks are dropped. A request is handled on a blocking thread: creating
/// a session binds sockets and writes kernel maps under the controller's lock.
pub fn serve(sockets: Vec<UdpSocket>, setup: Arc<SessionSetup>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for sock in sockets {
        let setup = setup.clone();
        set.spawn(async move {
            let local = match sock.local_addr() {
                Ok(a) => a.ip(),
                Err(e) => {
                    warn!("sip: socket without an address: {e}");
                    return;
                }
            };
            let sock = Arc::new(sock);
            // The largest UDP payload; SIP over UDP is normally far smaller (RFC 3261 18.1.1).
            let mut buf = vec![0u8; 65_535];
            loop {
                let (n, from) = match sock.recv_from(&mut buf).await {
                    Ok(x) => x,
                    Err(e) => {
                        warn!("sip: receive on {local}: {e}");
                        continue;
                    }
                };
                if !setup.admit(from.ip()) {
                    continue;
                }
                let datagram = buf[..n].to_vec();
                let setup = setup.clone();
                let reply =
                    tokio::task::spawn_blocking(move || setup.handle(&datagram, local)).await;
                match reply {
                    Ok(Some(r)) => {
                        if let Err(e) = sock.send_to(&r, from).await {
                            warn!("sip: reply to {from}: {e}");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!("sip: handler failed: {e}"),
                }
            }
        });
    }
    set
}
