//! The ng socket: `<cookie> <bencode dictionary>` datagrams in, `<cookie> <reply>` out, with
//! retransmissions answered from the reply cache.
use std::{net::SocketAddr, sync::Arc, time::Instant};

use tokio::net::UdpSocket;

use super::{
    bencode::{self, Value},
    cache::{DEFAULT_CAPACITY, DEFAULT_TTL, ReplyCache},
    commands::Ng,
    reply,
};

/// Largest cookie we accept (rtpengine's clients use a few dozen bytes).
pub const MAX_COOKIE: usize = 128;
/// Largest datagram we read: an ng message with an SDP body fits easily.
pub const MAX_DATAGRAM: usize = 65_535;

/// Everything about one datagram except the socket: unit-testable framing.
pub struct Framing {
    ng: Arc<Ng>,
    cache: ReplyCache,
}

impl Framing {
    pub fn new(ng: Arc<Ng>) -> Framing {
        Framing {
            ng,
            cache: ReplyCache::new(DEFAULT_TTL, DEFAULT_CAPACITY),
        }
    }

    /// The reply to `datagram` from `from`, or `None` if it has no cookie to reply with.
    pub fn on_datagram(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Option<Vec<u8>> {
        let ctl = self.ng.control().clone();
        let Some(sp) = datagram.iter().position(|&b| b == b' ') else {
            ctl.count("ng_bad_frames", 1);
            log::debug!("ng: datagram from {from} without a cookie, dropped");
            return None;
        };
        let (cookie, body) = (&datagram[..sp], &datagram[sp + 1..]);
        if cookie.is_empty() || cookie.len() > MAX_COOKIE {
            ctl.count("ng_bad_frames", 1);
            log::debug!(
                "ng: datagram from {from} with a {}-byte cookie, dropped",
                cookie.len()
            );
            return None;
        }
        if let Some(cached) = self.cache.get(from, cookie, now) {
            ctl.count("ng_retransmits", 1);
            return Some(frame(cookie, cached));
        }
        let reply = match bencode::decode(body) {
            Ok(v @ Value::Dict(_)) => self.ng.handle(&v),
            Ok(_) => {
                ctl.count("ng_bad_frames", 1);
                reply::error("the message is not a bencode dictionary")
            }
            Err(e) => {
                ctl.count("ng_bad_frames", 1);
                reply::error(&e.to_string())
            }
        };
        let encoded = bencode::encode(&reply);
        let out = frame(cookie, &encoded);
        self.cache.put(from, cookie, encoded, now);
        Some(out)
    }
}

fn frame(cookie: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 1 + body.len());
    out.extend_from_slice(cookie);
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// Serve ng on `sock` until the task is dropped. Requests are handled one at a time, in
/// arrival order: each is a short controller call, and ordering makes a retransmission
/// always find its original's reply.
pub async fn serve(sock: UdpSocket, ng: Arc<Ng>) {
    let addr = sock
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    log::info!("ng control protocol listening on udp:{addr}");
    let mut framing = Framing::new(ng);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("ng socket {addr}: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(out) = framing.on_datagram(from, &buf[..n], Instant::now()) else {
            continue;
        };
        if let Err(e) = sock.send_to(&out, from).await {
            log::warn!("ng reply to {from}: {e}");
        }
    }
}
