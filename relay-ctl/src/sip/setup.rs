//! Seed 003's session set-up module (FIG. 10) on top of the session controller: a relay
//! server invite gets a port per media kind and a 302 naming them; an OK's SDP fills the
//! second channel; BYE frees the ports. The media relaying itself (FIG. 11) is the
//! controller's alternate latching policy and, once latched, XDP.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use log::{info, warn};

use super::{
    admission::{Admission, Refused},
    media::{self, Kind, Offered},
    message::{Message, SipError, response},
    routable::{Prefix, is_routable},
};
use crate::{
    api::{
        Control, CreateSession, FrontEnd, LatchPolicy, PeerUpdate, SessionView, SideRequest,
        StreamRequest, StreamUpdate, UpdateSession,
    },
    error::{Error, ErrorKind},
    events::Event,
};

/// The controller's error kinds as SIP final responses (RFC 3261 21.x), with the event that
/// counts each.
fn failure(kind: ErrorKind) -> (u16, Event) {
    match kind {
        // Try later, or another relay.
        ErrorKind::Exhausted => (503, Event::SipErrNoResource),
        // Call/Transaction Does Not Exist.
        ErrorKind::NotFound => (481, Event::SipErrUnknownSession),
        // Not Acceptable Here: the offer cannot be relayed as asked.
        ErrorKind::Invalid | ErrorKind::Conflict => (488, Event::SipErrRejected),
        ErrorKind::Internal => (500, Event::SipErrRejected),
    }
}

/// RFC 3261 17.2.1: a server transaction answers retransmissions for 64*T1 = 32 s after
/// its final response; we keep the 302 that long.
const RETRANSMIT_WINDOW: Duration = Duration::from_secs(32);
/// Bound on remembered responses, whatever the request rate.
const CACHE_MAX: usize = 65_536;
const ALLOW: &str = "INVITE, ACK, BYE, OPTIONS";

#[derive(Clone, Debug)]
pub struct SetupConfig {
    /// Addresses that are not kept as an IP channel (client behind a NAT: learn by latching).
    pub private: Vec<Prefix>,
    /// The SIP port we listen on (for the 302's Contact).
    pub sip_port: u16,
    /// Sources (the proxies) that may use the interface.
    pub allow: Vec<Prefix>,
    /// Requests per second per source (and burst); 0: no limit.
    pub rate: u32,
}

/// A server transaction: session id, CSeq number and the top Via branch.
type TxKey = (String, u32, String);

pub struct SessionSetup {
    control: Arc<dyn Control>,
    cfg: SetupConfig,
    admission: Admission,
    sent: Mutex<HashMap<TxKey, (Instant, Vec<u8>)>>,
}

