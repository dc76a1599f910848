//! Replies by cookie, so a request the proxy retransmits (UDP, its reply lost or late) gets
//! the same answer instead of a second allocation. Bounded in entries and in age.
use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::{Duration, Instant},
};

/// rtpengine keeps replies for about as long; Kamailio retries within seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_CAPACITY: usize = 4096;

/// Keyed by the sender and its cookie: two proxies may well pick the same cookie.
type Key = (SocketAddr, Vec<u8>);

pub struct ReplyCache {
    ttl: Duration,
    capacity: usize,
    map: HashMap<Key, (Instant, Vec<u8>)>,
    /// Insertion order, for expiry and eviction of the oldest.
    order: VecDeque<(Instant, Key)>,
}

impl ReplyCache {
    pub fn new(ttl: Duration, capacity: usize) -> ReplyCache {
        ReplyCache {
            ttl,
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&mut self, from: SocketAddr, cookie: &[u8], now: Instant) -> Option<&[u8]> {
        self.expire(now);
        self.map
            .get(&(from, cookie.to_vec()))
            .map(|(_, r)| r.as_slice())
    }

    pub fn put(&mut self, from: SocketAddr, cookie: &[u8], reply: Vec<u8>, now: Instant) {
        self.expire(now);
        while self.map.len() >= self.capacity {
            let Some((_, k)) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&k);
        }
        let key = (from, cookie.to_vec());
        if self.map.insert(key.clone(), (now, reply)).is_none() {
            self.order.push_back((now, key));
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.order.front() {
            if now.saturating_duration_since(*t) < self.ttl {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn hit_miss_and_expiry() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(Duration::from_secs(10), 8);
        c.put(peer(1), b"abc", b"r1".to_vec(), t0);
        assert_eq!(c.get(peer(1), b"abc", t0), Some(&b"r1"[..]));
        assert_eq!(c.get(peer(2), b"abc", t0), None, "another proxy's cookie");
        assert_eq!(c.get(peer(1), b"abd", t0), None);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(c.get(peer(1), b"abc", later), None, "expired");
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_evicts_oldest() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(Duration::from_secs(60), 3);
        for i in 0..5u8 {
            c.put(
                peer(1),
                &[i],
                vec![i],
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(c.len(), 3);
        let now = t0 + Duration::from_millis(5);
        assert_eq!(c.get(peer(1), &[0], now), None);
        assert_eq!(c.get(peer(1), &[1], now), None);
        assert_eq!(c.get(peer(1), &[4], now), Some(&[4u8][..]));
    }

    #[test]
    fn replacing_a_cookie_keeps_one_entry() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(Duration::from_secs(60), 2);
        c.put(peer(1), b"x", b"1".to_vec(), t0);
        c.put(peer(1), b"x", b"2".to_vec(), t0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(peer(1), b"x", t0), Some(&b"2"[..]));
    }
}
