//! The kernel entries of bound channels (relay-common/src/turn.rs is the contract with the
//! XDP ChannelData path) and the trait that installs them.
//!
//! [`desired`] is a pure function of an allocation and the table: for each live channel with
//! a live permission on a UDP allocation, the client -> peer entry in `TURN_CHANNELS`
//! (`Strip`, or `Renumber` when the peer is another UDP allocation on this box whose channel
//! is bound back to this relayed address: seed 000's relay mode), the peer -> client entry in
//! `TURN_PEERS` (`Add`), and the `LEG_F_TURN` port entry of every relayed address. [`sync`]
//! brings what is installed to what is desired: new and changed entries set (so a refresh
//! rewrites `expires_ns`), gone ones deleted; port marks last on install, first on removal.
use std::collections::{HashMap, HashSet};

use relay_common::{
    endpoint::Endpoint,
    leg::{LEG_F_TURN, LegKey, LegValue},
    turn::{ChannelKey, TurnAction, TurnValue},
};

use super::allocation::{Allocation, Table, Transport};
use crate::error::Result;

/// How the TURN server's channels reach the kernel maps. The daemon's implementation writes
/// the XDP maps; [`Recorder`] keeps them in memory for tests.
pub trait TurnOffload: Send + Sync {
    /// Set the `TURN_CHANNELS` entry of ChannelData from a client (Strip or Renumber).
    fn set_channel(&self, key: ChannelKey, value: TurnValue) -> Result<()>;
    fn del_channel(&self, key: ChannelKey) -> Result<()>;
    /// Set the `TURN_PEERS` entry of a peer's packets to a relayed address
    /// (`key = LegKey::channel(relayed, peer)`, action Add).
    fn set_peer(&self, key: LegKey, value: TurnValue) -> Result<()>;
    fn del_peer(&self, key: LegKey) -> Result<()>;
    /// The legs map's port entry flagged `LEG_F_TURN` for a relayed address.
    fn mark_relayed(&self, relayed: Endpoint) -> Result<()>;
    fn unmark_relayed(&self, relayed: Endpoint) -> Result<()>;
}

/// The port entry that marks a relayed address (every field but the flag zero).
pub fn relayed_port_entry(relayed: Endpoint) -> (LegKey, LegValue) {
    (
        LegKey::port(relayed),
        LegValue {
            flags: LEG_F_TURN,
            ..LegValue::default()
        },
    )
}

/// A set of kernel entries: what one allocation has installed, or should have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entries {
    pub channels: HashMap<ChannelKey, TurnValue>,
    pub peers: HashMap<LegKey, TurnValue>,
    pub relayed: HashSet<Endpoint>,
}

impl Entries {
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.peers.is_empty() && self.relayed.is_empty()
    }
}

pub fn channel_key(a: &Allocation, number: u16) -> ChannelKey {
    ChannelKey {
        server: a.five.server.into(),
        client: a.five.client.into(),
        channel_be: number.to_be(),
        _pad: 0,
    }
}

/// The entries allocation `a` should have at `now_ns` (`table` finds relay-mode partners).
pub fn desired(a: &Allocation, table: &Table, now_ns: u64) -> Entries {
    let mut e = Entries {
        relayed: a.relayed.iter().map(|r| Endpoint::from(*r)).collect(),
        ..Entries::default()
    };
    // XDP sends to clients over UDP only: TCP/TLS allocations stay in userspace.
    if a.five.transport != Transport::Udp {
        return e;
    }
    for (&number, ch) in &a.channels {
        if !super::attrs::is_channel(number) {
            continue;
        }
        let (Some(slots), Some(perm)) = (ch.slots, a.permission(ch.peer.ip(), now_ns)) else {
            continue;
        };
        let Some(relayed) = a.relayed_for(ch.peer.ip()) else {
            continue;
        };
        if ch.expires_ns <= now_ns {
            continue;
        }
        let expires_ns = ch.expires_ns.min(perm);
        let partner = table
            .owner(ch.peer)
            .and_then(|f| table.get(&f))
            .filter(|b| b.five.transport == Transport::Udp)
            .and_then(|b| {
                let (n, bch) = b.channel_to(relayed, now_ns)?;
                let bperm = b.permission(relayed.ip(), now_ns)?;
                Some((b, n, bch.expires_ns.min(bperm)))
            });
        let out = match partner {
            Some((b, n, b_expires)) => TurnValue {
                new_src: b.five.server.into(),
                new_dst: b.five.client.into(),
                expires_ns: expires_ns.min(b_expires),
                slot: slots[0],
                channel_be: n.to_be(),
                action: TurnAction::Renumber as u16,
            },
            None => TurnValue {
                new_src: relayed.into(),
                new_dst: ch.peer.into(),
                expires_ns,
                slot: slots[0],
                channel_be: 0,
                action: TurnAction::Strip as u16,
            },
        };
        e.channels.insert(channel_key(a, number), out);
        e.peers.insert(
            LegKey::channel(relayed.into(), ch.peer.into()),
            TurnValue {
                new_src: a.five.server.into(),
                new_dst: a.five.client.into(),
                expires_ns,
                slot: slots[1],
                channel_be: number.to_be(),
                action: TurnAction::Add as u16,
            },
        );
    }
    e
}