impl SessionSetup {
    pub fn new(control: Arc<dyn Control>, cfg: SetupConfig) -> SessionSetup {
        SessionSetup {
            control,
            admission: Admission::new(cfg.allow.clone(), cfg.rate),
            cfg,
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a datagram from `from` may be handled at all (allow list and rate; refusals
    /// counted). Checked on the receive loop, before any work is queued for it.
    pub fn admit(&self, from: IpAddr) -> bool {
        if let Err(why) = self.admission.admit(from, Instant::now()) {
            let (event, text) = match why {
                Refused::NotAllowed => (Event::SipErrNotAllowed, "not in --sip-allow"),
                Refused::RateLimited => (Event::SipErrRateLimited, "over --sip-rate"),
            };
            self.count(event);
            crate::log_limited!(
                log::Level::Warn,
                "sip refused source",
                "sip: request from {from} dropped: {text}"
            );
            return false;
        }
        true
    }

    /// Handle one admitted datagram that arrived on `local` (one of the relay's addresses);
    /// returns the reply to send to its source, if any.
    pub fn handle(&self, datagram: &[u8], local: IpAddr) -> Option<Vec<u8>> {
        let msg = match Message::parse(datagram) {
            Ok(m) => m,
            Err(e) => return self.refuse_silently(&e),
        };
        // A request we could not answer is dropped before it allocates, changes or deletes
        // anything (its sender would never learn the outcome).
        if msg.method.is_some()
            && let Err(e) = msg.answerable()
        {
            return self.refuse_silently(&e);
        }
        match (msg.method.as_deref(), msg.status) {
            (Some("INVITE"), _) => {
                self.count(Event::SipRxInvite);
                self.invite(&msg, local)
            }
            (Some("BYE"), _) => {
                self.count(Event::SipRxBye);
                self.bye(&msg)
            }
            // The ACK of our 302 (RFC 3261 17.1.1.3) ends the transaction: nothing to do.
            (Some("ACK"), _) => {
                self.count(Event::SipRxAck);
                None
            }
            // Proxies ping their relays with OPTIONS to see they are alive.
            (Some("OPTIONS"), _) => {
                self.count(Event::SipRxOptions);
                self.reply(&msg, 200, &[("Allow", ALLOW.into())], None)
            }
            (Some(other), _) => {
                self.count(Event::SipErrMethod);
                crate::log_limited!(
                    log::Level::Warn,
                    "sip method",
                    "sip: {other} not supported here (405)"
                );
                self.reply(&msg, 405, &[("Allow", ALLOW.into())], None)
            }
            (None, Some(200)) => {
                self.count(Event::SipRxOk);
                self.ok(&msg);
                None
            }
            (None, _) => {
                self.count(Event::SipRxOtherResponse);
                None
            }
        }
    }

    fn count(&self, name: Event) {
        self.control.count(name);
    }

    fn refuse_silently(&self, e: &SipError) -> Option<Vec<u8>> {
        self.count(e.event());
        crate::log_limited!(log::Level::Warn, "sip dropped", "sip: dropped: {e}");
        None
    }

    fn reply(
        &self,
        req: &Message,
        status: u16,
        extra: &[(&str, String)],
        sdp: Option<&[u8]>,
    ) -> Option<Vec<u8>> {
        // A stable To tag per session, so retransmitted and later responses agree.
        let tag = req
            .session_id()
            .map(|id| format!("{:08x}", fnv32(id.as_bytes())))
            .unwrap_or_else(|_| "0".into());
        match response(req, status, &tag, extra, sdp) {
            Ok(r) => {
                self.count(match status {
                    200..=299 => Event::SipTx2xx,
                    300..=399 => Event::SipTx3xx,
                    400..=499 => Event::SipTx4xx,
                    _ => Event::SipTx5xx,
                });
                Some(r)
            }
            Err(e) => self.refuse_silently(&e),
        }
    }

    /// An error response with the reason in a Warning header (RFC 3261 20.43, code 399:
    /// miscellaneous), which proxies log.
    fn fail(&self, req: &Message, status: u16, counter: Event, why: &str) -> Option<Vec<u8>> {
        self.count(counter);
        match req.session_id() {
            Ok(call_id) => crate::log_limited!(
                log::Level::Warn,
                "sip failure",
                call_id = call_id.as_str();
                "sip: {status}: {why}"
            ),
            Err(_) => crate::log_limited!(log::Level::Warn, "sip failure", "sip: {status}: {why}"),
        }
        let warning = format!("399 media-relay \"{}\"", why.replace('"', "'"));
        let mut extra = vec![("Warning", warning)];
        if status == 503 {
            extra.push(("Retry-After", "5".into()));
        }
        self.reply(req, status, &extra, None)
    }

    /// FIG. 10, steps 60-68.
    fn invite(&self, req: &Message, local: IpAddr) -> Option<Vec<u8>> {
        let (id, cseq) = match (req.session_id(), req.cseq()) {
            (Ok(id), Ok((n, _))) => (id, n),
            (Err(e), _) | (_, Err(e)) => return self.refuse_silently(&e),
        };
        let key: TxKey = (id.clone(), cseq, req.branch().unwrap_or("").to_owned());
        if let Some(r) = self.cached(&key) {
            self.count(Event::SipRetransmissions);
            self.count(Event::SipTx3xx);
            return Some(r);
        }
        if !req.has_sdp() {
            return self.fail(
                req,
                400,
                Event::SipErrNoSdp,
                "relay server invite without SDP",
            );
        }
        let offered = match media::offered(&req.body) {
            Ok(o) => o,
            Err(e) => return self.fail(req, 488, e.event(), &e.to_string()),
        };
        let session = match self.control.session(&id) {
            // A second invite for a live session (re-INVITE through the proxy): same
            // resource, new first channel if it names one.
            Ok(s) => self.reinvite(&s, &offered),
            Err(_) => self.allocate(&id, &offered, local),
        };
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                let (status, event) = failure(e.kind);
                return self.fail(req, status, event, &e.message);
            }
        };
        // Step 66: the response's SDP names the relay resource, one port per media kind.
        let mut streams = vec![];
        for (o, s) in offered.iter().zip(&session.streams) {
            let Some(leg) = s.legs.first() else { continue };
            streams.push((o.clone(), leg.relay.port()));
        }
        let relay = session
            .streams
            .first()
            .and_then(|s| s.legs.first())
            .map_or(local, |l| l.relay.ip());
        let sdp = media::relay_sdp(relay, session.created_unix, &streams);
        let contact = format!("<sip:relay@{}:{}>", fmt_host(local), self.cfg.sip_port);
        // Step 68: send it to the proxy that asked.
        let out = self.reply(req, 302, &[("Contact", contact)], Some(&sdp))?;
        self.remember(key, out.clone());
        Some(out)
    }

    fn routable(&self, o: &Offered) -> Option<std::net::SocketAddr> {
        o.addr.filter(|a| is_routable(a.ip(), &self.cfg.private))
    }

    /// The RTCP address to record with a routable RTP address.
    fn routable_rtcp(&self, o: &Offered) -> Option<std::net::SocketAddr> {
        self.routable(o).and(o.rtcp)
    }

    /// Steps 62 and 64: "assigning an audio port number and/or, if applicable a video port
    /// number to the session" and "writing the session ID, the assigned port, and optionally
    /// the first IP channel (from the SDP payload of the relay server invite message 202) to
    /// a new record 57 in the session table 46". One shared port per stream is the seed's
    /// relay (both channels use it), which is the controller's alternate policy.
    fn allocate(&self, id: &str, offered: &[Offered], local: IpAddr) -> Result<SessionView, Error> {
        let req = CreateSession {
            call_id: id.to_owned(),
            policy: Some(LatchPolicy::Alternate),
            answered: Some(false),
            streams: offered
                .iter()
                .map(|o| StreamRequest {
                    media: Some(o.kind.as_str().to_owned()),
                    a: SideRequest {
                        peer: self.routable(o),
                        rtcp_peer: self.routable_rtcp(o),
                        relay_addr: Some(local),
                    },
                    b: SideRequest {
                        peer: None,
                        rtcp_peer: None,
                        relay_addr: Some(local),
                    },
                })
                .collect(),
        };
        let s = self.control.create_session(req, FrontEnd::Sip)?;
        self.count(Event::SipSessionsCreated);
        info!(
            call_id = id;
            "sip: session {id}: relay {} ({} stream(s))",
            s.streams
                .iter()
                .filter_map(|st| st.legs.first().map(|l| format!("{} {}", st.media, l.relay)))
                .collect::<Vec<_>>()
                .join(", "),
            s.streams.len()
        );
        Ok(s)
    }

    fn reinvite(&self, s: &SessionView, offered: &[Offered]) -> Result<SessionView, Error> {
        let kinds: Vec<&str> = offered.iter().map(|o| o.kind.as_str()).collect();
        let have: Vec<&str> = s.streams.iter().map(|st| st.media.as_str()).collect();
        if kinds != have {
            return Err(Error::invalid(format!(
                "session {} relays {} and cannot change to {}: BYE it and invite again",
                s.call_id,
                have.join("+"),
                kinds.join("+")
            )));
        }
        self.count(Event::SipReinvites);
        let update = UpdateSession {
            streams: offered
                .iter()
                .map(|o| {
                    self.routable(o).map(|peer| StreamUpdate {
                        a: Some(PeerUpdate {
                            peer: Some(peer),
                            rtcp_peer: self.routable_rtcp(o),
                        }),
                        b: None,
                    })
                })
                .collect(),
            answered: Some(s.state == crate::api::SessionState::Answered),
        };
        self.control
            .update_session(&s.call_id, update, FrontEnd::Sip)
    }

    /// "the relay server may receive an OK message that includes SDP payload that
    /// identifies the IP address and port for the second IP channel 54. The session set up
    /// module further writes such IP channel to the applicable record of the session table."
    fn ok(&self, msg: &Message) {
        let id = match msg.session_id() {
            Ok(id) => id,
            Err(e) => {
                self.refuse_silently(&e);
                return;
            }
        };
        if !matches!(msg.cseq(), Ok((_, ref m)) if m == "INVITE") || !msg.has_sdp() {
            self.count(Event::SipRxOtherResponse);
            return;
        }
        let session = match self.control.session(&id) {
            Ok(s) => s,
            Err(_) => {
                self.count(Event::SipErrUnknownSession);
                warn!(call_id = id.as_str(); "sip: OK for unknown session {id}");
                return;
            }
        };
        let offered = match media::offered(&msg.body) {
            Ok(o) => o,
            Err(e) => {
                self.count(e.event());
                warn!(call_id = id.as_str(); "sip: OK for session {id}: {e}");
                return;
            }
        };
        let streams = session
            .streams
            .iter()
            .map(|st| {
                let kind = if st.media == "video" {
                    Kind::Video
                } else {
                    Kind::Audio
                };
                offered.iter().find(|o| o.kind == kind).and_then(|o| {
                    self.routable(o).map(|peer| StreamUpdate {
                        a: None,
                        b: Some(PeerUpdate {
                            peer: Some(peer),
                            rtcp_peer: self.routable_rtcp(o),
                        }),
                    })
                })
            })
            .collect();
        let update = UpdateSession {
            streams,
            answered: Some(true),
        };
        match self.control.update_session(&id, update, FrontEnd::Sip) {
            Ok(_) => info!(call_id = id.as_str(); "sip: session {id} answered"),
            Err(e) => {
                self.count(Event::SipErrRejected);
                warn!(call_id = id.as_str(); "sip: OK for session {id}: {e}");
            }
        }
    }

    fn bye(&self, req: &Message) -> Option<Vec<u8>> {
        let id = match req.session_id() {
            Ok(id) => id,
            Err(e) => return self.refuse_silently(&e),
        };
        match self.control.delete_session(&id, FrontEnd::Sip) {
            Ok(_) => {
                self.forget(&id);
                self.count(Event::SipSessionsDeleted);
                self.reply(req, 200, &[], None)
            }
            Err(e) => {
                let (status, event) = failure(e.kind);
                self.fail(req, status, event, &e.message)
            }
        }
    }

    fn cached(&self, key: &TxKey) -> Option<Vec<u8>> {
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.get(key)
            .filter(|(t, _)| t.elapsed() < RETRANSMIT_WINDOW)
            .map(|(_, r)| r.clone())
    }

    fn remember(&self, key: TxKey, reply: Vec<u8>) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if sent.len() >= CACHE_MAX {
            sent.retain(|_, (t, _)| t.elapsed() < RETRANSMIT_WINDOW);
        }
        if sent.len() < CACHE_MAX {
            sent.insert(key, (Instant::now(), reply));
        }
    }

    fn forget(&self, id: &str) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        sent.retain(|(s, _, _), _| s != id);
    }
}

fn fmt_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// FNV-1a: a short stable tag from the session id (not a secret).
fn fnv32(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
    })
}
