//! The TURN server's request handling end to end in memory: a scripted client against
//! [`Core`] with a fake port allocator and the recording offload, time injected.
use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use relay_common::{
    leg::LegKey,
    turn::{ChannelKey, TurnAction},
};

use super::{
    TurnEvent as Ev, TurnStats,
    allocation::{FiveTuple, NS, Transport},
    attrs::*,
    auth::{Credentials, Nonces, long_term_key, rest_password},
    deny::DenyList,
    handler::{Core, Now, Out, Resources, Settings},
    offload::Recorder,
};
use crate::{
    error::{Error, Result},
    stun::message::{
        self, ATTR_ERROR_CODE, ATTR_NONCE, ATTR_REALM, ATTR_UNKNOWN_ATTRIBUTES, ATTR_USERNAME,
        ATTR_XOR_MAPPED_ADDRESS, Builder, Class, Message, decode_address,
    },
};

const RELAY4: &str = "198.18.1.1";
const RELAY6: &str = "2001:db8:1::1";
const REALM: &str = "example.org";

/// Ports handed out from 30000 up, two at a time; a limit makes it run out.
#[derive(Default)]
struct FakePorts {
    next: Mutex<u16>,
    limit: u16,
    released: Mutex<Vec<SocketAddr>>,
    slots: Mutex<(u32, Vec<u32>)>,
}

impl Resources for FakePorts {
    fn reserve(&self, ip: IpAddr) -> Result<SocketAddr> {
        let mut n = self.next.lock().unwrap();
        if self.limit != 0 && *n >= self.limit {
            return Err(Error::exhausted("no ports"));
        }
        *n += 1;
        Ok(SocketAddr::new(ip, 30000 + 2 * (*n - 1)))
    }
    fn release(&self, relayed: SocketAddr) {
        self.released.lock().unwrap().push(relayed);
    }
    fn alloc_slot(&self) -> Option<u32> {
        let mut s = self.slots.lock().unwrap();
        s.0 += 1;
        Some(s.0)
    }
    fn free_slot(&self, slot: u32) {
        self.slots.lock().unwrap().1.push(slot);
    }
    fn slot_packets(&self, _slot: u32) -> u64 {
        0
    }
}

struct World {
    core: Core,
    ports: Arc<FakePorts>,
    rec: Arc<Recorder>,
    stats: Arc<TurnStats>,
    now: Now,
}

fn world_with(relay_addrs: &[&str], quota: u32, limit: u16) -> World {
    let ports = Arc::new(FakePorts {
        limit,
        ..FakePorts::default()
    });
    let rec = Arc::new(Recorder::default());
    let stats = Arc::new(TurnStats::default());
    let core = Core::new(
        Credentials {
            realm: REALM.into(),
            users: [("alice".to_string(), "pw".to_string())].into(),
            secret: Some(b"rest-secret".to_vec()),
        },
        Nonces::new([3; 32], 600),
        DenyList {
            own: relay_addrs.iter().map(|a| a.parse().unwrap()).collect(),
            prefixes: vec!["203.0.113.0/24".parse().unwrap()],
        },
        Settings {
            relay_addrs: relay_addrs.iter().map(|a| a.parse().unwrap()).collect(),
            max_lifetime_secs: 3600,
            user_quota: quota,
            bandwidth: 0,
        },
        ports.clone(),
        rec.clone(),
        stats.clone(),
    );
    World {
        core,
        ports,
        rec,
        stats,
        now: Now {
            ns: 1000 * NS,
            unix: 1_700_000_000,
        },
    }
}

