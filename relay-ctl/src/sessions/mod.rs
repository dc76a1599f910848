//! The session controller (seed 003's session set-up module, session table and session relay
//! module): sessions with media streams, port pairs, latching on the first packets at its
//! sockets, forwarding those packets itself until XDP takes over, timeouts, and the state
//! file that lets a restarted daemon adopt everything.
mod io;
pub mod kernel;
pub mod latch;
pub mod model;
mod restore;
mod slots;
pub mod state;
pub mod timeouts;
pub mod turn;
mod view;

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use tokio::net::UdpSocket;

use self::{
    latch::{Channels, Latch},
    model::{Component, RTCP, RTP, Session, Side, Stream},
    slots::Slots,
    timeouts::{Expiry, Timeouts},
};
use crate::{
    api::{
        Control, CreateSession, FrontEnd, InterfaceView, LatchPolicy, PortsView, SessionState,
        SessionView, StatsView, UpdateSession,
    },
    clock::{now_ns, unix_now},
    dataplane::DataPlane,
    error::{Error, ErrorKind},
    events::{Counts, Event},
    ports::{AllocError, PortAllocator, PortPair},
};

/// How long the state writer gathers changes before it writes (see `state_writer`).
pub const STATE_COALESCE: std::time::Duration = std::time::Duration::from_millis(50);

/// What the controller needs to know that is not in the session table.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub instance: String,
    /// The relay's addresses; the first is the default for a side.
    pub relay_addrs: Vec<IpAddr>,
    pub policy: LatchPolicy,
    /// Minimum time between two latch changes of a leg.
    pub holdoff: Duration,
    pub timeouts: Timeouts,
    pub state_file: PathBuf,
    pub interfaces: Vec<InterfaceView>,
    /// This daemon adopted a pinned data plane.
    pub adopted: bool,
}

/// Limits on what one request may ask for.
const MAX_STREAMS: usize = 16;
const MAX_CALL_ID: usize = 256;

pub struct Controller {
    cfg: ControllerConfig,
    inner: Mutex<Inner>,
    started: Instant,
    me: Weak<Controller>,
    rt: tokio::runtime::Handle,
    /// Wakes the state writer after a latch change (written off the packet path, coalesced).
    latch_changed: tokio::sync::Notify,
    /// Generation of the snapshot last written; held while writing, so writes are ordered
    /// and an older snapshot never lands after a newer one.
    written_gen: Mutex<u64>,
    /// The TURN server, for packets to relayed ports (`turn.rs`).
    relayed_sink: std::sync::OnceLock<Weak<dyn turn::RelayedSink>>,
    /// The XDP channel maps the TURN server's bound channels are written to (`turn.rs`);
    /// `None` with a data plane that predates them (ChannelData then stays in userspace).
    /// A lock of its own: the TURN core writes them without the session table's lock.
    turn_maps: Mutex<Option<crate::dataplane::TurnMaps>>,
}

struct Inner {
    sessions: BTreeMap<String, Session>,
    /// Who each reserved relay address:port belongs to (the receive sockets look it up).
    owners: HashMap<SocketAddr, Owner>,
    ports: PortAllocator,
    slots: Slots,
    dp: DataPlane,
    counters: Counts,
    /// Session table changed since the last state snapshot was taken.
    dirty: bool,
    /// Generation of the last snapshot taken.
    state_gen: u64,
    /// Sessions removed since the allocator last gave freed memory back (`sweep`).
    freed_since_trim: usize,
}

/// Which component (and side; `None` for a shared port) a relay port belongs to.
#[derive(Clone, Debug)]
struct Owner {
    call_id: String,
    stream: usize,
    comp: usize,
    side: Option<usize>,
}

impl Inner {
    fn count(&mut self, e: Event) {
        self.counters.add(e, 1);
    }
    fn count_by(&mut self, e: Event, n: u64) {
        self.counters.add(e, n);
    }
}

