//! Sockets of the STUN server: one per (address, port) of the [`Layout`], each with a task
//! that answers through [`handler::answer`] and sends from the socket the answer names
//! (CHANGE-REQUEST replies leave from the other address or port).
use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use tokio::net::UdpSocket;

use crate::ratelimit::PerSource;

use super::{
    StunStats,
    handler::{self, Answer, Layout},
};

/// Another server sharing the STUN port (the TURN server on `--turn-port` = `--stun-port`):
/// it is offered every datagram first, before the rate limit (which is for Bindings only).
pub trait Delegate: Send + Sync {
    /// Whether `datagram` is the delegate's (then the STUN server does nothing with it).
    fn wants(&self, datagram: &[u8]) -> bool;
    /// Handle it; `local` is the address it came in on (one of [`StunServer::sockets`]).
    fn handle(&self, local: SocketAddr, client: SocketAddr, datagram: &[u8]);
}

/// The running server; dropping it stops its tasks.
pub struct StunServer {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub bound: Vec<SocketAddr>,
    /// The bound sockets, for a [`Delegate`] to answer from.
    pub sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
}

impl Drop for StunServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Bind every socket of `layout` that can be bound (an address not configured on this box is
/// logged and counted, the rest still serve) and start answering.
/// `rate`: requests per second per client address (and burst) answered; 0: no limit.
pub fn start(
    layout: Layout,
    rate: u32,
    stats: Arc<StunStats>,
    delegate: Option<Arc<dyn Delegate>>,
) -> StunServer {
    let limit = Arc::new(PerSource::new(rate));
    let mut socks: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    for addr in layout.sockets() {
        match std::net::UdpSocket::bind(addr).and_then(|s| {
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s)
        }) {
            Ok(s) => {
                socks.insert(addr, Arc::new(s));
            }
            Err(e) => {
                stats.inc("bind_error");
                log::warn!("STUN: cannot listen on {addr}: {e}");
            }
        }
    }
    let bound: Vec<SocketAddr> = layout
        .sockets()
        .into_iter()
        .filter(|a| socks.contains_key(a))
        .collect();
    let socks = Arc::new(socks);
    let layout = Arc::new(layout);
    let tasks = bound
        .iter()
        .filter_map(|a| socks.get(a).cloned().map(|s| (*a, s)))
        .map(|(local, sock)| {
            let (socks, layout, stats, limit, delegate) = (
                socks.clone(),
                layout.clone(),
                stats.clone(),
                limit.clone(),
                delegate.clone(),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    let (n, client) = match sock.recv_from(&mut buf).await {
                        Ok(r) => r,
                        Err(e) => {
                            stats.inc("recv_error");
                            log::warn!("STUN {local}: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    if let Some(d) = &delegate
                        && d.wants(&buf[..n])
                    {
                        d.handle(local, client, &buf[..n]);
                        continue;
                    }
                    // Answers go back to the (possibly spoofed) source: a flood from one
                    // address is not turned into a flood of answers.
                    if !limit.allow(client.ip(), std::time::Instant::now()) {
                        stats.inc("rate_limited");
                        continue;
                    }
                    match handler::answer(&buf[..n], client, local, &layout) {
                        Answer::Drop(why) => stats.inc(why.as_str()),
                        Answer::Reply {
                            from,
                            to,
                            bytes,
                            code,
                        } => {
                            let Some(out) = socks.get(&from) else {
                                stats.inc("send_error");
                                continue;
                            };
                            match out.send_to(&bytes, to).await {
                                Ok(_) => stats.inc(match code {
                                    0 if from == local => "success",
                                    0 => "success_changed",
                                    400 => "error_400",
                                    401 => "error_401",
                                    420 => "error_420",
                                    _ => "error_other",
                                }),
                                Err(e) => {
                                    stats.inc("send_error");
                                    log::debug!("STUN {from} -> {to}: {e}");
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();
    log::info!(
        "STUN server on {}",
        bound
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    StunServer {
        tasks,
        bound,
        sockets: (*socks).clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stun::message::{Builder, Class, METHOD_BINDING};

    /// A free port on 127.0.0.1 (and the next one, the alternate port, unused here).
    fn free_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    #[tokio::test]
    async fn one_client_is_answered_at_its_rate_only() {
        let port = free_port();
        let stats = Arc::new(StunStats::default());
        let layout = Layout {
            addrs: vec!["127.0.0.1".parse().expect("addr")],
            alt: None,
            port,
            alt_port: free_port(),
        };
        let _server = start(layout, 10, stats.clone(), None);
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let req = Builder::new(METHOD_BINDING, Class::Request, [7; 12]).finish(true);
        for _ in 0..100 {
            client
                .send_to(&req, ("127.0.0.1", port))
                .await
                .expect("send");
        }
        let mut buf = [0u8; 2048];
        let mut answers = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await
        {
            answers += 1;
        }
        // The burst (10) plus what refills while the requests arrive.
        assert!((10..=15).contains(&answers), "{answers} answers");
        let s = stats.snapshot();
        assert_eq!(
            s.get("rate_limited").copied().unwrap_or(0) + answers,
            100,
            "{s:?}"
        );
    }
}