fn world() -> World {
    world_with(&[RELAY4, RELAY6], 2, 0)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn five(client: &str) -> FiveTuple {
    FiveTuple {
        client: sa(client),
        server: sa("198.18.1.1:3478"),
        transport: Transport::Udp,
    }
}

/// A client: its 5-tuple, credentials and the nonce it learnt.
struct Client {
    five: FiveTuple,
    user: String,
    password: String,
    nonce: Option<Vec<u8>>,
    txid: u8,
}

enum Attr {
    Raw(u16, Vec<u8>),
    Peer(SocketAddr),
}

impl Client {
    fn new(client: &str) -> Client {
        Client {
            five: five(client),
            user: "alice".into(),
            password: "pw".into(),
            nonce: None,
            txid: 0,
        }
    }

    fn build(&mut self, method: u16, attrs: &[Attr], auth: bool) -> Vec<u8> {
        self.txid += 1;
        let txid = [self.txid; 12];
        let mut b = Builder::new(method, Class::Request, txid);
        for a in attrs {
            match a {
                Attr::Raw(t, v) => b.attr(*t, v),
                Attr::Peer(p) => b.xor_address(ATTR_XOR_PEER_ADDRESS, *p),
            };
        }
        if auth && let Some(n) = &self.nonce {
            b.attr(ATTR_USERNAME, self.user.as_bytes())
                .attr(ATTR_REALM, REALM.as_bytes())
                .attr(ATTR_NONCE, n);
            let key = long_term_key(&self.user, REALM, &self.password);
            b.integrity(&key, false);
        }
        b.finish(true)
    }

    /// Send a request; on 401/438 learn the nonce and send it again once.
    fn call(&mut self, w: &mut World, method: u16, attrs: &[Attr]) -> (u16, Vec<u8>) {
        let req = self.build(method, attrs, true);
        let (code, resp) = answer(w, self.five, &req);
        if (code == 401 || code == 438)
            && let Ok(m) = message::parse(&resp)
            && let Some(n) = m.attr(ATTR_NONCE)
            && self.nonce.as_deref() != Some(n)
        {
            self.nonce = Some(n.to_vec());
            let req = self.build(method, attrs, true);
            return answer(w, self.five, &req);
        }
        (code, resp)
    }
}

/// The answer's error code (0: success) and bytes.
fn answer(w: &mut World, five: FiveTuple, req: &[u8]) -> (u16, Vec<u8>) {
    match w.core.from_client(five, req, w.now) {
        Some(Out::Client { five: f, bytes }) => {
            assert_eq!(f, five);
            let m = message::parse(&bytes).expect("a valid answer");
            assert!(m.fingerprint);
            (code_of(&m), bytes)
        }
        other => panic!("no answer: {other:?}"),
    }
}

fn code_of(m: &Message) -> u16 {
    match m.attr(ATTR_ERROR_CODE) {
        Some(v) => u16::from(v[2]) * 100 + u16::from(v[3]),
        None => 0,
    }
}

fn relayed_of(resp: &[u8]) -> Vec<SocketAddr> {
    let m = message::parse(resp).unwrap();
    m.attrs
        .iter()
        .filter(|(t, _)| *t == ATTR_XOR_RELAYED_ADDRESS)
        .filter_map(|(_, v)| decode_address(v, Some(&m.txid)))
        .collect()
}

fn udp() -> Attr {
    Attr::Raw(ATTR_REQUESTED_TRANSPORT, vec![TRANSPORT_UDP, 0, 0, 0])
}

fn lifetime(s: u32) -> Attr {
    Attr::Raw(ATTR_LIFETIME, s.to_be_bytes().to_vec())
}

fn channel(n: u16) -> Attr {
    Attr::Raw(ATTR_CHANNEL_NUMBER, channel_attr(n).to_vec())
}

#[test]
fn allocate_needs_credentials_then_succeeds() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    // No integrity: 401 with realm and nonce, no MESSAGE-INTEGRITY.
    let req = c.build(METHOD_ALLOCATE, &[udp()], false);
    let (code, resp) = answer(&mut w, c.five, &req);
    assert_eq!(code, 401);
    let m = message::parse(&resp).unwrap();
    assert_eq!(m.attr(ATTR_REALM), Some(REALM.as_bytes()));
    assert!(m.attr(ATTR_NONCE).is_some());
    assert!(m.attr(message::ATTR_MESSAGE_INTEGRITY).is_none());
    let (code, resp) = c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    assert_eq!(code, 0);
    let m = message::parse(&resp).unwrap();
    // The response is signed with the user's key.
    let key = long_term_key("alice", REALM, "pw");
    assert!(super::auth::verify(
        &resp,
        super::auth::Integrity::Sha1,
        &key
    ));
    assert_eq!(relayed_of(&resp), vec![sa("198.18.1.1:30000")]);
    assert_eq!(
        m.attr(ATTR_LIFETIME).and_then(u32_of),
        Some(600),
        "the default lifetime"
    );
    assert_eq!(
        decode_address(m.attr(ATTR_XOR_MAPPED_ADDRESS).unwrap(), Some(&m.txid)),
        Some(c.five.client)
    );
    assert_eq!(w.stats.get(Ev::AllocateOk), 1);
    assert_eq!(w.stats.get(Ev::Error401), 2);
    // The relayed address is marked for XDP.
    assert_eq!(w.rec.snapshot().relayed.len(), 1);
    // A retransmission gets the same answer; a new Allocate on the 5-tuple gets 437.
    let again = answer(&mut w, c.five, &c.build(METHOD_ALLOCATE, &[udp()], true));
    assert_eq!(again.0, 437);
    assert_eq!(w.stats.get(Ev::Error437), 1);
}

#[test]
fn allocate_retransmission_is_answered_the_same() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    // Rebuild the same request with the same txid.
    c.txid -= 1;
    let req = c.build(METHOD_ALLOCATE, &[udp()], true);
    let first = w.core.table.get(&c.five).unwrap().response.clone();
    let (code, resp) = answer(&mut w, c.five, &req);
    assert_eq!((code, resp), (0, first));
    assert_eq!(w.stats.get(Ev::Retransmission), 1);
}

