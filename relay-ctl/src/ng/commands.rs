//! The ng commands over the session controller: an ng call (call-id, from-tag, to-tag) is one
//! controller session whose id is the call-id; each active m= section is one stream; the
//! offerer (the from-tag of the first offer) is side A, the answerer side B.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use super::{
    bencode::{DictBuilder, Value},
    reply,
    request::{self, Options},
};
use crate::{
    api::{
        Control, CreateSession, FrontEnd, LatchPolicy, PeerUpdate, SessionView, SideRequest,
        StreamRequest, StreamUpdate, UpdateSession,
    },
    clock::unix_now,
    error::{Error, ErrorKind},
    events::Event,
    sdp::{MediaPlan, Plan, Sdp},
};

/// An ng error: the reason goes to the proxy (`error-reason`), the kind to a counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NgError {
    pub counter: Event,
    pub reason: String,
}

impl NgError {
    fn new(counter: Event, reason: impl Into<String>) -> NgError {
        NgError {
            counter,
            reason: reason.into(),
        }
    }
    fn missing(key: &str) -> NgError {
        NgError::new(Event::NgErrorMissingKey, format!("missing key {key:?}"))
    }
    fn unknown_call(call_id: &str) -> NgError {
        NgError::new(
            Event::NgErrorUnknownCall,
            format!("Unknown call-id {call_id:?}"),
        )
    }
}

/// The controller's error kinds as ng error reasons (counted by kind).
impl From<Error> for NgError {
    fn from(e: Error) -> NgError {
        let counter = match e.kind {
            ErrorKind::Exhausted => Event::NgErrorResources,
            ErrorKind::NotFound => Event::NgErrorUnknownCall,
            ErrorKind::Invalid | ErrorKind::Conflict => Event::NgErrorRejected,
            ErrorKind::Internal => Event::NgErrorInternal,
        };
        NgError::new(counter, e.message)
    }
}

/// What the ng layer knows about the relay's addresses.
#[derive(Clone, Debug, Default)]
pub struct NgConfig {
    /// The relay's addresses; the first is the default for a side.
    pub relay_addrs: Vec<IpAddr>,
    /// Interface names and their addresses, for `direction`.
    pub interfaces: Vec<(String, Vec<IpAddr>)>,
}

/// One ng call: the mapping of its SDP onto the controller session.
#[derive(Clone, Debug)]
struct Call {
    session: String,
    /// Tag of side A (the first offer's from-tag) and of side B (the answer's to-tag).
    tags: [String; 2],
    created: u64,
    last_signal: u64,
    /// Per m= section: the session's stream index, `None` for rejected sections.
    streams: Vec<Option<usize>>,
    /// Per m= section: its media type and transport protocol.
    media: Vec<(String, String)>,
    /// The side whose offer is outstanding (0 or 1).
    offerer: usize,
}

/// The ng command handler; the listener feeds it decoded dictionaries.
pub struct Ng {
    ctl: Arc<dyn Control>,
    cfg: NgConfig,
    calls: Mutex<HashMap<String, Call>>,
}

/// The controller's session id for an ng call-id: SIP Call-IDs may contain '/', which the
/// HTTP API's path cannot; escape it (and '%').
pub fn session_id(call_id: &str) -> String {
    call_id.replace('%', "%25").replace('/', "%2F")
}

/// The session of a call we know, else the one its call-id names (adopted after a restart).
fn session_of(call_id: &str, call: Option<&Call>) -> String {
    call.map_or_else(|| session_id(call_id), |c| c.session.clone())
}

/// A controller 404 is ng's "unknown call"; other errors keep their kind.
fn unknown_call_or(call_id: &str, e: Error) -> NgError {
    if e.kind == ErrorKind::NotFound {
        NgError::unknown_call(call_id)
    } else {
        NgError::from(e)
    }
}

/// `query`'s and `delete`'s reply: the session's view with the call's ng bookkeeping.
fn call_reply(view: &SessionView, call: Option<&Call>) -> Value {
    reply::call_info(
        view,
        call.map(|c| reply::CallMeta {
            tags: &c.tags,
            created: c.created,
            last_signal: c.last_signal,
            media: &c.media,
            streams: &c.streams,
        }),
    )
}

impl Ng {
    pub fn new(ctl: Arc<dyn Control>, cfg: NgConfig) -> Ng {
        Ng {
            ctl,
            cfg,
            calls: Mutex::new(HashMap::new()),
        }
    }

    pub fn control(&self) -> &Arc<dyn Control> {
        &self.ctl
    }

