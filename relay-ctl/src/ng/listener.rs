//! The ng socket: `<cookie> <bencode dictionary>` datagrams in, `<cookie> <reply>` out, with
//! retransmissions answered from the reply cache.
use std::{net::SocketAddr, sync::Arc, time::Instant};

use tokio::net::UdpSocket;

use crate::events::Event;

use super::{
    MAX_COOKIE, MAX_REPLY_BODY,
    bencode::{self, Value},
    cache::{DEFAULT_CAPACITY, DEFAULT_TTL, ReplyCache},
    commands::Ng,
    reply,
};

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
            ctl.count(Event::NgBadFrames);
            log::debug!("ng: datagram from {from} without a cookie, dropped");
            return None;
        };
        let (cookie, body) = (&datagram[..sp], &datagram[sp + 1..]);
        if cookie.is_empty() || cookie.len() > MAX_COOKIE {
            ctl.count(Event::NgBadFrames);
            log::debug!(
                "ng: datagram from {from} with a {}-byte cookie, dropped",
                cookie.len()
            );
            return None;
        }
        if let Some(cached) = self.cache.get(from, cookie, now) {
            ctl.count(Event::NgRetransmits);
            return Some(frame(cookie, cached));
        }
        let reply = match bencode::decode(body) {
            Ok(v @ Value::Dict(_)) => self.ng.handle(&v),
            Ok(_) => {
                ctl.count(Event::NgBadFrames);
                reply::error("the message is not a bencode dictionary")
            }
            Err(e) => {
                ctl.count(Event::NgBadFrames);
                reply::error(&e.to_string())
            }
        };
        let mut encoded = bencode::encode(&reply);
        if encoded.len() > MAX_REPLY_BODY {
            ctl.count(Event::NgErrors);
            ctl.count(Event::NgErrorInternal);
            log::warn!(
                "ng: a {}-byte reply to {from} does not fit a datagram; answered with an error",
                encoded.len()
            );
            encoded = bencode::encode(&reply::error("the reply does not fit a UDP datagram"));
        }
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

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    use super::*;
    use crate::{
        api::{
            Control, CreateSession, FrontEnd, LatchPolicy, LegView, PortsView, SessionState,
            SessionView, StatsView, StreamView, UpdateSession,
        },
        error::Error,
        ng::{Ng, NgConfig, bencode::DictBuilder},
    };

    /// Records what the ng layer asked of the controller; allocates fake relay ports. The
    /// real controller is exercised by tests/ng_e2e.rs; this one isolates the framing.
    #[derive(Default)]
    struct Recorder {
        created: Mutex<Vec<CreateSession>>,
        live: Mutex<BTreeMap<String, SessionView>>,
        counters: Mutex<BTreeMap<Event, u64>>,
    }

    impl Recorder {
        fn counter(&self, k: Event) -> u64 {
            self.counters
                .lock()
                .map(|c| c.get(&k).copied().unwrap_or(0))
                .unwrap_or(0)
        }
    }

    fn view(req: &CreateSession) -> SessionView {
        let leg = |side: &str, port: u16| LegView {
            side: side.into(),
            relay: SocketAddr::from(([198, 18, 1, 1], port)),
            signalled: None,
            latched: None,
            rtcp_latched: None,
            kernel: false,
            packets_kernel: 0,
            bytes_kernel: 0,
            packets_user: 0,
            bytes_user: 0,
            idle_secs: None,
            relatches: 0,
        };
        SessionView {
            call_id: req.call_id.clone(),
            policy: LatchPolicy::Immediate,
            state: SessionState::Offered,
            created_unix: 0,
            age_secs: 0,
            idle_secs: None,
            streams: (0..req.streams.len())
                .map(|i| StreamView {
                    index: i as u32,
                    media: "audio".into(),
                    shared_port: false,
                    legs: vec![leg("a", 30000), leg("b", 30002)],
                })
                .collect(),
            packets_kernel: 0,
            bytes_kernel: 0,
            packets_user: 0,
            bytes_user: 0,
        }
    }

    fn none(id: &str) -> Error {
        Error::not_found(format!("no session {id:?}"))
    }

    impl Control for Recorder {
        fn sessions(&self) -> Vec<SessionView> {
            self.live
                .lock()
                .map(|l| l.values().cloned().collect())
                .unwrap_or_default()
        }
        fn session(&self, id: &str) -> Result<SessionView, Error> {
            let live = self.live.lock().map_err(|_| Error::internal("poisoned"))?;
            live.get(id).cloned().ok_or_else(|| none(id))
        }
        fn create_session(&self, req: CreateSession, _: FrontEnd) -> Result<SessionView, Error> {
            let v = view(&req);
            if let Ok(mut l) = self.live.lock() {
                l.insert(req.call_id.clone(), v.clone());
            }
            if let Ok(mut c) = self.created.lock() {
                c.push(req);
            }
            Ok(v)
        }
        fn update_session(
            &self,
            id: &str,
            _: UpdateSession,
            _: FrontEnd,
        ) -> Result<SessionView, Error> {
            self.session(id)
        }
        fn delete_session(&self, id: &str, _: FrontEnd) -> Result<SessionView, Error> {
            let mut live = self.live.lock().map_err(|_| Error::internal("poisoned"))?;
            live.remove(id).ok_or_else(|| none(id))
        }
        fn stats(&self) -> Result<StatsView, Error> {
            Err(Error::internal("not recorded"))
        }
        fn ports(&self) -> PortsView {
            PortsView {
                port_min: 0,
                port_max: 0,
                quarantine_secs: 0,
                exhausted: 0,
                pools: vec![],
            }
        }
        fn metrics(&self) -> Result<String, Error> {
            Ok(String::new())
        }
        fn count(&self, name: Event) {
            if let Ok(mut c) = self.counters.lock() {
                *c.entry(name).or_insert(0) += 1;
            }
        }
    }

    fn framing() -> (Arc<Recorder>, Framing) {
        let rec = Arc::new(Recorder::default());
        let ng = Ng::new(rec.clone(), NgConfig::default());
        (rec, Framing::new(Arc::new(ng)))
    }

    fn peer(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn msg(cookie: &str, v: &Value) -> Vec<u8> {
        let mut d = format!("{cookie} ").into_bytes();
        d.extend(bencode::encode(v));
        d
    }

    fn reply_of(cookie: &str, out: &[u8]) -> Value {
        let body = out
            .strip_prefix(format!("{cookie} ").as_bytes())
            .expect("cookie echoed");
        bencode::decode(body).expect("bencode reply")
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";

    fn offer() -> Value {
        DictBuilder::new()
            .str("command", "offer")
            .str("call-id", "c1")
            .str("from-tag", "f")
            .str("sdp", SDP)
            .build()
    }

    #[test]
    fn duplicate_cookie_gets_the_cached_reply_without_a_second_allocation() {
        let (rec, mut f) = framing();
        let t0 = Instant::now();
        let a = f
            .on_datagram(peer(1), &msg("k1", &offer()), t0)
            .expect("reply");
        let b = f
            .on_datagram(peer(1), &msg("k1", &offer()), t0 + Duration::from_secs(1))
            .expect("reply");
        assert_eq!(a, b);
        assert_eq!(rec.created.lock().map(|c| c.len()).unwrap_or(0), 1);
        assert_eq!(rec.counter(Event::NgRetransmits), 1);
        let r = reply_of("k1", &a);
        assert_eq!(r.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(rec.counter(Event::NgCmdOffer), 1);
        // The same cookie from another proxy is a new request: handled (a re-offer of the
        // same media, same ports), not answered from the cache.
        let c = f
            .on_datagram(peer(2), &msg("k1", &offer()), t0)
            .expect("reply");
        assert_eq!(reply_of("k1", &c).get("sdp"), r.get("sdp"));
        assert_eq!(rec.counter(Event::NgCmdOffer), 2);
        assert_eq!(rec.counter(Event::NgReofferSamePorts), 1);
        // After the cache's lifetime the cookie is new again.
        let later = t0 + super::DEFAULT_TTL + Duration::from_secs(1);
        f.on_datagram(peer(1), &msg("k1", &offer()), later)
            .expect("reply");
        assert_eq!(rec.counter(Event::NgCmdOffer), 3);
        assert_eq!(rec.created.lock().map(|c| c.len()).unwrap_or(0), 1);
    }

    #[test]
    fn list_of_more_calls_than_a_datagram_holds_still_gets_a_reply() {
        let (rec, mut f) = framing();
        // 600 calls with 200-byte ids: about 121 KB of ids, twice what a datagram carries.
        for i in 0..600 {
            let id = format!("{i:04}{}", "x".repeat(196));
            let req = CreateSession {
                call_id: id,
                policy: None,
                answered: None,
                streams: vec![Default::default()],
            };
            rec.create_session(req, FrontEnd::Ng).expect("recorded");
        }
        let list = DictBuilder::new()
            .str("command", "list")
            .put("limit", Value::Int(100_000))
            .build();
        let cookie = "x".repeat(MAX_COOKIE);
        let out = f
            .on_datagram(peer(1), &msg(&cookie, &list), Instant::now())
            .expect("a reply");
        assert!(out.len() <= 65_507, "{} bytes cannot be sent", out.len());
        let r = reply_of(&cookie, &out);
        assert_eq!(r.get("result").and_then(Value::as_str), Some("ok"));
        let Some(Value::List(calls)) = r.get("calls") else {
            panic!("no calls list: {r:?}");
        };
        // Cut to what fits, not to a handful: 204 bytes per entry in a 65,378-byte budget.
        assert!((300..600).contains(&calls.len()), "{} calls", calls.len());
    }

    #[test]
    fn framing_errors() {
        let (rec, mut f) = framing();
        let t = Instant::now();
        assert_eq!(f.on_datagram(peer(1), b"nocookie", t), None);
        assert_eq!(
            f.on_datagram(peer(1), b" d4:pingi1ee", t),
            None,
            "empty cookie"
        );
        let long = format!("{} d7:command4:pinge", "x".repeat(MAX_COOKIE + 1));
        assert_eq!(f.on_datagram(peer(1), long.as_bytes(), t), None);
        assert_eq!(rec.counter(Event::NgBadFrames), 3);
        let r = f.on_datagram(peer(1), b"c i1e", t).expect("reply");
        let r = reply_of("c", &r);
        assert_eq!(r.get("result").and_then(Value::as_str), Some("error"));
        let r = f.on_datagram(peer(1), b"c2 d7:command", t).expect("reply");
        let r = reply_of("c2", &r);
        assert!(
            r.get("error-reason")
                .and_then(Value::as_str)
                .is_some_and(|e| e.contains("bencode"))
        );
        // A cookie may be anything but a space; the reply echoes it byte for byte.
        let ping = bencode::encode(&DictBuilder::new().str("command", "ping").build());
        let mut d = b"\xff\x00ab ".to_vec();
        d.extend(&ping);
        let out = f.on_datagram(peer(1), &d, t).expect("reply");
        assert!(out.starts_with(b"\xff\x00ab d6:result4:ponge"));
        assert_eq!(rec.counter(Event::NgCmdPing), 1);
    }

    #[test]
    fn savp_passes_through_with_its_crypto_lines() {
        let (rec, mut f) = framing();
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n\
m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
        let req = DictBuilder::new()
            .str("command", "offer")
            .str("call-id", "srtp")
            .str("from-tag", "f")
            .str("sdp", sdp)
            .str("transport-protocol", "RTP/SAVP")
            .build();
        let out = f
            .on_datagram(peer(1), &msg("p", &req), Instant::now())
            .expect("reply");
        let r = reply_of("p", &out);
        let got = r.get("sdp").and_then(Value::as_str).expect("sdp");
        assert_eq!(
            got,
            sdp.replace("c=IN IP4 192.0.2.2", "c=IN IP4 198.18.1.1")
                .replace("m=audio 5004", "m=audio 30002"),
            "only c= and the port change (no origin replacement asked); RTP/SAVP and a=crypto pass"
        );
        assert_eq!(rec.created.lock().map(|c| c.len()).unwrap_or(0), 1);
    }

    #[test]
    fn a_call_whose_session_expired_is_offered_afresh() {
        let (rec, mut f) = framing();
        let t = Instant::now();
        f.on_datagram(peer(1), &msg("e1", &offer()), t)
            .expect("reply");
        // The controller expires the session (timeouts) behind the ng layer's back.
        rec.delete_session("c1", FrontEnd::Ng).expect("live");
        let out = f
            .on_datagram(peer(1), &msg("e2", &offer()), t)
            .expect("reply");
        let r = reply_of("e2", &out);
        assert_eq!(r.get("result").and_then(Value::as_str), Some("ok"), "{r:?}");
        assert_eq!(rec.created.lock().map(|c| c.len()).unwrap_or(0), 2);
    }

    #[test]
    fn malformed_sdp_allocates_nothing() {
        let (rec, mut f) = framing();
        let bad = DictBuilder::new()
            .str("command", "offer")
            .str("call-id", "c1")
            .str("from-tag", "f")
            .str("sdp", "v=0\r\nthis is not sdp\r\n")
            .build();
        let out = f
            .on_datagram(peer(1), &msg("s", &bad), Instant::now())
            .expect("reply");
        let r = reply_of("s", &out);
        assert!(
            r.get("error-reason")
                .and_then(Value::as_str)
                .is_some_and(|e| e.contains("SDP")),
            "{r:?}"
        );
        assert!(rec.created.lock().map(|c| c.is_empty()).unwrap_or(false));
        assert_eq!(rec.counter(Event::NgErrorSdp), 1);
    }
}
