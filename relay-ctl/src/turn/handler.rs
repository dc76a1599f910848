//! What the TURN server does with each message: requests (Allocate, Refresh, CreatePermission,
//! ChannelBind, and Binding on a TURN-only port), Send indications and ChannelData from
//! clients, and packets from peers to relayed addresses. [`Core`] holds the table and
//! answers with [`Out`]s for the server to send; it takes the time as an argument, so every
//! branch is unit-tested without sockets or sleeping.
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use super::{
    TurnEvent as Ev, TurnStats,
    allocation::{
        Allocation, CHANNEL_SECS, Channel, FiveTuple, NS, Table, Traffic, granted_lifetime,
    },
    attrs::*,
    auth::{Credentials, Integrity, Key, NonceCheck, Nonces, Refused, verify},
    deny::{DenyList, Verdict, canonical},
    offload::{self, Entries, TurnOffload},
    quota::{Bandwidth, UserQuota},
};
use crate::{
    error::Result,
    stun::{
        handler::SOFTWARE,
        message::{
            self, ATTR_NONCE, ATTR_REALM, ATTR_SOFTWARE, ATTR_UNKNOWN_ATTRIBUTES, ATTR_USERHASH,
            ATTR_USERNAME, ATTR_XOR_MAPPED_ADDRESS, Builder, Class, METHOD_BINDING, Message,
            decode_address,
        },
    },
};

/// What the TURN server takes from the rest of the daemon: relayed ports from the relay's
/// port allocator (same range, quarantine and exhaustion rules as sessions) and kernel stats
/// slots from the per-leg slot allocator.
pub trait Resources: Send + Sync {
    /// A free relay port on `ip` (the even port of a pair; the odd one is held with it).
    fn reserve(&self, ip: IpAddr) -> Result<SocketAddr>;
    /// Back to the allocator (quarantined like a session's ports).
    fn release(&self, relayed: SocketAddr);
    fn alloc_slot(&self) -> Option<u32>;
    fn free_slot(&self, slot: u32);
    /// Packets XDP counted in `slot` (0 if unknown).
    fn slot_packets(&self, slot: u32) -> u64;
}

/// The server's knobs (`config.rs` fills them in).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Addresses relayed addresses are allocated on (the relay addresses).
    pub relay_addrs: Vec<IpAddr>,
    /// Longest allocation lifetime granted, seconds.
    pub max_lifetime_secs: u64,
    /// Allocations per user; 0: no limit.
    pub user_quota: u32,
    /// Bytes per second relayed per allocation in userspace; 0: no limit.
    pub bandwidth: u64,
}

/// The clocks a message is handled at: monotonic ns (lifetimes, the kernel entries) and Unix
/// seconds (nonces, REST usernames).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub ns: u64,
    pub unix: u64,
}

impl Now {
    pub fn system() -> Now {
        Now {
            ns: crate::clock::now_ns(),
            unix: crate::clock::unix_now(),
        }
    }
}

/// Something to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// To a client, over the transport and from the server address of `five`.
    Client { five: FiveTuple, bytes: Vec<u8> },
    /// To a peer, from relayed address `from`.
    Peer {
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
}

/// A packet to an address that is no TURN relayed address (the caller's to handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOurs;

pub struct Core {
    pub creds: Credentials,
    pub nonces: Nonces,
    pub deny: DenyList,
    pub settings: Settings,
    pub table: Table,
    quota: UserQuota,
    res: Arc<dyn Resources>,
    off: Arc<dyn TurnOffload>,
    pub stats: Arc<TurnStats>,
}

/// An authenticated request's user and key.
struct Authed {
    user: String,
    key: Key,
    integrity: Integrity,
}

/// A reply: error code (0: success), extra attributes.
struct Reply {
    code: u16,
    reason: &'static str,
    attrs: Vec<(u16, Vec<u8>)>,
    xor: Vec<(u16, SocketAddr)>,
}

impl Reply {
    fn ok() -> Reply {
        Reply {
            code: 0,
            reason: "",
            attrs: vec![],
            xor: vec![],
        }
    }
    fn err(code: u16, reason: &'static str) -> Reply {
        Reply {
            code,
            reason,
            ..Reply::ok()
        }
    }
}