#[test]
fn wrong_password_unknown_user_and_stale_nonce() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.password = "wrong".into();
    assert_eq!(c.call(&mut w, METHOD_ALLOCATE, &[udp()]).0, 401);
    assert_eq!(w.stats.get(Ev::Error401BadIntegrity), 1);
    c.user = "mallory".into();
    assert_eq!(c.call(&mut w, METHOD_ALLOCATE, &[udp()]).0, 401);
    assert_eq!(w.stats.get(Ev::Error401UnknownUser), 1);
    // A nonce past its 600 s: 438 with a fresh one, then the retry succeeds.
    let mut c = Client::new("198.18.1.2:5001");
    c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    w.now.unix += 601;
    let req = c.build(METHOD_REFRESH, &[], true);
    let (code, resp) = answer(&mut w, c.five, &req);
    assert_eq!(code, 438);
    assert!(message::parse(&resp).unwrap().attr(ATTR_NONCE).is_some());
    assert_eq!(c.call(&mut w, METHOD_REFRESH, &[]).0, 0);
    assert_eq!(w.stats.get(Ev::Error438), 2);
    // Missing USERNAME with integrity present: 400.
    let mut b = Builder::new(METHOD_REFRESH, Class::Request, [1; 12]);
    b.integrity(&[0; 16], false);
    assert_eq!(answer(&mut w, c.five, &b.finish(true)).0, 400);
}

#[test]
fn rest_api_usernames() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.user = format!("{}:carol", w.now.unix + 100);
    c.password = rest_password(b"rest-secret", &c.user);
    assert_eq!(c.call(&mut w, METHOD_ALLOCATE, &[udp()]).0, 0);
    let mut old = Client::new("198.18.1.2:5001");
    old.user = format!("{}:carol", w.now.unix - 1);
    old.password = rest_password(b"rest-secret", &old.user);
    assert_eq!(old.call(&mut w, METHOD_ALLOCATE, &[udp()]).0, 401);
    assert_eq!(w.stats.get(Ev::Error401ExpiredUser), 1);
}

#[test]
fn allocate_errors() {
    let mut w = world_with(&[RELAY4], 1, 0);
    let mut c = Client::new("198.18.1.2:5000");
    assert_eq!(c.call(&mut w, METHOD_ALLOCATE, &[]).0, 400, "no transport");
    let tcp = Attr::Raw(ATTR_REQUESTED_TRANSPORT, vec![6, 0, 0, 0]);
    assert_eq!(c.call(&mut w, METHOD_ALLOCATE, &[tcp]).0, 442);
    let v6 = || Attr::Raw(ATTR_REQUESTED_ADDRESS_FAMILY, vec![FAMILY_V6, 0, 0, 0]);
    assert_eq!(c.call(&mut w, METHOD_ALLOCATE, &[udp(), v6()]).0, 440);
    let bad_family = Attr::Raw(ATTR_REQUESTED_ADDRESS_FAMILY, vec![7, 0, 0, 0]);
    assert_eq!(c.call(&mut w, METHOD_ALLOCATE, &[udp(), bad_family]).0, 440);
    let aaf = || Attr::Raw(ATTR_ADDITIONAL_ADDRESS_FAMILY, vec![FAMILY_V6, 0, 0, 0]);
    assert_eq!(
        c.call(&mut w, METHOD_ALLOCATE, &[udp(), v6(), aaf()]).0,
        400
    );
    let df = Attr::Raw(ATTR_DONT_FRAGMENT, vec![]);
    let (code, resp) = c.call(&mut w, METHOD_ALLOCATE, &[udp(), df]);
    assert_eq!(code, 420);
    let m = message::parse(&resp).unwrap();
    assert_eq!(
        m.attr(ATTR_UNKNOWN_ATTRIBUTES),
        Some(&ATTR_DONT_FRAGMENT.to_be_bytes()[..])
    );
    let token = Attr::Raw(ATTR_RESERVATION_TOKEN, vec![0; 8]);
    assert_eq!(c.call(&mut w, METHOD_ALLOCATE, &[udp(), token]).0, 508);
    // No IPv6 here: ADDITIONAL-ADDRESS-FAMILY gets IPv4 and ADDRESS-ERROR-CODE 440.
    let (code, resp) = c.call(&mut w, METHOD_ALLOCATE, &[udp(), aaf()]);
    assert_eq!(code, 0);
    let m = message::parse(&resp).unwrap();
    assert_eq!(relayed_of(&resp).len(), 1);
    assert_eq!(m.attr(ATTR_ADDRESS_ERROR_CODE).map(|v| v[3]), Some(40));
    // Quota of one: a second allocation of the same user gets 486.
    let mut c2 = Client::new("198.18.1.2:5001");
    assert_eq!(c2.call(&mut w, METHOD_ALLOCATE, &[udp()]).0, 486);
    assert_eq!(w.stats.get(Ev::Error486), 1);
    for (code, ev) in [
        (400, Ev::Error400),
        (442, Ev::Error442),
        (440, Ev::Error440),
        (420, Ev::Error420),
        (508, Ev::Error508),
    ] {
        assert!(w.stats.get(ev) >= 1, "{code} counted");
    }
}

#[test]
fn ports_run_out_508_and_quota_is_given_back() {
    let mut w = world_with(&[RELAY4], 5, 1);
    let mut a = Client::new("198.18.1.2:5000");
    assert_eq!(a.call(&mut w, METHOD_ALLOCATE, &[udp()]).0, 0);
    let mut b = Client::new("198.18.1.2:5001");
    assert_eq!(b.call(&mut w, METHOD_ALLOCATE, &[udp()]).0, 508);
}