impl Controller {
    pub fn new(
        cfg: ControllerConfig,
        dp: DataPlane,
        ports: PortAllocator,
        rt: tokio::runtime::Handle,
    ) -> Arc<Controller> {
        let slots = Slots::new(dp.max_legs());
        Arc::new_cyclic(|me| Controller {
            cfg,
            inner: Mutex::new(Inner {
                sessions: BTreeMap::new(),
                owners: HashMap::new(),
                ports,
                slots,
                dp,
                counters: Counts::default(),
                dirty: true,
                state_gen: 0,
                freed_since_trim: 0,
            }),
            started: Instant::now(),
            me: me.clone(),
            rt,
            latch_changed: tokio::sync::Notify::new(),
            turn_maps: Mutex::new(None),
            written_gen: Mutex::new(0),
            relayed_sink: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock must not take the whole controller down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count an event of a component outside the session table (the next-hop watcher).
    pub fn count_event(&self, e: Event, n: u64) {
        self.lock().count_by(e, n);
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Serve the steered receive sockets (one per relay address, `dataplane::steer`): every
    /// packet XDP passes up on a relay port arrives on one of them.
    pub fn serve_relay_sockets(&self, socks: Vec<std::net::UdpSocket>) -> Result<(), Error> {
        let _guard = self.rt.enter();
        for std_sock in socks {
            let local = std_sock.local_addr().ok();
            let sock = UdpSocket::from_std(std_sock)
                .map_err(|e| Error::internal(format!("receive socket {local:?}: {e}")))?;
            self.rt.spawn(io::serve_socket(self.me.clone(), sock));
        }
        Ok(())
    }

    /// Record who owns the ports of every pair of `session` (new or restored).
    fn own_ports(inner: &mut Inner, session: &Session) {
        for (si, stream) in session.streams.iter().enumerate() {
            for (pi, pair) in stream.pairs.iter().enumerate() {
                for comp in [RTP, RTCP] {
                    let relay = SocketAddr::new(pair.addr, pair.rtp + comp as u16);
                    let owner = Owner {
                        call_id: session.call_id.clone(),
                        stream: si,
                        comp,
                        side: (!stream.shared).then_some(pi),
                    };
                    inner.owners.insert(relay, owner);
                }
            }
        }
    }

    fn disown_ports(inner: &mut Inner, stream: &Stream) {
        for pair in &stream.pairs {
            inner.owners.remove(&pair.rtp_addr());
            inner.owners.remove(&pair.rtcp_addr());
        }
    }

    fn relay_addr(&self, want: Option<IpAddr>) -> Result<IpAddr, Error> {
        match want {
            None => self.cfg.relay_addrs.first().copied().ok_or_else(|| {
                Error::internal("the daemon has no relay address (give --relay-addr)")
            }),
            Some(a) if self.cfg.relay_addrs.contains(&a) => Ok(a),
            Some(a) => Err(Error::invalid(format!(
                "relay_addr {a} is not one of this relay's addresses ({})",
                join(&self.cfg.relay_addrs)
            ))),
        }
    }

    /// Allocate everything a session needs, or nothing: on any failure what was taken is
    /// given back before the error is returned.
    fn build_session(&self, inner: &mut Inner, req: &CreateSession) -> Result<Session, Error> {
        let policy = req.policy.unwrap_or(self.cfg.policy);
        let shared = policy == LatchPolicy::Alternate;
        let now = Instant::now();
        let mut taken: Vec<PortPair> = vec![];
        let mut slots: Vec<u32> = vec![];
        let result = (|| {
            let mut streams = vec![];
            for (i, s) in req.streams.iter().enumerate() {
                let addr_a = self.relay_addr(s.a.relay_addr)?;
                let addr_b = self.relay_addr(s.b.relay_addr)?;
                if shared && addr_a != addr_b {
                    return Err(Error::invalid(format!(
                        "stream {i}: the alternate policy shares one relay port, so both sides \
                         need the same relay_addr ({addr_a} != {addr_b})"
                    )));
                }
                let addrs = if shared {
                    vec![addr_a]
                } else {
                    vec![addr_a, addr_b]
                };
                let mut pairs = vec![];
                for a in addrs {
                    let alloc = inner.ports.allocate(a, now).map_err(alloc_error)?;
                    pairs.push(alloc.pair);
                    taken.push(alloc.pair);
                }
                let mut comps = Vec::with_capacity(2);
                for comp in [RTP, RTCP] {
                    let mut sides: [Side; 2] = Default::default();
                    for (x, side) in sides.iter_mut().enumerate() {
                        let slot = inner.slots.alloc().ok_or_else(|| {
                            Error::exhausted(format!(
                                "kernel leg table full ({} legs): raise --max-legs",
                                inner.slots.capacity()
                            ))
                        })?;
                        slots.push(slot);
                        side.slot = slot;
                        side.relay = Some(Stream::relay_of(&pairs, x, comp));
                    }
                    let signalled = |r: &crate::api::SideRequest| {
                        if comp == RTP {
                            r.peer
                        } else {
                            r.rtcp_peer.or(r.peer.map(rtcp_of))
                        }
                    };
                    comps.push(Component {
                        latch: Channels {
                            channels: [
                                Latch {
                                    signalled: signalled(&s.a),
                                    ..Latch::default()
                                },
                                Latch {
                                    signalled: signalled(&s.b),
                                    ..Latch::default()
                                },
                            ],
                            next: 0,
                        },
                        sides,
                        installed: vec![],
                    });
                }
                let [rtp, rtcp] = <[Component; 2]>::try_from(comps)
                    .map_err(|_| Error::internal("two components"))?;
                streams.push(Stream {
                    media: s.media.clone().unwrap_or_else(|| "audio".to_owned()),
                    shared,
                    pairs,
                    comps: [rtp, rtcp],
                });
            }
            let all_peers = req
                .streams
                .iter()
                .all(|s| s.a.peer.is_some() && s.b.peer.is_some());
            let answered = req.answered.unwrap_or(all_peers);
            let now_ns = now_ns();
            Ok(Session {
                call_id: req.call_id.clone(),
                policy,
                state: if answered {
                    SessionState::Answered
                } else {
                    SessionState::Offered
                },
                created_unix: unix_now(),
                created_ns: now_ns,
                answered_ns: answered.then_some(now_ns),
                streams,
                origin: None,
                seen_hint: [0; 2],
            })
        })();
        match result {
            Ok(session) => {
                Self::own_ports(inner, &session);
                Ok(session)
            }
            Err(e) => {
                // Never used: straight back to the free list, no quarantine needed.
                let back = now.checked_sub(inner.ports.quarantine()).unwrap_or(now);
                for pair in taken {
                    inner.ports.release(pair, back);
                }
                for s in slots {
                    inner.slots.free(s);
                }
                Err(e)
            }
        }
    }

    /// Remove a session: kernel legs first (XDP stops), then port owners, then ports to quarantine
    /// and slots back. Returns its final view.
    fn remove_session(&self, inner: &mut Inner, call_id: &str) -> Option<SessionView> {
        let view = {
            let s = inner.sessions.get(call_id)?;
            view::session_view(&inner.dp, s, now_ns())
        };
        let mut session = inner.sessions.remove(call_id)?;
        inner.freed_since_trim += 1;
        let mut errors = 0;
        for stream in &mut session.streams {
            for comp in &mut stream.comps {
                errors += kernel::apply(&mut inner.dp, comp, stream.shared, true, call_id);
            }
        }
        inner.count_by(Event::KernelErrors, errors);
        let now = Instant::now();
        for stream in &session.streams {
            Self::disown_ports(inner, stream);
            for pair in &stream.pairs {
                inner.ports.release(*pair, now);
            }
            for comp in &stream.comps {
                for side in &comp.sides {
                    inner.slots.free(side.slot);
                }
            }
        }
        inner.dirty = true;
        Some(view)
    }

    /// One sweep: expire sessions whose media stopped, and write the state file if the
    /// table changed. Called every second by the daemon.
    pub fn sweep(&self) {
        let now = now_ns();
        let mut inner = self.lock();
        let Inner { sessions, dp, .. } = &mut *inner;
        let expired: Vec<(String, Expiry)> = sessions
            .values_mut()
            .filter_map(|s| {
                let (state, created, answered) = (s.state, s.created_ns, s.answered_ns);
                let t = &self.cfg.timeouts;
                let check = |seen| timeouts::expiry(state, created, answered, seen, now, t);
                // The last reading is a lower bound of the next (last-seen times only grow)
                // and expiry only gets less likely as they grow: while the last reading
                // keeps the session alive, the kernel's statistics need no reading. A call
                // with media is read about once per timeout instead of every second, which
                // at 10k+ sessions is most of the daemon's idle CPU.
                check(s.seen_hint)?;
                let seen = view::last_seen(dp, s);
                s.seen_hint = seen;
                check(seen).map(|e| (s.call_id.clone(), e))
            })
            .collect();
        for (id, why) in expired {
            let t = &self.cfg.timeouts;
            let reason = match why {
                Expiry::NoMedia => format!("no media for {} s", t.no_media.as_secs()),
                Expiry::Silent(side) => format!(
                    "side {} silent for {} s",
                    model::SIDE_NAMES[side],
                    t.silent.as_secs()
                ),
                Expiry::Unanswered => format!("not answered within {} s", t.offer.as_secs()),
            };
            if let Some(v) = self.remove_session(&mut inner, &id) {
                log::info!(
                    call_id = id.as_str();
                    "session {id} expired: {reason} ({} packets by XDP, {} by the controller); ports quarantined",
                    v.packets_kernel,
                    v.packets_user
                );
                inner.count(why.event());
            }
        }
        // At most once a sweep (a second), and only when sessions ended since the last time.
        let trim = inner.freed_since_trim > 0;
        if trim {
            inner.freed_since_trim = 0;
        }
        let snap = self.snapshot(&mut inner);
        drop(inner);
        self.write_snapshot(snap);
        if trim {
            // glibc keeps freed heap for reuse; after calls ended, hand it back so the
            // daemon's RSS follows its load down as well as up. Outside the lock: it walks
            // the heap.
            // SAFETY: malloc_trim only releases free memory; no pointer we hold is affected.
            unsafe { libc::malloc_trim(0) };
        }
    }

    fn state_file(&self, inner: &Inner) -> state::StateFile {
        state::StateFile {
            version: state::VERSION,
            instance: self.cfg.instance.clone(),
            interfaces: self.cfg.interfaces.clone(),
            sessions: inner.sessions.values().cloned().collect(),
        }
    }

    /// Take a snapshot of the table if anything changed. Counters move with every packet the
    /// controller forwards; they ride along with the next structural change or sweep. The
    /// file is written by `write_snapshot` after the controller's lock is released, so no
    /// packet waits for a file write.
    fn snapshot(&self, inner: &mut Inner) -> Option<(u64, state::StateFile)> {
        if !inner.dirty {
            return None;
        }
        inner.dirty = false;
        inner.state_gen += 1;
        Some((inner.state_gen, self.state_file(inner)))
    }

    /// Write a snapshot unless a newer one is already on disk. Never call with the
    /// controller's lock held (on failure it takes it to mark the table dirty again).
    fn write_snapshot(&self, snap: Option<(u64, state::StateFile)>) {
        let Some((gen_, st)) = snap else { return };
        let mut written = self.written_gen.lock().unwrap_or_else(|e| e.into_inner());
        if gen_ <= *written {
            return;
        }
        match state::save(&self.cfg.state_file, &st) {
            Ok(()) => *written = gen_,
            Err(e) => {
                log::warn!("state file: {e:#}");
                let mut inner = self.lock();
                inner.dirty = true;
                inner.count(Event::StateWriteErrors);
            }
        }
    }

    /// The table changed (API call or latch): the state writer saves it shortly.
    fn state_changed(&self, inner: &mut Inner) {
        inner.dirty = true;
        self.latch_changed.notify_one();
    }

    /// Write the state file after every change to the table, coalescing the changes of
    /// `STATE_COALESCE`: a signalling burst costs one write (serialising the whole table and
    /// an fsync) instead of one per request, and no API call waits for the disk. A crash loses
    /// at most that much signalling (the kernel's latches survive in the pinned map anyway).
    pub async fn state_writer(self: Arc<Self>) {
        loop {
            self.latch_changed.notified().await;
            tokio::time::sleep(STATE_COALESCE).await;
            let snap = self.snapshot(&mut self.lock());
            // Serialising and fsyncing a large table takes a while: off the runtime's workers.
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.write_snapshot(snap)).await;
        }
    }

    /// Write the state file now (start, shutdown).
    pub fn save_state(&self) {
        let snap = {
            let mut inner = self.lock();
            inner.dirty = true;
            self.snapshot(&mut inner)
        };
        self.write_snapshot(snap);
    }

    /// Adopt sessions from a state file (see `restore.rs`).
    pub fn restore(&self, st: state::StateFile) {
        let mut inner = self.lock();
        restore::restore(&mut inner, st);
    }
}

fn rtcp_of(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port().wrapping_add(1))
}

fn join<T: std::fmt::Display>(xs: &[T]) -> String {
    xs.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn alloc_error(e: AllocError) -> Error {
    match e {
        AllocError::Exhausted { .. } => Error::exhausted(e.to_string()),
        AllocError::UnknownAddr(_) => Error::invalid(e.to_string()),
        _ => Error::internal(e.to_string()),
    }
}

/// A front end may change only the sessions it created (the HTTP API, the operator's, any):
/// another's is refused as not found, so its existence does not leak, and counted.
fn owned(inner: &mut Inner, call_id: &str, by: FrontEnd) -> Result<(), Error> {
    let Some(s) = inner.sessions.get(call_id) else {
        return Err(Error::not_found(format!("no session {call_id:?}")));
    };
    match s.origin {
        Some(o) if by != FrontEnd::Api && o != by => {
            inner.count(Event::SessionForeignRefused);
            log::debug!(
                call_id;
                "session {call_id}: {} may not change a session {} created",
                by.as_str(),
                o.as_str()
            );
            Err(Error::not_found(format!(
                "no session {call_id:?} created over {}",
                by.as_str()
            )))
        }
        _ => Ok(()),
    }
}

fn valid_call_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_CALL_ID {
        return Err(Error::invalid(format!(
            "call_id must be 1 to {MAX_CALL_ID} bytes"
        )));
    }
    if id
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/')
    {
        return Err(Error::invalid(
            "call_id must not contain whitespace, control characters or '/'",
        ));
    }
    Ok(())
}

impl Control for Controller {
    fn sessions(&self) -> Vec<SessionView> {
        let inner = self.lock();
        let now = now_ns();
        inner
            .sessions
            .values()
            .map(|s| view::session_view(&inner.dp, s, now))
            .collect()
    }

    fn session(&self, call_id: &str) -> Result<SessionView, Error> {
        let inner = self.lock();
        inner
            .sessions
            .get(call_id)
            .map(|s| view::session_view(&inner.dp, s, now_ns()))
            .ok_or_else(|| Error::not_found(format!("no session {call_id:?}")))
    }

    fn create_session(&self, req: CreateSession, by: FrontEnd) -> Result<SessionView, Error> {
        valid_call_id(&req.call_id)?;
        if req.streams.is_empty() || req.streams.len() > MAX_STREAMS {
            return Err(Error::invalid(format!(
                "a session needs 1 to {MAX_STREAMS} streams, got {}",
                req.streams.len()
            )));
        }
        let mut inner = self.lock();
        if inner.sessions.contains_key(&req.call_id) {
            return Err(Error::conflict(format!(
                "session {:?} exists; update it with POST /v1/sessions/{{id}}",
                req.call_id
            )));
        }
        let session = match self.build_session(&mut inner, &req) {
            Ok(s) => Session {
                origin: Some(by),
                ..s
            },
            Err(e) => {
                inner.count(if e.kind == ErrorKind::Exhausted {
                    Event::SessionAllocFailures
                } else {
                    Event::SessionBadRequests
                });
                return Err(e);
            }
        };
        let view = view::session_view(&inner.dp, &session, now_ns());
        log::info!(
            call_id = session.call_id.as_str();
            "session {} created: {} stream(s), policy {}, relay ports {}",
            session.call_id,
            session.streams.len(),
            session.policy,
            session
                .streams
                .iter()
                .flat_map(|s| s.pairs.iter().map(|p| p.rtp.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        );
        inner.sessions.insert(session.call_id.clone(), session);
        inner.count(Event::SessionsCreated);
        self.state_changed(&mut inner);
        Ok(view)
    }

    fn update_session(
        &self,
        call_id: &str,
        req: UpdateSession,
        by: FrontEnd,
    ) -> Result<SessionView, Error> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        owned(inner, call_id, by)?;
        let session = inner
            .sessions
            .get_mut(call_id)
            .ok_or_else(|| Error::not_found(format!("no session {call_id:?}")))?;
        if req.streams.len() > session.streams.len() {
            return Err(Error::invalid(format!(
                "session {call_id:?} has {} stream(s), the update names {}",
                session.streams.len(),
                req.streams.len()
            )));
        }
        let mut errors = 0;
        for (stream, upd) in session.streams.iter_mut().zip(&req.streams) {
            let Some(upd) = upd else { continue };
            for (x, p) in [&upd.a, &upd.b].into_iter().enumerate() {
                let Some(p) = p else { continue };
                stream.comps[RTP].latch.channels[x].signalled = p.peer;
                stream.comps[RTCP].latch.channels[x].signalled =
                    p.rtcp_peer.or(p.peer.map(rtcp_of));
            }
            for comp in &mut stream.comps {
                errors += kernel::apply(&mut inner.dp, comp, stream.shared, false, call_id);
            }
        }
        if req.answered.unwrap_or(true) && session.state == SessionState::Offered {
            session.state = SessionState::Answered;
            session.answered_ns = Some(now_ns());
            log::info!(call_id; "session {call_id} answered");
        }
        let view = view::session_view(&inner.dp, session, now_ns());
        inner.count_by(Event::KernelErrors, errors);
        self.state_changed(inner);
        Ok(view)
    }

    fn delete_session(&self, call_id: &str, by: FrontEnd) -> Result<SessionView, Error> {
        let mut inner = self.lock();
        owned(&mut inner, call_id, by)?;
        let v = self
            .remove_session(&mut inner, call_id)
            .ok_or_else(|| Error::not_found(format!("no session {call_id:?}")))?;
        log::info!(
            call_id;
            "session {call_id} deleted ({} packets by XDP, {} by the controller); ports quarantined",
            v.packets_kernel,
            v.packets_user
        );
        inner.count(Event::SessionsDeleted);
        self.state_changed(&mut inner);
        Ok(v)
    }

    fn stats(&self) -> Result<StatsView, Error> {
        let inner = self.lock();
        view::stats_view(self, &inner)
    }

    fn ports(&self) -> PortsView {
        let inner = self.lock();
        view::ports_view(&inner.ports)
    }

    fn metrics(&self) -> Result<String, Error> {
        let (stats, ports) = {
            let inner = self.lock();
            (
                view::stats_view(self, &inner)?,
                view::ports_view(&inner.ports),
            )
        };
        crate::metrics::render(&stats, &ports).map_err(|e| Error::internal(format!("{e:#}")))
    }

    fn count(&self, event: Event) {
        self.lock().count(event);
    }
}