fn err_event(code: u16) -> Ev {
    match code {
        400 => Ev::Error400,
        401 => Ev::Error401,
        403 => Ev::Error403,
        420 => Ev::Error420,
        437 => Ev::Error437,
        438 => Ev::Error438,
        440 => Ev::Error440,
        441 => Ev::Error441,
        442 => Ev::Error442,
        443 => Ev::Error443,
        486 => Ev::Error486,
        _ => Ev::Error508,
    }
}

impl Core {
    pub fn new(
        creds: Credentials,
        nonces: Nonces,
        deny: DenyList,
        settings: Settings,
        res: Arc<dyn Resources>,
        off: Arc<dyn TurnOffload>,
        stats: Arc<TurnStats>,
    ) -> Core {
        Core {
            creds,
            nonces,
            deny,
            quota: UserQuota::new(settings.user_quota),
            settings,
            table: Table::default(),
            res,
            off,
            stats,
        }
    }

    pub fn resources(&self) -> &dyn Resources {
        &*self.res
    }

    /// A datagram (or stream frame) from a client on `five`.
    pub fn from_client(&mut self, five: FiveTuple, b: &[u8], now: Now) -> Option<Out> {
        if looks_like_channel_data(b) {
            return self.channel_data(five, b, now);
        }
        let m = match message::parse(b) {
            Ok(m) => m,
            Err(_) => {
                self.stats.inc(Ev::DropMalformed);
                return None;
            }
        };
        match (m.class, m.method) {
            (Class::Indication, METHOD_SEND) => self.send_indication(five, &m, now),
            (Class::Request, _) => Some(self.request(five, b, &m, now)),
            _ => {
                self.stats.inc(Ev::DropNotRequest);
                None
            }
        }
    }

