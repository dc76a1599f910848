//! The allocation table (RFC 8656 sections 7-12): allocations keyed by their 5-tuple and
//! found again by relayed address, each with its permissions (per peer IP, 300 s) and
//! channels (600 s), its lifetime (600 s by default, at most 3600 s) and its counters. Time
//! is CLOCK_MONOTONIC nanoseconds passed in by the caller (`clock::now_ns` in the daemon, any
//! number in tests), the clock XDP compares an entry's `expires_ns` with.
use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
};

use super::{auth::Key, deny::canonical, offload::Entries, quota::Bandwidth};

pub const NS: u64 = 1_000_000_000;
/// Section 7.2: the default and the longest allocation lifetime, in seconds.
pub const DEFAULT_LIFETIME_SECS: u64 = 600;
pub const MAX_LIFETIME_SECS: u64 = 3600;
/// Section 9: a permission lives 300 s; section 12: a channel binding 600 s.
pub const PERMISSION_SECS: u64 = 300;
pub const CHANNEL_SECS: u64 = 600;

/// The client's transport to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// The 5-tuple that names an allocation (section 2): the client's address, the server's
/// address it talks to, and the transport between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiveTuple {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
}

/// A channel binding: the peer and when it ends; `slots` are the kernel stats slots of its
/// two directions (client -> peer, peer -> client), `None` when none were free (the channel
/// is then relayed in userspace only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub peer: SocketAddr,
    pub expires_ns: u64,
    pub slots: Option<[u32; 2]>,
}

/// Packets and bytes relayed in userspace, one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

impl Traffic {
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

pub struct Allocation {
    pub five: FiveTuple,
    pub user: String,
    /// The user's long-term key, for the integrity of responses.
    pub key: Key,
    /// One relayed address per family (the first the requested one).
    pub relayed: Vec<SocketAddr>,
    pub created_ns: u64,
    pub expires_ns: u64,
    /// Peer IP (canonical, see `deny::canonical`) -> when its permission ends.
    pub permissions: HashMap<IpAddr, u64>,
    pub channels: BTreeMap<u16, Channel>,
    /// The Allocate that created it and its answer: a retransmission gets the same answer
    /// (section 7.2) instead of 437.
    pub txid: [u8; 12],
    pub response: Vec<u8>,
    pub bandwidth: Bandwidth,
    pub to_peer: Traffic,
    pub to_client: Traffic,
    /// The kernel entries installed for it (`offload.rs`).
    pub offloaded: Entries,
}

impl Allocation {
    /// The relayed address of `peer`'s family.
    pub fn relayed_for(&self, peer: IpAddr) -> Option<SocketAddr> {
        let v4 = canonical(peer).is_ipv4();
        self.relayed.iter().copied().find(|r| r.is_ipv4() == v4)
    }

    /// When the permission for `peer` ends, if it has one that has not.
    pub fn permission(&self, peer: IpAddr, now_ns: u64) -> Option<u64> {
        self.permissions
            .get(&canonical(peer))
            .copied()
            .filter(|&e| e > now_ns)
    }

    pub fn permit(&mut self, peer: IpAddr, now_ns: u64) {
        self.permissions
            .insert(canonical(peer), now_ns + PERMISSION_SECS * NS);
    }

    /// The live channel bound to `peer`.
    pub fn channel_to(&self, peer: SocketAddr, now_ns: u64) -> Option<(u16, &Channel)> {
        self.channels
            .iter()
            .find(|(_, c)| c.peer == peer && c.expires_ns > now_ns)
            .map(|(n, c)| (*n, c))
    }

    /// The live channel `number`.
    pub fn channel(&self, number: u16, now_ns: u64) -> Option<&Channel> {
        self.channels.get(&number).filter(|c| c.expires_ns > now_ns)
    }

    pub fn age_secs(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.created_ns) / NS
    }
}

/// The lifetime granted for a requested one (section 7.2): absent or below the default gets
/// the default, above the maximum gets the maximum.
pub fn granted_lifetime(requested: Option<u32>, max_secs: u64) -> u64 {
    let max = max_secs.max(DEFAULT_LIFETIME_SECS);
    requested
        .map_or(DEFAULT_LIFETIME_SECS, u64::from)
        .clamp(DEFAULT_LIFETIME_SECS, max)
}

/// What one sweep removed.
#[derive(Default)]
pub struct Expired {
    pub allocations: Vec<Allocation>,
    pub permissions: usize,
    /// Channels that ended, with their allocation (whose kernel entries must follow).
    pub channels: Vec<(FiveTuple, u16, Channel)>,
    /// Allocations that lost a permission or channel but live on.
    pub changed: Vec<FiveTuple>,
}