#[test]
fn dual_stack_allocation() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    let aaf = Attr::Raw(ATTR_ADDITIONAL_ADDRESS_FAMILY, vec![FAMILY_V6, 0, 0, 0]);
    let (code, resp) = c.call(&mut w, METHOD_ALLOCATE, &[udp(), aaf]);
    assert_eq!(code, 0);
    assert_eq!(
        relayed_of(&resp),
        vec![sa("198.18.1.1:30000"), sa("[2001:db8:1::1]:30002")]
    );
    // Permissions in both families; a family-mismatched refresh is 443 only when missing.
    let p = [
        Attr::Peer(sa("198.18.2.2:3480")),
        Attr::Peer(sa("[2001:db8:2::2]:3480")),
    ];
    assert_eq!(c.call(&mut w, METHOD_CREATE_PERMISSION, &p).0, 0);
    let mut v4only = Client::new("198.18.1.2:5001");
    v4only.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    let p6 = [Attr::Peer(sa("[2001:db8:2::2]:3480"))];
    assert_eq!(v4only.call(&mut w, METHOD_CREATE_PERMISSION, &p6).0, 443);
    let raf6 = Attr::Raw(ATTR_REQUESTED_ADDRESS_FAMILY, vec![FAMILY_V6, 0, 0, 0]);
    assert_eq!(v4only.call(&mut w, METHOD_REFRESH, &[raf6]).0, 443);
}

#[test]
fn refresh_and_lifetimes() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.call(&mut w, METHOD_ALLOCATE, &[udp(), lifetime(1200)]);
    let a = w.core.table.get(&c.five).unwrap();
    assert_eq!(a.expires_ns, w.now.ns + 1200 * NS);
    let (code, resp) = c.call(&mut w, METHOD_REFRESH, &[lifetime(99_999)]);
    assert_eq!(code, 0);
    assert_eq!(
        message::parse(&resp)
            .unwrap()
            .attr(ATTR_LIFETIME)
            .and_then(u32_of),
        Some(3600)
    );
    // Without a refresh it ends on time: not a nanosecond before.
    w.now.ns += 3600 * NS - 1;
    w.core.sweep(w.now);
    assert_eq!(w.core.table.len(), 1);
    w.now.ns += 1;
    w.core.sweep(w.now);
    assert_eq!(w.core.table.len(), 0);
    assert_eq!(w.stats.get(Ev::AllocationExpired), 1);
    assert_eq!(
        *w.ports.released.lock().unwrap(),
        vec![sa("198.18.1.1:30000")]
    );
    assert!(w.rec.snapshot().is_empty());
    // Refresh without an allocation: 437.
    assert_eq!(c.call(&mut w, METHOD_REFRESH, &[]).0, 437);
}

#[test]
fn refresh_zero_deallocates_and_other_users_get_441() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    let mut other = Client::new("198.18.1.2:5000");
    other.user = format!("{}:bob", w.now.unix + 100);
    other.password = rest_password(b"rest-secret", &other.user);
    assert_eq!(other.call(&mut w, METHOD_REFRESH, &[]).0, 441);
    assert_eq!(w.stats.get(Ev::Error441), 1);
    let (code, resp) = c.call(&mut w, METHOD_REFRESH, &[lifetime(0)]);
    assert_eq!(code, 0);
    assert_eq!(
        message::parse(&resp)
            .unwrap()
            .attr(ATTR_LIFETIME)
            .and_then(u32_of),
        Some(0)
    );
    assert!(w.core.table.is_empty());
    assert_eq!(w.stats.get(Ev::DeallocateOk), 1);
    // The quota is back: two more fit.
    assert_eq!(
        Client::new("198.18.1.2:6000")
            .call(&mut w, METHOD_ALLOCATE, &[udp()])
            .0,
        0
    );
    assert_eq!(
        Client::new("198.18.1.2:6001")
            .call(&mut w, METHOD_ALLOCATE, &[udp()])
            .0,
        0
    );
}

