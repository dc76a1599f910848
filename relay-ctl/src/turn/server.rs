//! The TURN server's sockets and tasks: a UDP socket on the TURN port of every relay address
//! (or the STUN server's sockets when the two share a port, through `stun::server::Delegate`),
//! the packets the steered receive sockets get for relayed addresses (through
//! `sessions::turn::RelayedSink`), and a sweeper that expires allocations, permissions and
//! channels every second. Everything goes through one [`Core`] behind a mutex; sends happen
//! after it is released.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::Duration,
};

use tokio::net::UdpSocket;

use super::{
    TurnEvent as Ev, TurnStats,
    allocation::{FiveTuple, Transport},
    attrs::{looks_like_channel_data, stream_frame_len},
    handler::{Core, Now, Out},
    view::{TurnView, allocation_view},
};
use crate::{ratelimit::PerSource, sessions::turn::RelayedSink, udp};

/// TCP/TLS connections at once (each holds a task, buffers and possibly an allocation).
pub const MAX_STREAMS: usize = 4096;
/// A connection with no allocation this long after it opened is closed.
pub const STREAM_IDLE: Duration = Duration::from_secs(30);
/// Messages queued to one stream client before more are dropped (a slow reader).
const STREAM_QUEUE: usize = 512;

pub struct TurnServer {
    core: Mutex<Core>,
    socks: RwLock<HashMap<SocketAddr, Arc<UdpSocket>>>,
    /// The writers of TCP/TLS clients, by 5-tuple.
    streams: Mutex<HashMap<FiveTuple, tokio::sync::mpsc::Sender<Vec<u8>>>>,
    stream_slots: Arc<tokio::sync::Semaphore>,
    /// [`STREAM_IDLE`], shorter in tests.
    stream_idle: Duration,
    limit: PerSource,
    pub stats: Arc<TurnStats>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        for t in self
            .tasks
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// STUN's message method, from the type field (`None`: not a STUN header).
fn stun_method(b: &[u8]) -> Option<u16> {
    let t = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    if t & 0xc000 != 0 {
        return None;
    }
    Some((t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80))
}

impl TurnServer {
    /// `rate`: STUN-format requests per second per source address (0: no limit).
    pub fn new(core: Core, rate: u32) -> Arc<TurnServer> {
        Self::with_stream_idle(core, rate, STREAM_IDLE)
    }