#[derive(Default)]
pub struct Table {
    allocs: HashMap<FiveTuple, Allocation>,
    by_relayed: HashMap<SocketAddr, FiveTuple>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.allocs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.allocs.is_empty()
    }

    pub fn get(&self, five: &FiveTuple) -> Option<&Allocation> {
        self.allocs.get(five)
    }

    pub fn get_mut(&mut self, five: &FiveTuple) -> Option<&mut Allocation> {
        self.allocs.get_mut(five)
    }

    pub fn insert(&mut self, a: Allocation) {
        for r in &a.relayed {
            self.by_relayed.insert(*r, a.five);
        }
        self.allocs.insert(a.five, a);
    }

    pub fn remove(&mut self, five: &FiveTuple) -> Option<Allocation> {
        let a = self.allocs.remove(five)?;
        for r in &a.relayed {
            self.by_relayed.remove(r);
        }
        Some(a)
    }

    /// The allocation whose relayed address is `relayed`.
    pub fn owner(&self, relayed: SocketAddr) -> Option<FiveTuple> {
        self.by_relayed.get(&relayed).copied()
    }

    pub fn is_relayed(&self, a: SocketAddr) -> bool {
        self.by_relayed.contains_key(&a)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Allocation> {
        self.allocs.values()
    }

    /// Remove everything over at `now_ns`: allocations past their lifetime, permissions and
    /// channels past theirs.
    pub fn expire(&mut self, now_ns: u64) -> Expired {
        let mut out = Expired::default();
        let over: Vec<FiveTuple> = self
            .allocs
            .values()
            .filter(|a| a.expires_ns <= now_ns)
            .map(|a| a.five)
            .collect();
        for five in over {
            if let Some(a) = self.remove(&five) {
                out.allocations.push(a);
            }
        }
        for a in self.allocs.values_mut() {
            let before = a.permissions.len();
            a.permissions.retain(|_, e| *e > now_ns);
            let lost = before - a.permissions.len();
            out.permissions += lost;
            let ended: Vec<u16> = a
                .channels
                .iter()
                .filter(|(_, c)| c.expires_ns <= now_ns)
                .map(|(n, _)| *n)
                .collect();
            for n in &ended {
                if let Some(c) = a.channels.remove(n) {
                    out.channels.push((a.five, *n, c));
                }
            }
            if lost > 0 || !ended.is_empty() {
                out.changed.push(a.five);
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn five(client: &str) -> FiveTuple {
        FiveTuple {
            client: client.parse().unwrap(),
            server: "198.18.1.1:3478".parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    pub fn alloc(client: &str, relayed: &str, now: u64) -> Allocation {
        Allocation {
            five: five(client),
            user: "u".into(),
            key: [0; 16],
            relayed: vec![relayed.parse().unwrap()],
            created_ns: now,
            expires_ns: now + DEFAULT_LIFETIME_SECS * NS,
            permissions: HashMap::new(),
            channels: BTreeMap::new(),
            txid: [0; 12],
            response: vec![],
            bandwidth: Bandwidth::new(0, now),
            to_peer: Traffic::default(),
            to_client: Traffic::default(),
            offloaded: Entries::default(),
        }
    }

    #[test]
    fn lifetimes_granted() {
        assert_eq!(granted_lifetime(None, 3600), 600);
        assert_eq!(granted_lifetime(Some(30), 3600), 600);
        assert_eq!(granted_lifetime(Some(1200), 3600), 1200);
        assert_eq!(granted_lifetime(Some(99_999), 3600), 3600);
        assert_eq!(granted_lifetime(Some(99_999), 0), 600);
    }

    #[test]
    fn permissions_channels_and_allocations_expire_on_time() {
        let t0 = 1_000 * NS;
        let mut t = Table::default();
        let mut a = alloc("198.18.1.2:5000", "198.18.1.1:30000", t0);
        let peer: SocketAddr = "198.18.2.2:3480".parse().unwrap();
        a.permit(peer.ip(), t0);
        a.channels.insert(
            0x4000,
            Channel {
                peer,
                expires_ns: t0 + CHANNEL_SECS * NS,
                slots: None,
            },
        );
        t.insert(a);
        let f = five("198.18.1.2:5000");
        assert_eq!(t.owner("198.18.1.1:30000".parse().unwrap()), Some(f));

        // Just before 300 s nothing ends; at 300 s the permission does.
        let e = t.expire(t0 + PERMISSION_SECS * NS - 1);
        assert_eq!((e.permissions, e.channels.len()), (0, 0));
        let a = t.get(&f).unwrap();
        assert!(
            a.permission(peer.ip(), t0 + PERMISSION_SECS * NS - 1)
                .is_some()
        );
        assert!(a.permission(peer.ip(), t0 + PERMISSION_SECS * NS).is_none());
        let e = t.expire(t0 + PERMISSION_SECS * NS);
        assert_eq!((e.permissions, e.changed), (1, vec![f]));
        // The channel lives to 600 s, and so does the allocation (same default): both end.
        assert!(t.get(&f).unwrap().channel_to(peer, t0 + 599 * NS).is_some());
        let e = t.expire(t0 + 600 * NS);
        assert_eq!(e.allocations.len(), 1);
        assert!(t.is_empty());
        assert_eq!(t.owner("198.18.1.1:30000".parse().unwrap()), None);
    }

    #[test]
    fn refreshed_permission_outlives_the_first() {
        let t0 = 5 * NS;
        let mut a = alloc("198.18.1.2:5000", "198.18.1.1:30000", t0);
        let ip: IpAddr = "::ffff:198.18.2.2".parse().unwrap();
        a.permit(ip, t0);
        a.permit("198.18.2.2".parse().unwrap(), t0 + 200 * NS);
        // Mapped and plain IPv4 are the same permission.
        assert_eq!(a.permissions.len(), 1);
        assert!(a.permission(ip, t0 + 450 * NS).is_some());
        assert_eq!(
            a.relayed_for("198.18.9.9".parse().unwrap()),
            Some("198.18.1.1:30000".parse().unwrap())
        );
        assert_eq!(a.relayed_for("2001:db8::9".parse().unwrap()), None);
    }
}