#[test]
fn permissions_send_and_data_indications() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    let relayed = sa("198.18.1.1:30000");
    let peer = sa("198.18.2.2:3480");
    let send = |c: &mut Client, data: &[u8]| {
        c.txid += 1;
        let mut b = Builder::new(METHOD_SEND, Class::Indication, [c.txid; 12]);
        b.xor_address(ATTR_XOR_PEER_ADDRESS, peer)
            .attr(ATTR_DATA, data);
        b.finish(false)
    };
    // No permission yet: a Send is dropped, and so is the peer's packet.
    let ind = send(&mut c, b"early");
    assert_eq!(w.core.from_client(c.five, &ind, w.now), None);
    assert_eq!(w.stats.get(Ev::DropNoPermission), 1);
    assert_eq!(w.core.from_peer(relayed, peer, b"x", w.now), Ok(None));
    assert_eq!(w.stats.get(Ev::DropNoPermission), 2);
    // A packet to an address that is no allocation's: not ours.
    assert!(
        w.core
            .from_peer(sa("198.18.1.1:30100"), peer, b"x", w.now)
            .is_err()
    );

    assert_eq!(
        c.call(&mut w, METHOD_CREATE_PERMISSION, &[Attr::Peer(peer)])
            .0,
        0
    );
    let ind = send(&mut c, b"hello");
    assert_eq!(
        w.core.from_client(c.five, &ind, w.now),
        Some(Out::Peer {
            from: relayed,
            to: peer,
            bytes: b"hello".to_vec()
        })
    );
    // The permission is per IP: another port of the peer reaches the client as a Data
    // indication.
    let Ok(Some(Out::Client { five, bytes })) =
        w.core
            .from_peer(relayed, sa("198.18.2.2:9999"), b"back", w.now)
    else {
        panic!("a Data indication");
    };
    assert_eq!(five, c.five);
    let m = message::parse(&bytes).unwrap();
    assert_eq!((m.method, m.class), (METHOD_DATA, Class::Indication));
    assert_eq!(m.attr(ATTR_DATA), Some(&b"back"[..]));
    assert_eq!(
        decode_address(m.attr(ATTR_XOR_PEER_ADDRESS).unwrap(), Some(&m.txid)),
        Some(sa("198.18.2.2:9999"))
    );
    // 300 s later the permission is gone.
    w.now.ns += 300 * NS;
    w.core.sweep(w.now);
    assert_eq!(w.stats.get(Ev::PermissionExpired), 1);
    assert_eq!(w.core.from_peer(relayed, peer, b"x", w.now), Ok(None));
    // Missing attributes in CreatePermission: 400.
    assert_eq!(c.call(&mut w, METHOD_CREATE_PERMISSION, &[]).0, 400);
}

#[test]
fn deny_list_403_and_dropped_sends() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    for p in [
        "127.0.0.1:22",
        "0.0.0.0:1",
        "224.0.0.1:5000",
        "203.0.113.7:5000",
        "[::ffff:127.0.0.1]:22",
    ] {
        let peer = sa(p);
        let code = c
            .call(&mut w, METHOD_CREATE_PERMISSION, &[Attr::Peer(peer)])
            .0;
        assert_eq!(code, 403, "{p}");
    }
    // The box's own address: a permission is fine (relayed addresses live there), but a
    // channel to a port that is no live relayed address is 403, and Sends there are dropped.
    let own = sa("198.18.1.1:9901");
    assert_eq!(
        c.call(&mut w, METHOD_CREATE_PERMISSION, &[Attr::Peer(own)])
            .0,
        0
    );
    assert_eq!(
        c.call(
            &mut w,
            METHOD_CHANNEL_BIND,
            &[channel(0x4000), Attr::Peer(own)]
        )
        .0,
        403
    );
    let mut b = Builder::new(METHOD_SEND, Class::Indication, [9; 12]);
    b.xor_address(ATTR_XOR_PEER_ADDRESS, own)
        .attr(ATTR_DATA, b"x");
    assert_eq!(w.core.from_client(c.five, &b.finish(false), w.now), None);
    assert_eq!(w.stats.get(Ev::DropDeniedPeer), 1);
    assert!(w.stats.get(Ev::Error403) >= 6);
}