    /// [`TurnServer::new`] closing allocation-less streams after `stream_idle`.
    pub fn with_stream_idle(core: Core, rate: u32, stream_idle: Duration) -> Arc<TurnServer> {
        let stats = core.stats.clone();
        Arc::new(TurnServer {
            core: Mutex::new(core),
            socks: RwLock::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            stream_slots: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            stream_idle,
            limit: PerSource::new(rate),
            stats,
            tasks: Mutex::new(vec![]),
        })
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bind `addrs` and serve them; returns those bound (the rest are logged and counted).
    pub fn listen_udp(self: &Arc<Self>, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut bound = vec![];
        for &addr in addrs {
            let sock = std::net::UdpSocket::bind(addr).and_then(|s| {
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s)
            });
            match sock {
                Ok(s) => {
                    let s = Arc::new(s);
                    self.adopt(addr, s.clone());
                    let me = Arc::downgrade(self);
                    let task = tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_536];
                        loop {
                            let r = s.recv_from(&mut buf).await;
                            let Some(me) = me.upgrade() else { return };
                            match r {
                                Ok((n, client)) => me.on_datagram(addr, client, &buf[..n]),
                                Err(e) => {
                                    log::debug!("TURN {addr}: {e}");
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                            }
                        }
                    });
                    self.tasks
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(task);
                    bound.push(addr);
                }
                Err(e) => {
                    self.stats.inc(Ev::BindError);
                    log::warn!("TURN: cannot listen on {addr}: {e}");
                }
            }
        }
        bound
    }

    /// Answer from `sock` for clients that reach us at `local` (a socket another server reads,
    /// e.g. the STUN server's on a shared port).
    pub fn adopt(&self, local: SocketAddr, sock: Arc<UdpSocket>) {
        self.socks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(local, sock);
    }

    /// Expire what is over, every second.
    pub fn start_sweeper(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                me.core().sweep(Now::system());
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// A UDP datagram from `client` to our `local` address.
    pub fn on_datagram(&self, local: SocketAddr, client: SocketAddr, b: &[u8]) {
        // Requests answer to the (possibly spoofed) source: limited per source. ChannelData
        // and indications answer nobody; the bandwidth limit covers them.
        if looks_like_request(b) && !self.limit.allow(client.ip(), std::time::Instant::now()) {
            self.stats.inc(Ev::DropRateLimited);
            return;
        }
        let five = FiveTuple {
            client,
            server: local,
            transport: Transport::Udp,
        };
        let out = self.core().from_client(five, b, Now::system());
        if let Some(o) = out {
            self.send(o);
        }
    }

    fn send(&self, o: Out) {
        let r = match o {
            Out::Client { five, bytes } if five.transport != Transport::Udp => {
                let tx = self
                    .streams
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&five)
                    .cloned();
                match tx {
                    Some(tx) => tx
                        .try_send(bytes)
                        .map_err(|e| std::io::Error::other(e.to_string())),
                    None => Err(std::io::Error::other("connection gone")),
                }
                .map_err(|e| (five.server, five.client, e))
            }
            Out::Client { five, bytes } => {
                let sock = self
                    .socks
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&five.server)
                    .cloned();
                match sock {
                    Some(s) => s.try_send_to(&bytes, five.client).map(|_| ()),
                    None => Err(std::io::Error::other("no socket")),
                }
                .map_err(|e| (five.server, five.client, e))
            }
            Out::Peer { from, to, bytes } => udp::send_from(from, to, &bytes)
                .map(|_| ())
                .map_err(|e| (from, to, e)),
        };
        if let Err((from, to, e)) = r {
            self.stats.inc(Ev::DropSendError);
            log::debug!("TURN {from} -> {to}: {e}");
        }
    }

    /// Accept TCP clients on `addrs` (TLS with `tls`); returns those bound.
    pub fn listen_tcp(
        self: &Arc<Self>,
        addrs: &[SocketAddr],
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Vec<SocketAddr> {
        let transport = if tls.is_some() {
            Transport::Tls
        } else {
            Transport::Tcp
        };
        let mut bound = vec![];
        for &addr in addrs {
            let l = std::net::TcpListener::bind(addr).and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            });
            let listener = match l {
                Ok(l) => l,
                Err(e) => {
                    self.stats.inc(Ev::BindError);
                    log::warn!("TURN: cannot listen on {} {addr}: {e}", transport.as_str());
                    continue;
                }
            };
            let me = Arc::downgrade(self);
            let slots = self.stream_slots.clone();
            let tls = tls.clone();
            let task = tokio::spawn(async move {
                loop {
                    let (stream, client) = match listener.accept().await {
                        Ok(c) => c,
                        Err(e) => {
                            log::debug!("TURN {addr}: accept: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let Some(srv) = me.upgrade() else { return };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        srv.stats.inc(Ev::DropTooManyStreams);
                        continue;
                    };
                    let five = FiveTuple {
                        client,
                        server: addr,
                        transport,
                    };
                    let me = me.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        let _ = stream.set_nodelay(true);
                        match tls {
                            None => serve_stream(me, stream, five).await,
                            Some(acceptor) => {
                                let idle = me.upgrade().map_or(STREAM_IDLE, |s| s.stream_idle);
                                let hs = tokio::time::timeout(idle, acceptor.accept(stream));
                                match hs.await {
                                    Ok(Ok(s)) => serve_stream(me, s, five).await,
                                    _ => {
                                        if let Some(srv) = me.upgrade() {
                                            srv.stats.inc(Ev::DropTlsHandshake);
                                        }
                                    }
                                }
                            }
                        }
                    });
                }
            });
            self.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(task);
            bound.push(addr);
        }
        bound
    }

    fn has_allocation(&self, five: &FiveTuple) -> bool {
        self.core().table.get(five).is_some()
    }

    pub fn view(&self) -> TurnView {
        let core = self.core();
        let now = crate::clock::now_ns();
        let mut allocations: Vec<_> = core
            .table
            .iter()
            .map(|a| allocation_view(a, core.resources(), now))
            .collect();
        allocations.sort_by(|a, b| (&a.user, &a.client).cmp(&(&b.user, &b.client)));
        TurnView { allocations }
    }

    /// Gauges for the metrics: allocations, permissions, channels.
    pub fn gauges(&self) -> (usize, usize, usize) {
        let core = self.core();
        let (mut p, mut c) = (0, 0);
        for a in core.table.iter() {
            p += a.permissions.len();
            c += a.channels.len();
        }
        (core.table.len(), p, c)
    }

    /// Remove every allocation's kernel entries and give back its ports (daemon exit).
    pub fn shutdown(&self) {
        self.core().shutdown(Now::system());
    }
}