    fn request(&mut self, five: FiveTuple, b: &[u8], m: &Message, now: Now) -> Out {
        if m.method == METHOD_BINDING {
            self.stats.inc(Ev::BindingOk);
            let mut r = Reply::ok();
            r.xor.push((ATTR_XOR_MAPPED_ADDRESS, five.client));
            return self.out(five, m, r, None);
        }
        if ![
            METHOD_ALLOCATE,
            METHOD_REFRESH,
            METHOD_CREATE_PERMISSION,
            METHOD_CHANNEL_BIND,
        ]
        .contains(&m.method)
        {
            self.stats.inc(Ev::Error400);
            return self.out(five, m, Reply::err(400, "Bad Request"), None);
        }
        let auth = match self.authenticate(five, b, m, now) {
            Ok(a) => a,
            Err(r) => return self.out(five, m, r, None),
        };
        let unknown: Vec<u16> = m
            .attrs
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t < 0x8000 && !KNOWN_REQUIRED.contains(t))
            .collect();
        let reply = if !unknown.is_empty() {
            let mut r = Reply::err(420, "Unknown Attribute");
            r.attrs.push((
                ATTR_UNKNOWN_ATTRIBUTES,
                unknown.iter().flat_map(|t| t.to_be_bytes()).collect(),
            ));
            r
        } else {
            match m.method {
                METHOD_ALLOCATE => {
                    if let Some(a) = self.table.get(&five) {
                        if a.txid == m.txid && a.user == auth.user {
                            self.stats.inc(Ev::Retransmission);
                            return Out::Client {
                                five,
                                bytes: a.response.clone(),
                            };
                        }
                        Reply::err(437, "Allocation Mismatch")
                    } else {
                        match self.allocate(five, m, &auth, now) {
                            Ok(bytes) => return Out::Client { five, bytes },
                            Err(r) => r,
                        }
                    }
                }
                _ => match self.table.get(&five).map(|a| a.user == auth.user) {
                    None => Reply::err(437, "Allocation Mismatch"),
                    Some(false) => Reply::err(441, "Wrong Credentials"),
                    Some(true) => match m.method {
                        METHOD_REFRESH => self.refresh(five, m, now),
                        METHOD_CREATE_PERMISSION => self.create_permission(five, m, now),
                        _ => self.channel_bind(five, m, now),
                    },
                },
            }
        };
        if reply.code != 0 {
            self.stats.inc(err_event(reply.code));
        }
        self.out(five, m, reply, Some(&auth))
    }

    /// RFC 8489 section 9.2.4, in its order.
    fn authenticate(
        &self,
        five: FiveTuple,
        b: &[u8],
        m: &Message,
        now: Now,
    ) -> std::result::Result<Authed, Reply> {
        let challenge = |code, reason, ev| {
            self.stats.inc(ev);
            let mut r = Reply::err(code, reason);
            r.attrs
                .push((ATTR_REALM, self.creds.realm.as_bytes().to_vec()));
            r.attrs.push((
                ATTR_NONCE,
                self.nonces.mint(five.client.ip(), now.unix).into_bytes(),
            ));
            r
        };
        let Some(integrity) = Integrity::of(b) else {
            return Err(challenge(401, "Unauthenticated", Ev::Error401));
        };
        let named = m.attr(ATTR_USERNAME).or(m.attr(ATTR_USERHASH));
        let (Some(_), Some(_realm), Some(nonce)) = (named, m.attr(ATTR_REALM), m.attr(ATTR_NONCE))
        else {
            self.stats.inc(Ev::Error400);
            return Err(Reply::err(400, "Bad Request"));
        };
        if self.nonces.check(nonce, five.client.ip(), now.unix) == NonceCheck::Stale {
            return Err(challenge(438, "Stale Nonce", Ev::Error438));
        }
        // USERNAME, or USERHASH (section 14.4) for a configured user.
        let user = match (m.attr(ATTR_USERNAME), m.attr(ATTR_USERHASH)) {
            (Some(u), _) => std::str::from_utf8(u).ok(),
            (None, Some(h)) => self.creds.user_by_hash(h),
            (None, None) => None,
        };
        let Some(user) = user else {
            return Err(challenge(401, "Unauthenticated", Ev::Error401UnknownUser));
        };
        let key = match self.creds.key(user, now.unix) {
            Ok(k) => k,
            Err(Refused::UnknownUser) => {
                return Err(challenge(401, "Unauthenticated", Ev::Error401UnknownUser));
            }
            Err(Refused::Expired) => {
                return Err(challenge(401, "Unauthenticated", Ev::Error401ExpiredUser));
            }
        };
        if !verify(b, integrity, &key) {
            return Err(challenge(401, "Unauthenticated", Ev::Error401BadIntegrity));
        }
        Ok(Authed {
            user: user.to_string(),
            key,
            integrity,
        })
    }

    fn out(&self, five: FiveTuple, m: &Message, r: Reply, auth: Option<&Authed>) -> Out {
        Out::Client {
            five,
            bytes: build(m, &r, auth),
        }
    }

    /// Section 7.2.
    fn allocate(
        &mut self,
        five: FiveTuple,
        m: &Message,
        auth: &Authed,
        now: Now,
    ) -> std::result::Result<Vec<u8>, Reply> {
        let Some(t) = m.attr(ATTR_REQUESTED_TRANSPORT) else {
            return Err(Reply::err(400, "Bad Request"));
        };
        if t.first() != Some(&TRANSPORT_UDP) {
            return Err(Reply::err(442, "Unsupported Transport Protocol"));
        }
        let raf = m.attr(ATTR_REQUESTED_ADDRESS_FAMILY);
        let aaf = m.attr(ATTR_ADDITIONAL_ADDRESS_FAMILY);
        let token = m.attr(ATTR_RESERVATION_TOKEN);
        let even = m.attr(ATTR_EVEN_PORT);
        if (raf.is_some() && aaf.is_some())
            || (token.is_some() && (even.is_some() || raf.is_some() || aaf.is_some()))
        {
            return Err(Reply::err(400, "Bad Request"));
        }
        // Every relayed port is even (the allocator hands out RTP/RTCP pairs), so EVEN-PORT
        // is honoured; reserving the next port for a later RESERVATION-TOKEN is not offered.
        if token.is_some() || even.is_some_and(|v| v.first().is_some_and(|x| x & 0x80 != 0)) {
            return Err(Reply::err(508, "Insufficient Capacity"));
        }
        let primary_v6 = match raf.map(|v| v.first().copied()) {
            None => false,
            Some(Some(FAMILY_V4)) => false,
            Some(Some(FAMILY_V6)) => true,
            Some(_) => return Err(Reply::err(440, "Address Family not Supported")),
        };
        if aaf.is_some_and(|v| v.first() != Some(&FAMILY_V6)) {
            return Err(Reply::err(400, "Bad Request"));
        }
        let pick = |v6: bool| {
            let ours = five.server.ip();
            if ours.is_ipv6() == v6 && self.settings.relay_addrs.contains(&ours) {
                return Some(ours);
            }
            self.settings
                .relay_addrs
                .iter()
                .copied()
                .find(|a| a.is_ipv6() == v6)
        };
        let Some(first_ip) = pick(primary_v6) else {
            return Err(Reply::err(440, "Address Family not Supported"));
        };
        let second_ip = if aaf.is_some() { pick(true) } else { None };
        if !self.quota.take(&auth.user) {
            return Err(Reply::err(486, "Allocation Quota Reached"));
        }
        let mut relayed = vec![];
        for ip in std::iter::once(first_ip).chain(second_ip) {
            match self.res.reserve(ip) {
                Ok(r) => relayed.push(r),
                Err(e) => {
                    for r in relayed {
                        self.res.release(r);
                    }
                    self.quota.give_back(&auth.user);
                    log::warn!("TURN: no relayed port on {ip} for {}: {e}", five.client);
                    // Exhausted (or any other failure to get a port): section 7.2's 508.
                    return Err(Reply::err(508, "Insufficient Capacity"));
                }
            }
        }
        let lifetime = granted_lifetime(
            m.attr(ATTR_LIFETIME).and_then(u32_of),
            self.settings.max_lifetime_secs,
        );
        let mut r = Reply::ok();
        for a in &relayed {
            r.xor.push((ATTR_XOR_RELAYED_ADDRESS, *a));
        }
        r.attrs
            .push((ATTR_LIFETIME, (lifetime as u32).to_be_bytes().to_vec()));
        r.xor.push((ATTR_XOR_MAPPED_ADDRESS, five.client));
        if aaf.is_some() && second_ip.is_none() {
            // Section 7.2: the IPv4 allocation succeeds, the IPv6 one is refused in the answer.
            let mut v = vec![FAMILY_V6, 0, 4, 40];
            v.extend_from_slice(b"Address Family not Supported");
            r.attrs.push((ATTR_ADDRESS_ERROR_CODE, v));
        }
        let bytes = build(m, &r, Some(auth));
        let a = Allocation {
            five,
            user: auth.user.clone(),
            key: auth.key,
            relayed: relayed.clone(),
            created_ns: now.ns,
            expires_ns: now.ns + lifetime * NS,
            permissions: Default::default(),
            channels: Default::default(),
            txid: m.txid,
            response: bytes.clone(),
            bandwidth: Bandwidth::new(self.settings.bandwidth, now.ns),
            to_peer: Traffic::default(),
            to_client: Traffic::default(),
            offloaded: Entries::default(),
        };
        self.table.insert(a);
        self.sync(five, now);
        self.stats.inc(Ev::AllocateOk);
        log::info!(
            "TURN allocation for {} ({} {}): relayed {} for {lifetime} s",
            auth.user,
            five.transport.as_str(),
            five.client,
            relayed
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(bytes)
    }

    /// Section 7.3 (and 7.4's lifetime 0: delete).
    fn refresh(&mut self, five: FiveTuple, m: &Message, now: Now) -> Reply {
        if let Some(v) = m.attr(ATTR_REQUESTED_ADDRESS_FAMILY) {
            let v6 = v.first() == Some(&FAMILY_V6);
            let has = self
                .table
                .get(&five)
                .is_some_and(|a| a.relayed.iter().any(|r| r.is_ipv6() == v6));
            if !has {
                return Reply::err(443, "Peer Address Family Mismatch");
            }
        }
        let requested = m.attr(ATTR_LIFETIME).and_then(u32_of);
        let mut r = Reply::ok();
        if requested == Some(0) {
            self.deallocate(five, now, "deallocated by the client");
            self.stats.inc(Ev::DeallocateOk);
            r.attrs.push((ATTR_LIFETIME, 0u32.to_be_bytes().to_vec()));
            return r;
        }
        let lifetime = granted_lifetime(requested, self.settings.max_lifetime_secs);
        if let Some(a) = self.table.get_mut(&five) {
            a.expires_ns = now.ns + lifetime * NS;
        }
        self.stats.inc(Ev::RefreshOk);
        r.attrs
            .push((ATTR_LIFETIME, (lifetime as u32).to_be_bytes().to_vec()));
        r
    }

    /// Whether a permission for `ip` may be created: a denied IP never; one of this box's
    /// addresses only where relayed addresses live (relay mode).
    fn ip_allowed(&self, ip: IpAddr) -> bool {
        match self.deny.ip(ip) {
            Verdict::Allowed => true,
            Verdict::OwnAddress => self
                .settings
                .relay_addrs
                .iter()
                .any(|a| canonical(*a) == canonical(ip)),
            Verdict::Denied => false,
        }
    }

    fn peer_allowed(&self, peer: SocketAddr) -> bool {
        let peer = SocketAddr::new(canonical(peer.ip()), peer.port());
        self.deny.peer(peer, |p| self.table.is_relayed(p))
    }

    /// Section 9.
    fn create_permission(&mut self, five: FiveTuple, m: &Message, now: Now) -> Reply {
        let peers: Vec<Option<SocketAddr>> = m
            .attrs
            .iter()
            .filter(|(t, _)| *t == ATTR_XOR_PEER_ADDRESS)
            .map(|(_, v)| decode_address(v, Some(&m.txid)))
            .collect();
        if peers.is_empty() || peers.iter().any(Option::is_none) {
            return Reply::err(400, "Bad Request");
        }
        let peers: Vec<SocketAddr> = peers.into_iter().flatten().collect();
        let Some(a) = self.table.get(&five) else {
            return Reply::err(437, "Allocation Mismatch");
        };
        if peers.iter().any(|p| a.relayed_for(p.ip()).is_none()) {
            return Reply::err(443, "Peer Address Family Mismatch");
        }
        if peers.iter().any(|p| !self.ip_allowed(p.ip())) {
            return Reply::err(403, "Forbidden");
        }
        if let Some(a) = self.table.get_mut(&five) {
            for p in &peers {
                a.permit(p.ip(), now.ns);
            }
        }
        self.sync_with_partners(five, now);
        self.stats.inc(Ev::PermissionOk);
        Reply::ok()
    }

    /// Section 11.
    fn channel_bind(&mut self, five: FiveTuple, m: &Message, now: Now) -> Reply {
        let (Some(number), Some(peer)) = (
            m.attr(ATTR_CHANNEL_NUMBER).and_then(channel_of),
            m.attr(ATTR_XOR_PEER_ADDRESS)
                .and_then(|v| decode_address(v, Some(&m.txid))),
        ) else {
            return Reply::err(400, "Bad Request");
        };
        if !is_channel(number) {
            return Reply::err(400, "Bad Request");
        }
        let Some(a) = self.table.get(&five) else {
            return Reply::err(437, "Allocation Mismatch");
        };
        if a.relayed_for(peer.ip()).is_none() {
            return Reply::err(443, "Peer Address Family Mismatch");
        }
        if !self.ip_allowed(peer.ip()) || !self.peer_allowed(peer) {
            return Reply::err(403, "Forbidden");
        }
        // A number bound to another peer, or the peer bound to another number: 400.
        if a.channels.get(&number).is_some_and(|c| c.peer != peer)
            || a.channels
                .iter()
                .any(|(n, c)| c.peer == peer && *n != number)
        {
            return Reply::err(400, "Bad Request");
        }
        let new = !a.channels.contains_key(&number);
        let slots = if new { self.two_slots() } else { None };
        let Some(a) = self.table.get_mut(&five) else {
            return Reply::err(437, "Allocation Mismatch");
        };
        let expires_ns = now.ns + CHANNEL_SECS * NS;
        match a.channels.get_mut(&number) {
            Some(c) => c.expires_ns = expires_ns,
            None => {
                a.channels.insert(
                    number,
                    Channel {
                        peer,
                        expires_ns,
                        slots,
                    },
                );
            }
        }
        a.permit(peer.ip(), now.ns);
        self.sync_with_partners(five, now);
        self.stats.inc(Ev::ChannelBindOk);
        Reply::ok()
    }

    fn two_slots(&self) -> Option<[u32; 2]> {
        let a = self.res.alloc_slot();
        let b = self.res.alloc_slot();
        match (a, b) {
            (Some(a), Some(b)) => Some([a, b]),
            (a, b) => {
                for s in a.into_iter().chain(b) {
                    self.res.free_slot(s);
                }
                self.stats.inc(Ev::OffloadNoSlot);
                None
            }
        }
    }

    /// Bring allocation `five`'s kernel entries to what they should be.
    fn sync(&mut self, five: FiveTuple, now: Now) {
        let Some(a) = self.table.get(&five) else {
            return;
        };
        let want = offload::desired(a, &self.table, now.ns);
        if let Some(a) = self.table.get_mut(&five) {
            let errors = offload::sync(&*self.off, &mut a.offloaded, &want);
            self.stats.add(Ev::OffloadError, errors);
        }
    }

    /// [`Core::sync`] of `five` and of the allocations its channels lead to: their Renumber
    /// entries (relay mode) end with this allocation's channel and permission too.
    fn sync_with_partners(&mut self, five: FiveTuple, now: Now) {
        self.sync(five, now);
        let partners: Vec<FiveTuple> = self
            .table
            .get(&five)
            .map(|a| {
                a.channels
                    .values()
                    .filter_map(|c| self.table.owner(c.peer))
                    .filter(|p| *p != five)
                    .collect()
            })
            .unwrap_or_default();
        for p in partners {
            self.sync(p, now);
        }
    }

    /// Remove an allocation: kernel entries first, then its partners' (their Renumber
    /// entries pointed at it), then slots, ports and quota.
    fn deallocate(&mut self, five: FiveTuple, now: Now, why: &str) {
        let Some(a) = self.table.remove(&five) else {
            return;
        };
        self.finish(a, now, why);
    }

    fn finish(&mut self, mut a: Allocation, now: Now, why: &str) {
        let errors = offload::sync(&*self.off, &mut a.offloaded, &Entries::default());
        self.stats.add(Ev::OffloadError, errors);
        let partners: Vec<FiveTuple> = a
            .channels
            .values()
            .filter_map(|c| self.table.owner(c.peer))
            .collect();
        for p in partners {
            self.sync(p, now);
        }
        for c in a.channels.values() {
            for s in c.slots.into_iter().flatten() {
                self.res.free_slot(s);
            }
        }
        for r in &a.relayed {
            self.res.release(*r);
        }
        self.quota.give_back(&a.user);
        log::info!(
            "TURN allocation of {} ({}) ended: {why}; {} packets to peers, {} to the client in userspace",
            a.user,
            a.five.client,
            a.to_peer.packets,
            a.to_client.packets
        );
    }

    /// Expire allocations, permissions and channels (the server calls it every second).
    pub fn sweep(&mut self, now: Now) {
        let e = self.table.expire(now.ns);
        self.stats.add(Ev::PermissionExpired, e.permissions as u64);
        self.stats.add(Ev::ChannelExpired, e.channels.len() as u64);
        for (_, _, c) in &e.channels {
            for s in c.slots.into_iter().flatten() {
                self.res.free_slot(s);
            }
        }
        for a in e.allocations {
            self.stats.inc(Ev::AllocationExpired);
            self.finish(a, now, "lifetime over");
        }
        let mut changed = e.changed;
        // Partners of changed allocations may lose their Renumber entries too.
        let partners: Vec<FiveTuple> = e
            .channels
            .iter()
            .filter_map(|(_, _, c)| self.table.owner(c.peer))
            .collect();
        changed.extend(partners);
        changed.sort();
        changed.dedup();
        for f in changed {
            self.sync(f, now);
        }
        // Entries whose expiry passed without a table change (XDP ignores them already)
        // are rewritten or removed on the next sync; nothing else to do here.
    }

    /// Section 10.2: a Send indication. Dropped silently when anything is wrong.
    fn send_indication(&mut self, five: FiveTuple, m: &Message, now: Now) -> Option<Out> {
        let (Some(peer), Some(data)) = (
            m.attr(ATTR_XOR_PEER_ADDRESS)
                .and_then(|v| decode_address(v, Some(&m.txid))),
            m.attr(ATTR_DATA),
        ) else {
            self.stats.inc(Ev::DropMalformed);
            return None;
        };
        self.stats.inc(Ev::SendIndication);
        self.relay_to_peer(five, peer, data, now)
    }

    /// Section 12.5: ChannelData from the client.
    fn channel_data(&mut self, five: FiveTuple, b: &[u8], now: Now) -> Option<Out> {
        let Some(cd) = parse_channel_data(b) else {
            self.stats.inc(Ev::DropMalformed);
            return None;
        };
        let Some(a) = self.table.get(&five) else {
            self.stats.inc(Ev::DropNoAllocation);
            return None;
        };
        let Some(peer) = a.channel(cd.channel, now.ns).map(|c| c.peer) else {
            self.stats.inc(Ev::DropUnknownChannel);
            return None;
        };
        self.stats.inc(Ev::ChannelDataIn);
        self.relay_to_peer(five, peer, cd.data, now)
    }

    fn relay_to_peer(
        &mut self,
        five: FiveTuple,
        peer: SocketAddr,
        data: &[u8],
        now: Now,
    ) -> Option<Out> {
        if !self.peer_allowed(peer) {
            self.stats.inc(Ev::DropDeniedPeer);
            return None;
        }
        let Some(a) = self.table.get_mut(&five) else {
            self.stats.inc(Ev::DropNoAllocation);
            return None;
        };
        let Some(from) = a.relayed_for(peer.ip()) else {
            self.stats.inc(Ev::DropMalformed);
            return None;
        };
        if a.permission(peer.ip(), now.ns).is_none() {
            self.stats.inc(Ev::DropNoPermission);
            return None;
        }
        if !a.bandwidth.allow(data.len(), now.ns) {
            self.stats.inc(Ev::DropBandwidth);
            return None;
        }
        a.to_peer.add(data.len());
        self.stats.relayed(data.len());
        Some(Out::Peer {
            from,
            to: peer,
            bytes: data.to_vec(),
        })
    }

    /// A packet from `peer` to relayed address `relayed` (section 11.3 / 12.6): ChannelData
    /// if a channel is bound to the peer, else a Data indication; dropped without permission.
    pub fn from_peer(
        &mut self,
        relayed: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
        now: Now,
    ) -> std::result::Result<Option<Out>, NotOurs> {
        let Some(five) = self.table.owner(relayed) else {
            return Err(NotOurs);
        };
        let Some(a) = self.table.get_mut(&five) else {
            return Err(NotOurs);
        };
        if a.permission(peer.ip(), now.ns).is_none() {
            self.stats.inc(Ev::DropNoPermission);
            return Ok(None);
        }
        if !a.bandwidth.allow(data.len(), now.ns) {
            self.stats.inc(Ev::DropBandwidth);
            return Ok(None);
        }
        a.to_client.add(data.len());
        self.stats.relayed(data.len());
        let bytes = match a.channel_to(peer, now.ns) {
            Some((n, _)) => {
                self.stats.inc(Ev::ChannelDataOut);
                channel_data(n, data, true)
            }
            None => {
                self.stats.inc(Ev::DataIndication);
                // Indications are never answered: the id only has to differ between them.
                let mut txid = [0u8; 12];
                txid[..8].copy_from_slice(&now.ns.to_be_bytes());
                txid[8..].copy_from_slice(&(a.to_client.packets as u32).to_be_bytes());
                let mut b = Builder::new(METHOD_DATA, Class::Indication, txid);
                b.xor_address(ATTR_XOR_PEER_ADDRESS, peer)
                    .attr(ATTR_DATA, data);
                b.finish(true)
            }
        };
        Ok(Some(Out::Client { five, bytes }))
    }

    /// The stream of a TCP/TLS client closed: its allocation ends with it (section 3.1).
    pub fn connection_closed(&mut self, five: FiveTuple, now: Now) {
        self.deallocate(five, now, "client connection closed");
    }

    /// Every allocation and channel ends now (the daemon is stopping): kernel entries out,
    /// ports and slots back.
    pub fn shutdown(&mut self, now: Now) {
        let all: Vec<FiveTuple> = self.table.iter().map(|a| a.five).collect();
        for f in all {
            self.deallocate(f, now, "server stopping");
        }
    }
}

/// The response to `m`: success or error per `r`, integrity with `auth`'s key when the
/// request was authenticated, FINGERPRINT always.
fn build(m: &Message, r: &Reply, auth: Option<&Authed>) -> Vec<u8> {
    let class = if r.code == 0 {
        Class::Success
    } else {
        Class::Error
    };
    let mut b = Builder::new(m.method, class, m.txid);
    if r.code != 0 {
        b.error_code(r.code, r.reason);
    }
    for (t, a) in &r.xor {
        b.xor_address(*t, *a);
    }
    for (t, v) in &r.attrs {
        b.attr(*t, v);
    }
    b.attr(ATTR_SOFTWARE, SOFTWARE.as_bytes());
    if let Some(a) = auth {
        b.integrity(&a.key, a.integrity.sha256());
    }
    b.finish(true)
}