#[test]
fn channels_bind_refresh_expire_and_offload() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    let relayed = sa("198.18.1.1:30000");
    let peer = sa("198.18.2.2:3480");
    let bind = [channel(0x4001), Attr::Peer(peer)];
    assert_eq!(c.call(&mut w, METHOD_CHANNEL_BIND, &bind).0, 0);
    // Kernel entries: client -> peer (Strip) and peer -> client (Add), until the
    // permission's 300 s.
    let ck = ChannelKey {
        server: c.five.server.into(),
        client: c.five.client.into(),
        channel_be: 0x4001u16.to_be(),
        _pad: 0,
    };
    let pk = LegKey::channel(relayed.into(), peer.into());
    let s = w.rec.snapshot();
    let v = s.channels.get(&ck).expect("channel entry");
    assert_eq!(v.action, TurnAction::Strip as u16);
    assert_eq!(v.expires_ns, w.now.ns + 300 * NS);
    assert_eq!(
        s.peers.get(&pk).map(|v| v.action),
        Some(TurnAction::Add as u16)
    );
    // ChannelData both ways in userspace.
    let cd = channel_data(0x4001, b"media", false);
    assert_eq!(
        w.core.from_client(c.five, &cd, w.now),
        Some(Out::Peer {
            from: relayed,
            to: peer,
            bytes: b"media".to_vec()
        })
    );
    assert_eq!(
        w.core.from_peer(relayed, peer, b"back!", w.now),
        Ok(Some(Out::Client {
            five: c.five,
            bytes: channel_data(0x4001, b"back!", true)
        }))
    );
    // Unknown channel: dropped.
    assert_eq!(
        w.core
            .from_client(c.five, &channel_data(0x4002, b"x", false), w.now),
        None
    );
    assert_eq!(w.stats.get(Ev::DropUnknownChannel), 1);
    // Rebinding the number to another peer, or the peer to another number: 400.
    let other = [channel(0x4001), Attr::Peer(sa("198.18.2.3:3480"))];
    assert_eq!(c.call(&mut w, METHOD_CHANNEL_BIND, &other).0, 400);
    let renum = [channel(0x4002), Attr::Peer(peer)];
    assert_eq!(c.call(&mut w, METHOD_CHANNEL_BIND, &renum).0, 400);
    let out_of_range = [channel(0x8000), Attr::Peer(peer)];
    assert_eq!(c.call(&mut w, METHOD_CHANNEL_BIND, &out_of_range).0, 400);
    let out_of_range = [channel(0x3fff), Attr::Peer(peer)];
    assert_eq!(c.call(&mut w, METHOD_CHANNEL_BIND, &out_of_range).0, 400);
    // A refresh 200 s later moves both entries' expiry.
    w.now.ns += 200 * NS;
    assert_eq!(c.call(&mut w, METHOD_CHANNEL_BIND, &bind).0, 0);
    let s = w.rec.snapshot();
    assert_eq!(s.channels.get(&ck).unwrap().expires_ns, w.now.ns + 300 * NS);
    assert_eq!(s.peers.get(&pk).unwrap().expires_ns, w.now.ns + 300 * NS);
    // Keep the allocation alive; let the permission lapse: the entries go, the channel stays.
    assert_eq!(c.call(&mut w, METHOD_REFRESH, &[lifetime(3600)]).0, 0);
    w.now.ns += 300 * NS;
    w.core.sweep(w.now);
    let s = w.rec.snapshot();
    assert!(s.channels.is_empty() && s.peers.is_empty(), "{s:?}");
    assert_eq!(s.relayed.len(), 1);
    // The channel ends at 600 s after its refresh; its slots are freed.
    w.now.ns += 300 * NS;
    w.core.sweep(w.now);
    assert_eq!(w.stats.get(Ev::ChannelExpired), 1);
    let mut freed = w.ports.slots.lock().unwrap().1.clone();
    freed.sort();
    assert_eq!(freed, vec![1, 2]);
    // Deallocation removes the port mark.
    assert_eq!(c.call(&mut w, METHOD_REFRESH, &[lifetime(0)]).0, 0);
    assert!(w.rec.snapshot().is_empty());
}

#[test]
fn relay_mode_two_allocations_renumber() {
    let mut w = world();
    let mut a = Client::new("198.18.1.2:5000");
    let mut b = Client::new("198.18.2.2:6000");
    b.five.server = sa("198.18.2.1:3478");
    a.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    b.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    let (ra, rb) = (sa("198.18.1.1:30000"), sa("198.18.1.1:30002"));
    assert_eq!(w.core.table.get(&b.five).unwrap().relayed, vec![rb]);
    assert_eq!(
        a.call(
            &mut w,
            METHOD_CHANNEL_BIND,
            &[channel(0x4001), Attr::Peer(rb)]
        )
        .0,
        0
    );
    let ka = ChannelKey {
        server: a.five.server.into(),
        client: a.five.client.into(),
        channel_be: 0x4001u16.to_be(),
        _pad: 0,
    };
    assert_eq!(
        w.rec.snapshot().channels.get(&ka).map(|v| v.action),
        Some(TurnAction::Strip as u16)
    );
    assert_eq!(
        b.call(
            &mut w,
            METHOD_CHANNEL_BIND,
            &[channel(0x4fff), Attr::Peer(ra)]
        )
        .0,
        0
    );
    let kb = ChannelKey {
        server: b.five.server.into(),
        client: b.five.client.into(),
        channel_be: 0x4fffu16.to_be(),
        _pad: 0,
    };
    let s = w.rec.snapshot();
    let va = s.channels.get(&ka).unwrap();
    let vb = s.channels.get(&kb).unwrap();
    assert_eq!(
        (va.action, va.channel_be, va.new_dst, va.new_src),
        (
            TurnAction::Renumber as u16,
            0x4fffu16.to_be(),
            b.five.client.into(),
            b.five.server.into()
        )
    );
    assert_eq!(
        (vb.action, vb.channel_be, vb.new_dst),
        (
            TurnAction::Renumber as u16,
            0x4001u16.to_be(),
            a.five.client.into()
        )
    );
    // B refreshes its permission for A later: A's Renumber entry (bounded by B's permission)
    // moves with it.
    let before = w.rec.snapshot().channels.get(&ka).unwrap().expires_ns;
    w.now.ns += 100 * NS;
    // A's own refresh alone does not move it: B's permission still ends first.
    assert_eq!(
        a.call(&mut w, METHOD_CREATE_PERMISSION, &[Attr::Peer(rb)])
            .0,
        0
    );
    assert_eq!(
        w.rec.snapshot().channels.get(&ka).unwrap().expires_ns,
        before
    );
    assert_eq!(
        b.call(&mut w, METHOD_CREATE_PERMISSION, &[Attr::Peer(ra)])
            .0,
        0
    );
    assert_eq!(
        w.rec.snapshot().channels.get(&ka).unwrap().expires_ns,
        before + 100 * NS
    );
    w.now.ns -= 100 * NS;
    // Userspace relay mode: A's ChannelData goes to B's relayed address, which hands it to B
    // on B's channel.
    let Some(Out::Peer { from, to, bytes }) =
        w.core
            .from_client(a.five, &channel_data(0x4001, b"hi", false), w.now)
    else {
        panic!("to the peer");
    };
    assert_eq!((from, to), (ra, rb));
    assert_eq!(
        w.core.from_peer(to, from, &bytes, w.now),
        Ok(Some(Out::Client {
            five: b.five,
            bytes: channel_data(0x4fff, b"hi", true)
        }))
    );
    // B leaves: A's entry falls back to Strip.
    assert_eq!(b.call(&mut w, METHOD_REFRESH, &[lifetime(0)]).0, 0);
    let s = w.rec.snapshot();
    assert_eq!(
        s.channels.get(&ka).map(|v| v.action),
        Some(TurnAction::Strip as u16)
    );
    assert!(!s.channels.contains_key(&kb));
}