/// Make `installed` equal `want` through `off`; returns the number of failed map operations
/// (what failed stays out of `installed`, so the next sync tries again).
pub fn sync(off: &dyn TurnOffload, installed: &mut Entries, want: &Entries) -> u64 {
    let mut errors = 0;
    let mut note = |r: Result<()>, what: &str| match r {
        Ok(()) => true,
        Err(e) => {
            errors += 1;
            log::warn!("TURN offload: {what}: {e}");
            false
        }
    };
    // Removal: port marks first, so XDP stops looking up peers before their entries go.
    let gone: Vec<Endpoint> = installed
        .relayed
        .difference(&want.relayed)
        .copied()
        .collect();
    for r in gone {
        if note(off.unmark_relayed(r), "unmark relayed") {
            installed.relayed.remove(&r);
        }
    }
    let gone: Vec<LegKey> = installed
        .peers
        .keys()
        .filter(|k| !want.peers.contains_key(k))
        .copied()
        .collect();
    for k in gone {
        if note(off.del_peer(k), "delete peer") {
            installed.peers.remove(&k);
        }
    }
    let gone: Vec<ChannelKey> = installed
        .channels
        .keys()
        .filter(|k| !want.channels.contains_key(k))
        .copied()
        .collect();
    for k in gone {
        if note(off.del_channel(k), "delete channel") {
            installed.channels.remove(&k);
        }
    }
    // Install: channels and peers, then the port marks.
    for (k, v) in &want.channels {
        if installed.channels.get(k) != Some(v) && note(off.set_channel(*k, *v), "set channel") {
            installed.channels.insert(*k, *v);
        }
    }
    for (k, v) in &want.peers {
        if installed.peers.get(k) != Some(v) && note(off.set_peer(*k, *v), "set peer") {
            installed.peers.insert(*k, *v);
        }
    }
    for r in &want.relayed {
        if !installed.relayed.contains(r) && note(off.mark_relayed(*r), "mark relayed") {
            installed.relayed.insert(*r);
        }
    }
    errors
}

/// An in-memory [`TurnOffload`] recording what would be installed (unit tests).
#[derive(Default)]
pub struct Recorder {
    pub state: std::sync::Mutex<Entries>,
    /// Every operation in order, e.g. "set_channel 16384".
    pub log: std::sync::Mutex<Vec<String>>,
}

impl Recorder {
    pub fn snapshot(&self) -> Entries {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, op: String, f: impl FnOnce(&mut Entries)) -> Result<()> {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(op);
        Ok(())
    }
}