/// One TCP/TLS client: frames in (STUN messages and ChannelData, section 3.1) through the
/// core, answers out through a queue and a writer task. The allocation ends with the stream.
async fn serve_stream<S>(me: std::sync::Weak<TurnServer>, stream: S, five: FiveTuple)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    {
        let Some(srv) = me.upgrade() else { return };
        srv.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(five, tx);
    }
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let opened = std::time::Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let Some(idle) = me.upgrade().map(|s| s.stream_idle) else {
        return;
    };
    let tick = idle.min(Duration::from_secs(1));
    'conn: loop {
        let n = match tokio::time::timeout(tick, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => 0,
        };
        let Some(srv) = me.upgrade() else { break };
        if n == 0 {
            // Idle tick: a connection that never allocated is not kept.
            if opened.elapsed() > idle && !srv.has_allocation(&five) {
                srv.stats.inc(Ev::DropIdleStream);
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let len = match stream_frame_len(&buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(super::attrs::NotAFrame) => {
                    srv.stats.inc(Ev::DropMalformed);
                    break 'conn;
                }
            };
            if buf.len() < len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..len).collect();
            let is_request = looks_like_request(&frame);
            if is_request && !srv.limit.allow(five.client.ip(), std::time::Instant::now()) {
                srv.stats.inc(Ev::DropRateLimited);
                continue;
            }
            let out = srv.core().from_client(five, &frame, Now::system());
            if let Some(o) = out {
                srv.send(o);
            }
        }
    }
    if let Some(srv) = me.upgrade() {
        srv.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&five);
        srv.core().connection_closed(five, Now::system());
    }
    writer.abort();
}

/// A STUN request (class bits 00), by its first two bytes.
fn looks_like_request(b: &[u8]) -> bool {
    stun_method(b).is_some()
        && b.first().is_some_and(|x| x & 0x01 == 0)
        && b.get(1).is_some_and(|x| x & 0x10 == 0)
}

impl RelayedSink for TurnServer {
    fn on_relayed(&self, relayed: SocketAddr, src: SocketAddr, pkt: &[u8]) -> bool {
        let out = self.core().from_peer(relayed, src, pkt, Now::system());
        match out {
            Err(_) => false,
            Ok(o) => {
                if let Some(o) = o {
                    self.send(o);
                }
                true
            }
        }
    }
}

impl crate::stun::server::Delegate for TurnServer {
    fn wants(&self, b: &[u8]) -> bool {
        looks_like_channel_data(b) || stun_method(b).is_some_and(|m| m != 0x001)
    }

    fn handle(&self, local: SocketAddr, client: SocketAddr, b: &[u8]) {
        self.on_datagram(local, client, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_from_the_type_field() {
        assert_eq!(stun_method(&[0x00, 0x01]), Some(1));
        assert_eq!(stun_method(&[0x01, 0x11]), Some(1));
        assert_eq!(stun_method(&[0x00, 0x03]), Some(3));
        assert_eq!(stun_method(&[0x00, 0x16]), Some(6));
        assert_eq!(stun_method(&[0x00, 0x09]), Some(9));
        assert_eq!(stun_method(&[0x40, 0x00]), None);
        assert_eq!(stun_method(&[0x00]), None);
    }
}
