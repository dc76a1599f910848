//! Sockets of the STUN server: one per (address, port) of the [`Layout`], each with a task
//! that answers through [`handler::answer`] and sends from the socket the answer names
//! (CHANGE-REQUEST replies leave from the other address or port).
use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use tokio::net::UdpSocket;

use super::{
    StunStats,
    handler::{self, Answer, Layout},
};

/// The running server; dropping it stops its tasks.
pub struct StunServer {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub bound: Vec<SocketAddr>,
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
pub fn start(layout: Layout, stats: Arc<StunStats>) -> StunServer {
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
            let (socks, layout, stats) = (socks.clone(), layout.clone(), stats.clone());
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
    StunServer { tasks, bound }
}