#[test]
fn bandwidth_limit_drops_over_the_rate() {
    let mut w = world();
    w.core.settings.bandwidth = 100_000;
    let mut c = Client::new("198.18.1.2:5000");
    c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    let peer = sa("198.18.2.2:3480");
    c.call(
        &mut w,
        METHOD_CHANNEL_BIND,
        &[channel(0x4001), Attr::Peer(peer)],
    );
    let cd = channel_data(0x4001, &[0u8; 1000], false);
    let sent = (0..150)
        .filter(|_| w.core.from_client(c.five, &cd, w.now).is_some())
        .count();
    assert_eq!(sent, 100);
    assert_eq!(w.stats.get(Ev::DropBandwidth), 50);
}

#[test]
fn junk_and_binding() {
    let mut w = world();
    let f = five("198.18.1.2:5000");
    assert_eq!(w.core.from_client(f, b"\x00\x01junk", w.now), None);
    assert_eq!(
        w.core.from_client(f, &[0x40, 0x00, 0x00, 0x08, 1], w.now),
        None
    );
    assert_eq!(w.stats.get(Ev::DropMalformed), 2);
    // ChannelData without an allocation.
    assert_eq!(
        w.core
            .from_client(f, &channel_data(0x4000, b"x", true), w.now),
        None
    );
    assert_eq!(w.stats.get(Ev::DropNoAllocation), 1);
    let req = Builder::new(message::METHOD_BINDING, Class::Request, [1; 12]).finish(true);
    let (code, resp) = answer(&mut w, f, &req);
    assert_eq!(code, 0);
    let m = message::parse(&resp).unwrap();
    assert_eq!(
        decode_address(m.attr(ATTR_XOR_MAPPED_ADDRESS).unwrap(), Some(&m.txid)),
        Some(f.client)
    );
    // Unknown method: 400.
    let req = Builder::new(0x0ab, Class::Request, [2; 12]).finish(true);
    assert_eq!(answer(&mut w, f, &req).0, 400);
}

proptest::proptest! {
    #[test]
    fn from_client_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let mut w = world();
        let f = five("198.18.1.2:5000");
        let _ = w.core.from_client(f, &b, w.now);
        let _ = w.core.from_peer(sa("198.18.1.1:30000"), f.client, &b, w.now);
    }
}

#[test]
fn rfc5766_channel_numbers_are_offloaded_too() {
    let mut w = world();
    let mut c = Client::new("198.18.1.2:5000");
    c.call(&mut w, METHOD_ALLOCATE, &[udp()]);
    let peer = sa("198.18.2.2:3480");
    assert_eq!(
        c.call(
            &mut w,
            METHOD_CHANNEL_BIND,
            &[channel(0x6abc), Attr::Peer(peer)]
        )
        .0,
        0
    );
    let snap = w.rec.snapshot();
    assert!(
        snap.channels
            .keys()
            .any(|k| u16::from_be(k.channel_be) == 0x6abc),
        "XDP carries RFC 5766's whole range"
    );
    // What XDP passes up anyway is relayed the same in userspace.
    assert_eq!(
        w.core
            .from_client(c.five, &channel_data(0x6abc, b"old", false), w.now),
        Some(Out::Peer {
            from: sa("198.18.1.1:30000"),
            to: peer,
            bytes: b"old".to_vec()
        })
    );
}