    /// Run one request; every failure is an `error` reply, and counted.
    pub fn handle(&self, req: &Value) -> Value {
        let cmd = request::get_str(req, "command").map(request::normalize);
        let counter = match cmd.as_deref() {
            Some("ping") => Event::NgCmdPing,
            Some("offer") => Event::NgCmdOffer,
            Some("answer") => Event::NgCmdAnswer,
            Some("delete") => Event::NgCmdDelete,
            Some("query") => Event::NgCmdQuery,
            Some("list") => Event::NgCmdList,
            Some("statistics") => Event::NgCmdStatistics,
            _ => Event::NgCmdOther,
        };
        self.ctl.count(counter);
        let result = match cmd.as_deref() {
            Some("ping") => Ok(DictBuilder::new().str("result", "pong").build()),
            Some("offer") => self.offer_answer(req, false),
            Some("answer") => self.offer_answer(req, true),
            Some("delete") => self.delete(req),
            Some("query") => self.query(req),
            Some("list") => Ok(self.list(req)),
            Some("statistics") => self.statistics(),
            Some(other) => Err(NgError::new(
                Event::NgErrorUnknownCommand,
                format!("Unrecognized command {other:?}"),
            )),
            None => Err(NgError::missing("command")),
        };
        match result {
            Ok(v) => v,
            Err(e) => {
                self.ctl.count(e.counter);
                self.ctl.count(Event::NgErrors);
                let cmd = cmd.as_deref().unwrap_or("?");
                match request::get_str(req, "call-id").map(session_id) {
                    Some(call_id) => crate::log_limited!(
                        log::Level::Info,
                        "ng error",
                        call_id = call_id.as_str(), command = cmd;
                        "ng {cmd}: {}", e.reason
                    ),
                    None => crate::log_limited!(
                        log::Level::Info,
                        "ng error",
                        command = cmd;
                        "ng {cmd}: {}", e.reason
                    ),
                }
                reply::error(&e.reason)
            }
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Call>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_options(&self, o: &Options) {
        // One count per ignored item (bounded by the datagram's size).
        for _ in &o.unknown_flags {
            self.ctl.count(Event::NgUnknownFlags);
        }
        for _ in &o.unknown_keys {
            self.ctl.count(Event::NgUnknownKeys);
        }
        if !o.unknown_flags.is_empty() || !o.unknown_keys.is_empty() {
            log::debug!(
                "ng: ignored flags {:?}, keys {:?}",
                o.unknown_flags,
                o.unknown_keys
            );
        }
    }

    /// A `direction` entry: one of our addresses, or an interface name; anything else
    /// (rtpengine's logical interface names) falls back to the default address, counted.
    fn relay_for(&self, dir: Option<&str>) -> Option<IpAddr> {
        let d = dir?;
        if let Ok(a) = d.parse::<IpAddr>()
            && self.cfg.relay_addrs.contains(&a)
        {
            return Some(a);
        }
        let found = self
            .cfg
            .interfaces
            .iter()
            .find(|(n, _)| n == d)
            .and_then(|(_, addrs)| {
                addrs
                    .iter()
                    .find(|a| self.cfg.relay_addrs.contains(a))
                    .copied()
            });
        if found.is_none() {
            self.ctl.count(Event::NgUnknownDirection);
        }
        found
    }

    fn offer_answer(&self, req: &Value, is_answer: bool) -> Result<Value, NgError> {
        let call_id = request::get_str(req, "call-id").ok_or(NgError::missing("call-id"))?;
        let from_tag = request::get_str(req, "from-tag").ok_or(NgError::missing("from-tag"))?;
        let to_tag = request::get_str(req, "to-tag");
        if is_answer && to_tag.is_none() {
            return Err(NgError::missing("to-tag"));
        }
        let body = request::get(req, "sdp")
            .and_then(Value::as_bytes)
            .ok_or(NgError::missing("sdp"))?;
        let opts = Options::parse(req);
        self.count_options(&opts);
        let sdp = Sdp::parse(body).map_err(|e| NgError::new(Event::NgErrorSdp, e.to_string()))?;
        if let Some(want) = &opts.transport_protocol
            && let Some(m) = sdp.media.iter().find(|m| m.active() && m.proto != *want)
        {
            return Err(NgError::new(
                Event::NgErrorUnsupported,
                format!(
                    "transport-protocol {want} asked for a {} stream: this relay passes the \
                     protocol through and does not convert (no SRTP termination)",
                    m.proto
                ),
            ));
        }
        let mut calls = self.calls();
        // The controller may have expired the session since (timeouts): forget the call.
        if let Some(c) = calls.get(call_id)
            && self.ctl.session(&c.session).is_err()
        {
            calls.remove(call_id);
        }
        if !calls.contains_key(call_id)
            && let Some(call) = self.adopt(call_id, from_tag, to_tag)
        {
            calls.insert(call_id.to_owned(), call);
        }
        let view = if is_answer {
            let call = calls
                .get_mut(call_id)
                .ok_or_else(|| NgError::unknown_call(call_id))?;
            self.answer(call, &sdp, &opts, from_tag, to_tag.unwrap_or_default())?
        } else {
            match calls.get_mut(call_id) {
                Some(call) => self.reoffer(call, call_id, &sdp, &opts, from_tag, to_tag)?,
                None => {
                    let (call, view) = self.first_offer(call_id, &sdp, &opts, from_tag)?;
                    calls.insert(call_id.to_owned(), call);
                    view
                }
            }
        };
        let call = calls
            .get_mut(call_id)
            .ok_or_else(|| NgError::unknown_call(call_id))?;
        call.last_signal = unix_now();
        // The rewritten SDP goes to the other party: it must send to its own side's relay.
        let receiver = if is_answer {
            call.offerer
        } else {
            1 - call.offerer
        };
        let out = rewrite_for(&sdp, call, &view, receiver, &opts);
        Ok(DictBuilder::new()
            .str("result", "ok")
            .put("sdp", Value::Bytes(out))
            .build())
    }

    /// A session the ng layer has no record of, but the controller has: one adopted from the
    /// state file after a daemon restart (ng call state is not persisted), or one created over
    /// HTTP with a call-id as its id. Its streams map one to one onto the m= sections.
    fn adopt(&self, call_id: &str, from_tag: &str, to_tag: Option<&str>) -> Option<Call> {
        let session = session_id(call_id);
        let view = self.ctl.session(&session).ok()?;
        self.ctl.count(Event::NgAdoptedCalls);
        log::info!(
            call_id = session.as_str(), "from-tag" = from_tag;
            "ng: adopting session {session:?} (no ng record: daemon restarted?)"
        );
        let now = unix_now();
        Some(Call {
            session,
            tags: [from_tag.to_owned(), to_tag.unwrap_or_default().to_owned()],
            created: view.created_unix,
            last_signal: now,
            streams: (0..view.streams.len()).map(Some).collect(),
            media: view
                .streams
                .iter()
                .map(|s| (s.media.clone(), "RTP/AVP".to_owned()))
                .collect(),
            offerer: 0,
        })
    }

    /// The signalled peer of one m= section, as this side's SDP names it.
    fn peer_of(m: &crate::sdp::MediaInfo, opts: &Options) -> (Option<SocketAddr>, SocketAddr) {
        let ip = match (opts.sip_source_address, opts.received_from) {
            (true, Some(src)) => src,
            _ => m.addr,
        };
        let rtp = SocketAddr::new(ip, m.port);
        let rtcp = if opts.sip_source_address {
            SocketAddr::new(ip, m.rtcp.port())
        } else {
            m.rtcp
        };
        // 0.0.0.0 (old-style hold) names no peer: keep latching on what arrives.
        ((!ip.is_unspecified()).then_some(rtp), rtcp)
    }

    fn first_offer(
        &self,
        call_id: &str,
        sdp: &Sdp,
        opts: &Options,
        from_tag: &str,
    ) -> Result<(Call, SessionView), NgError> {
        let (dir_a, dir_b) = match &opts.direction {
            Some([a, b]) => (self.relay_for(Some(a)), self.relay_for(Some(b))),
            None => (None, None),
        };
        let mut streams = vec![];
        let mut map = vec![];
        for m in &sdp.media {
            if !m.active() {
                map.push(None);
                continue;
            }
            let (peer, rtcp) = Self::peer_of(m, opts);
            map.push(Some(streams.len()));
            streams.push(StreamRequest {
                media: Some(m.kind.clone()),
                a: SideRequest {
                    peer,
                    rtcp_peer: peer.map(|_| rtcp),
                    relay_addr: dir_a,
                },
                b: SideRequest {
                    peer: None,
                    rtcp_peer: None,
                    relay_addr: dir_b,
                },
            });
        }
        if streams.is_empty() {
            return Err(NgError::new(
                Event::NgErrorSdp,
                "SDP has no active media section (every m= port is 0)",
            ));
        }
        let session = session_id(call_id);
        let view = self.ctl.create_session(
            CreateSession {
                call_id: session.clone(),
                policy: opts.strict_source.then_some(LatchPolicy::Strict),
                answered: Some(false),
                streams,
            },
            FrontEnd::Ng,
        )?;
        let now = unix_now();
        Ok((
            Call {
                session,
                tags: [from_tag.to_owned(), String::new()],
                created: now,
                last_signal: now,
                streams: map,
                media: sdp
                    .media
                    .iter()
                    .map(|m| (m.kind.clone(), m.proto.clone()))
                    .collect(),
                offerer: 0,
            },
            view,
        ))
    }

    /// A second offer in the dialog (re-INVITE, either direction). Unchanged media (the
    /// same active media types in the same order) keep their ports: only the offerer's
    /// signalled addresses are updated. Changed media get a new session (new ports).
    fn reoffer(
        &self,
        call: &mut Call,
        call_id: &str,
        sdp: &Sdp,
        opts: &Options,
        from_tag: &str,
        to_tag: Option<&str>,
    ) -> Result<SessionView, NgError> {
        let offerer = if !call.tags[1].is_empty() && from_tag == call.tags[1] {
            1
        } else {
            0
        };
        let old: Vec<&str> = call
            .media
            .iter()
            .zip(&call.streams)
            .filter(|(_, s)| s.is_some())
            .map(|((k, _), _)| k.as_str())
            .collect();
        let same = old == sdp.active_kinds() && call.streams.len() == sdp.media.len();
        if !same {
            log::info!(
                call_id = call.session.as_str(), "from-tag" = from_tag;
                "ng: re-offer for {:?} changes the media ({old:?} -> {:?}): new ports",
                call.session,
                sdp.active_kinds()
            );
            self.ctl.count(Event::NgReofferNewMedia);
            let _ = self.ctl.delete_session(&call.session, FrontEnd::Ng);
            let (mut fresh, view) = self.first_offer(call_id, sdp, opts, from_tag)?;
            fresh.created = call.created;
            if offerer == 1 {
                // The callee re-offers: keep the dialog's tags, the new offer is side A's now.
                fresh.tags = [from_tag.to_owned(), call.tags[0].clone()];
            } else if let Some(t) = to_tag {
                fresh.tags[1] = t.to_owned();
            }
            *call = fresh;
            return Ok(view);
        }
        let update = self.side_update(call, sdp, opts, offerer, false)?;
        let view = self
            .ctl
            .update_session(&call.session, update, FrontEnd::Ng)?;
        call.offerer = offerer;
        if offerer == 0
            && let Some(t) = to_tag
            && call.tags[1].is_empty()
        {
            call.tags[1] = t.to_owned();
        }
        self.ctl.count(Event::NgReofferSamePorts);
        Ok(view)
    }

    fn answer(
        &self,
        call: &mut Call,
        sdp: &Sdp,
        opts: &Options,
        from_tag: &str,
        to_tag: &str,
    ) -> Result<SessionView, NgError> {
        if sdp.media.len() != call.streams.len() {
            return Err(NgError::new(
                Event::NgErrorSdp,
                format!(
                    "the answer has {} media sections, the offer had {}",
                    sdp.media.len(),
                    call.streams.len()
                ),
            ));
        }
        // The answer comes from whoever did not offer. Its from-tag is the dialog's caller
        // tag (SIP From), so the answerer is named by to-tag when side A offered.
        let answerer = 1 - call.offerer;
        if call.offerer == 0 {
            if from_tag != call.tags[0] {
                self.ctl.count(Event::NgTagMismatch);
            }
            call.tags[1] = to_tag.to_owned();
        }
        let update = self.side_update(call, sdp, opts, answerer, true)?;
        Ok(self
            .ctl
            .update_session(&call.session, update, FrontEnd::Ng)?)
    }

    /// New signalled addresses for `side` from its SDP.
    fn side_update(
        &self,
        call: &Call,
        sdp: &Sdp,
        opts: &Options,
        side: usize,
        answered: bool,
    ) -> Result<UpdateSession, NgError> {
        let n = call.streams.iter().flatten().count();
        let mut streams: Vec<Option<StreamUpdate>> = vec![None; n];
        for (m, si) in sdp.media.iter().zip(&call.streams) {
            let Some(si) = *si else { continue };
            let slot = streams
                .get_mut(si)
                .ok_or_else(|| NgError::new(Event::NgErrorInternal, "stream index"))?;
            let p = if m.active() {
                let (peer, rtcp) = Self::peer_of(m, opts);
                PeerUpdate {
                    peer,
                    rtcp_peer: peer.map(|_| rtcp),
                }
            } else {
                // The stream was rejected by this side: it names no peer.
                PeerUpdate::default()
            };
            let mut u = StreamUpdate::default();
            if side == 0 {
                u.a = Some(p);
            } else {
                u.b = Some(p);
            }
            *slot = Some(u);
        }
        Ok(UpdateSession {
            streams,
            answered: Some(answered),
        })
    }

    fn delete(&self, req: &Value) -> Result<Value, NgError> {
        let call_id = request::get_str(req, "call-id").ok_or(NgError::missing("call-id"))?;
        let opts = Options::parse(req);
        self.count_options(&opts);
        let call = self.calls().remove(call_id);
        let view = self
            .ctl
            .delete_session(&session_of(call_id, call.as_ref()), FrontEnd::Ng)
            .map_err(|e| unknown_call_or(call_id, e))?;
        Ok(call_reply(&view, call.as_ref()))
    }

    fn query(&self, req: &Value) -> Result<Value, NgError> {
        let call_id = request::get_str(req, "call-id").ok_or(NgError::missing("call-id"))?;
        let call = self.calls().get(call_id).cloned();
        let call = call.or_else(|| {
            let from = request::get_str(req, "from-tag").unwrap_or("a");
            self.adopt(call_id, from, request::get_str(req, "to-tag"))
        });
        let view = self
            .ctl
            .session(&session_of(call_id, call.as_ref()))
            .map_err(|e| unknown_call_or(call_id, e))?;
        Ok(call_reply(&view, call.as_ref()))
    }

    fn list(&self, req: &Value) -> Value {
        let limit = request::get(req, "limit")
            .and_then(Value::as_int)
            .filter(|n| *n > 0)
            .map_or(32, |n| n.min(100_000) as usize);
        // Every session, ng's and the HTTP API's alike: both are calls on this relay.
        let mut ids: Vec<String> = self.ctl.sessions().into_iter().map(|s| s.call_id).collect();
        // Report ng calls by their own call-id.
        let calls = self.calls();
        for id in &mut ids {
            if let Some((cid, _)) = calls.iter().find(|(_, c)| c.session == *id) {
                *id = cid.clone();
            }
        }
        ids.truncate(limit);
        // As many as fit one datagram: a partial list answers, a full one would not arrive.
        // Fixed part: d6:result2:ok5:callsl...ee
        let mut room = super::MAX_REPLY_BODY - "d6:result2:ok5:callslee".len();
        let fits = ids
            .iter()
            .take_while(|id| {
                let item = id.len().to_string().len() + 1 + id.len();
                room = match room.checked_sub(item) {
                    Some(r) => r,
                    None => return false,
                };
                true
            })
            .count();
        if fits < ids.len() {
            log::info!(
                "ng list: {} of {} calls fit one reply datagram",
                fits,
                ids.len()
            );
            ids.truncate(fits);
        }
        DictBuilder::new()
            .str("result", "ok")
            .put("calls", Value::List(ids.iter().map(Value::str).collect()))
            .build()
    }

    fn statistics(&self) -> Result<Value, NgError> {
        let stats = self.ctl.stats()?;
        Ok(reply::statistics(&stats))
    }

    /// Forget ng calls whose session the controller removed (timeouts); called periodically.
    pub fn prune(&self) {
        let live: std::collections::HashSet<String> =
            self.ctl.sessions().into_iter().map(|s| s.call_id).collect();
        self.calls().retain(|_, c| live.contains(&c.session));
    }
}

/// Rewrite `sdp` for the party on side `receiver`: every active m= section names that side's
/// relay address and port.
fn rewrite_for(
    sdp: &Sdp,
    call: &Call,
    view: &SessionView,
    receiver: usize,
    opts: &Options,
) -> Vec<u8> {
    let media: Vec<Option<MediaPlan>> = sdp
        .media
        .iter()
        .zip(&call.streams)
        .map(|(m, si)| {
            let leg = view.streams.get((*si)?)?.legs.get(receiver)?;
            // A side that rejected a stream keeps port 0 in what it sends.
            m.active().then_some(MediaPlan {
                addr: leg.relay.ip(),
                port: leg.relay.port(),
                rtcp_port: leg.relay.port().wrapping_add(1),
            })
        })
        .collect();
    let first = media.iter().flatten().next().map(|m| m.addr);
    let plan = Plan {
        origin: if opts.replace_origin { first } else { None },
        session_conn: first,
        media,
        strip_ice: opts.ice_remove,
        strip_rtcp: opts.no_rtcp_attribute,
    };
    sdp.rewrite(&plan)
}