impl TurnOffload for Recorder {
    fn set_channel(&self, key: ChannelKey, value: TurnValue) -> Result<()> {
        self.record(
            format!("set_channel {}", u16::from_be(key.channel_be)),
            |s| {
                s.channels.insert(key, value);
            },
        )
    }
    fn del_channel(&self, key: ChannelKey) -> Result<()> {
        self.record(
            format!("del_channel {}", u16::from_be(key.channel_be)),
            |s| {
                s.channels.remove(&key);
            },
        )
    }
    fn set_peer(&self, key: LegKey, value: TurnValue) -> Result<()> {
        self.record(format!("set_peer {key}"), |s| {
            s.peers.insert(key, value);
        })
    }
    fn del_peer(&self, key: LegKey) -> Result<()> {
        self.record(format!("del_peer {key}"), |s| {
            s.peers.remove(&key);
        })
    }
    fn mark_relayed(&self, relayed: Endpoint) -> Result<()> {
        self.record(format!("mark {relayed}"), |s| {
            s.relayed.insert(relayed);
        })
    }
    fn unmark_relayed(&self, relayed: Endpoint) -> Result<()> {
        self.record(format!("unmark {relayed}"), |s| {
            s.relayed.remove(&relayed);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::allocation::{CHANNEL_SECS, Channel, NS, tests::alloc};
    use std::net::SocketAddr;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn bind(a: &mut Allocation, n: u16, peer: &str, now: u64, slots: [u32; 2]) {
        a.permit(sa(peer).ip(), now);
        a.channels.insert(
            n,
            Channel {
                peer: sa(peer),
                expires_ns: now + CHANNEL_SECS * NS,
                slots: Some(slots),
            },
        );
    }

    #[test]
    fn forwarding_mode_strip_and_add() {
        let now = 10 * NS;
        let mut a = alloc("198.18.1.2:5000", "198.18.1.1:30000", now);
        bind(&mut a, 0x4001, "198.18.2.2:3480", now, [5, 6]);
        let t = Table::default();
        let e = desired(&a, &t, now);
        assert_eq!(
            e.relayed,
            HashSet::from([Endpoint::from(sa("198.18.1.1:30000"))])
        );
        let ck = ChannelKey {
            server: sa("198.18.1.1:3478").into(),
            client: sa("198.18.1.2:5000").into(),
            channel_be: 0x4001u16.to_be(),
            _pad: 0,
        };
        // The permission (300 s) ends before the channel (600 s): the entry ends with it.
        let exp = now + 300 * NS;
        assert_eq!(
            e.channels.get(&ck),
            Some(&TurnValue {
                new_src: sa("198.18.1.1:30000").into(),
                new_dst: sa("198.18.2.2:3480").into(),
                expires_ns: exp,
                slot: 5,
                channel_be: 0,
                action: TurnAction::Strip as u16,
            })
        );
        let pk = LegKey::channel(sa("198.18.1.1:30000").into(), sa("198.18.2.2:3480").into());
        assert_eq!(
            e.peers.get(&pk),
            Some(&TurnValue {
                new_src: sa("198.18.1.1:3478").into(),
                new_dst: sa("198.18.1.2:5000").into(),
                expires_ns: exp,
                slot: 6,
                channel_be: 0x4001u16.to_be(),
                action: TurnAction::Add as u16,
            })
        );
        assert_eq!((e.channels.len(), e.peers.len()), (1, 1));
        // No permission, no slots, or not UDP: nothing for the channel.
        let mut b = alloc("198.18.1.2:5000", "198.18.1.1:30000", now);
        bind(&mut b, 0x4001, "198.18.2.2:3480", now, [5, 6]);
        b.permissions.clear();
        assert!(desired(&b, &t, now).channels.is_empty());
        b.five.transport = Transport::Tcp;
        b.permit(sa("198.18.2.2:3480").ip(), now);
        assert!(desired(&b, &t, now).peers.is_empty());
    }

    #[test]
    fn relay_mode_renumbers_both_ways() {
        let now = 10 * NS;
        let (ra, rb) = ("198.18.1.1:30000", "198.18.1.1:30002");
        let mut a = alloc("198.18.1.2:5000", ra, now);
        let mut b = alloc("198.18.2.2:6000", rb, now);
        bind(&mut a, 0x4001, rb, now, [1, 2]);
        let mut t = Table::default();
        // B has no channel back yet: A strips to B's relayed address.
        t.insert(alloc("198.18.2.2:6000", rb, now));
        let e = desired(&a, &t, now);
        assert_eq!(
            e.channels.values().next().map(|v| v.action),
            Some(TurnAction::Strip as u16)
        );
        bind(&mut b, 0x4abc, ra, now, [3, 4]);
        t.remove(&b.five);
        t.insert(b);
        t.insert(a);
        let a = t.get(&alloc("198.18.1.2:5000", ra, now).five).unwrap();
        let b = t.get(&alloc("198.18.2.2:6000", rb, now).five).unwrap();
        let ea = desired(a, &t, now);
        let eb = desired(b, &t, now);
        let va = ea.channels.get(&channel_key(a, 0x4001)).unwrap();
        assert_eq!(va.action, TurnAction::Renumber as u16);
        assert_eq!(va.channel_be, 0x4abcu16.to_be());
        assert_eq!(va.new_dst, b.five.client.into());
        assert_eq!(va.new_src, b.five.server.into());
        let vb = eb.channels.get(&channel_key(b, 0x4abc)).unwrap();
        assert_eq!(vb.action, TurnAction::Renumber as u16);
        assert_eq!(vb.channel_be, 0x4001u16.to_be());
        assert_eq!(vb.new_dst, a.five.client.into());
        assert_eq!((va.slot, vb.slot), (1, 3));
    }

    #[test]
    fn sync_sets_refreshes_and_removes_in_order() {
        let now = 10 * NS;
        let mut a = alloc("198.18.1.2:5000", "198.18.1.1:30000", now);
        bind(&mut a, 0x4001, "198.18.2.2:3480", now, [5, 6]);
        let t = Table::default();
        let rec = Recorder::default();
        let mut installed = Entries::default();
        let want = desired(&a, &t, now);
        assert_eq!(sync(&rec, &mut installed, &want), 0);
        assert_eq!(rec.snapshot(), want);
        assert_eq!(installed, want);
        let log = rec.log.lock().unwrap().clone();
        assert_eq!(log.len(), 3);
        assert!(log[2].starts_with("mark"), "{log:?}");
        // Nothing changed: nothing written.
        sync(&rec, &mut installed, &want);
        assert_eq!(rec.log.lock().unwrap().len(), 3);
        // A refresh moves expires_ns: both entries are written again.
        a.permit(sa("198.18.2.2:3480").ip(), now + 100 * NS);
        let want2 = desired(&a, &t, now + 100 * NS);
        sync(&rec, &mut installed, &want2);
        assert_eq!(rec.log.lock().unwrap().len(), 5);
        assert_eq!(
            rec.snapshot().channels.values().next().unwrap().expires_ns,
            now + 400 * NS
        );
        // Deallocation: the mark goes first, then the entries.
        sync(&rec, &mut installed, &Entries::default());
        let log = rec.log.lock().unwrap().clone();
        assert!(log[5].starts_with("unmark"), "{log:?}");
        assert!(rec.snapshot().is_empty());
        assert!(installed.is_empty());
    }
}