#[test]
fn sha256_integrity_is_answered_in_kind() {
    let mut w = world();
    let f = five("198.18.1.2:5000");
    // Learn a nonce, then Allocate with MESSAGE-INTEGRITY-SHA256 only.
    let probe = Builder::new(METHOD_ALLOCATE, Class::Request, [1; 12]).finish(true);
    let (_, resp) = answer(&mut w, f, &probe);
    let nonce = message::parse(&resp)
        .unwrap()
        .attr(ATTR_NONCE)
        .unwrap()
        .to_vec();
    let key = long_term_key("alice", REALM, "pw");
    let mut b = Builder::new(METHOD_ALLOCATE, Class::Request, [2; 12]);
    b.attr(ATTR_REQUESTED_TRANSPORT, &[TRANSPORT_UDP, 0, 0, 0])
        .attr(ATTR_USERNAME, b"alice")
        .attr(ATTR_REALM, REALM.as_bytes())
        .attr(ATTR_NONCE, &nonce)
        .integrity(&key, true);
    let (code, resp) = answer(&mut w, f, &b.finish(true));
    assert_eq!(code, 0);
    assert_eq!(
        super::auth::Integrity::of(&resp),
        Some(super::auth::Integrity::Sha256)
    );
    assert!(super::auth::verify(
        &resp,
        super::auth::Integrity::Sha256,
        &key
    ));
}

/// The UDP server answers at most `--turn-rate` requests per second per source; the rest
/// are dropped unanswered and counted.
#[tokio::test]
async fn udp_server_rate_limits_requests_per_source() {
    use super::server::TurnServer;
    let w = world_with(&["127.0.0.1"], 2, 0);
    let stats = w.stats.clone();
    let server = TurnServer::new(w.core, 10);
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(server.listen_udp(&[local]), vec![local]);
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("client");
    let req = Builder::new(METHOD_ALLOCATE, Class::Request, [7; 12]).finish(true);
    for _ in 0..100 {
        client.send_to(&req, local).await.expect("send");
    }
    let mut buf = [0u8; 2048];
    let mut answers = 0u64;
    while let Ok(Ok((n, _))) = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        client.recv_from(&mut buf),
    )
    .await
    {
        assert_eq!(code_of(&message::parse(&buf[..n]).expect("STUN")), 401);
        answers += 1;
    }
    assert!((10..=15).contains(&answers), "{answers} answers");
    assert_eq!(stats.get(Ev::DropRateLimited) + answers, 100);
}

/// TURN over TCP: framed STUN answers, a frame that is neither STUN nor ChannelData closes
/// the connection, and a connection that never allocates is closed after the idle time.
#[tokio::test]
async fn tcp_framing_garbage_and_idle_connections() {
    use super::server::TurnServer;
    use tokio::io::AsyncWriteExt;
    let w = world_with(&["127.0.0.1"], 2, 0);
    let stats = w.stats.clone();
    let server = TurnServer::with_stream_idle(w.core, 0, std::time::Duration::from_millis(300));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(server.listen_tcp(&[local], None), vec![local]);
    // A request in two pieces gets one framed 401.
    let mut s = tokio::net::TcpStream::connect(local)
        .await
        .expect("connect");
    let req = Builder::new(METHOD_ALLOCATE, Class::Request, [7; 12]).finish(true);
    s.write_all(&req[..7]).await.expect("write");
    s.flush().await.expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.write_all(&req[7..]).await.expect("write");
    let got = read_for(&mut s, 1000).await.expect("an answer");
    assert_eq!(
        code_of(&message::parse(&got).expect("one whole STUN message")),
        401
    );
    // Garbage: closed (read returns 0 bytes).
    s.write_all(&[0xff; 8]).await.expect("write");
    assert_eq!(read_for(&mut s, 1000).await, Some(vec![]));
    assert_eq!(stats.get(Ev::DropMalformed), 1);
    // Silence: closed after the idle time.
    let mut idle = tokio::net::TcpStream::connect(local)
        .await
        .expect("connect");
    assert_eq!(read_for(&mut idle, 3000).await, Some(vec![]));
    assert_eq!(stats.get(Ev::DropIdleStream), 1);
}

/// What one read on `s` returns within `ms` (Some(empty): closed; None: nothing).
async fn read_for(s: &mut tokio::net::TcpStream, ms: u64) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(std::time::Duration::from_millis(ms), s.read(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

#[test]
fn userhash_instead_of_username() {
    let mut w = world();
    let f = five("198.18.1.2:5000");
    let probe = Builder::new(METHOD_ALLOCATE, Class::Request, [1; 12]).finish(true);
    let (_, resp) = answer(&mut w, f, &probe);
    let nonce = message::parse(&resp)
        .unwrap()
        .attr(ATTR_NONCE)
        .unwrap()
        .to_vec();
    let key = long_term_key("alice", REALM, "pw");
    let build = |hash: &[u8], txid| {
        let mut b = Builder::new(METHOD_ALLOCATE, Class::Request, [txid; 12]);
        b.attr(ATTR_REQUESTED_TRANSPORT, &[TRANSPORT_UDP, 0, 0, 0])
            .attr(message::ATTR_USERHASH, hash)
            .attr(ATTR_REALM, REALM.as_bytes())
            .attr(ATTR_NONCE, &nonce)
            .integrity(&key, true);
        b.finish(true)
    };
    let wrong = super::auth::userhash("mallory", REALM);
    assert_eq!(answer(&mut w, f, &build(&wrong, 2)).0, 401);
    let right = super::auth::userhash("alice", REALM);
    assert_eq!(answer(&mut w, f, &build(&right, 3)).0, 0);
    assert_eq!(w.core.table.get(&f).unwrap().user, "alice");
}
