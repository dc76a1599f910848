//! Who may use the SIP relay interface, and how fast: the seed's relay server answers the
//! proxy of its own network, not any endpoint that can reach a relay address. A request from
//! a source outside the allow list, or over its source's rate, is dropped before it is parsed
//! (no reply: a reply would make the relay a reflector for spoofed sources).
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::prefix::Prefix;

/// Sources tracked at once; past it, idle ones are forgotten, and if none are idle new ones
/// are refused (a flood of spoofed sources cannot grow the table without bound).
const MAX_SOURCES: usize = 65_536;
/// A source idle this long has a full bucket again: forgetting it loses nothing.
const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The source is not in the allow list.
    NotAllowed,
    /// The source sent faster than its rate.
    RateLimited,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct Admission {
    allow: Vec<Prefix>,
    /// Requests per second per source address (also the burst); 0: no limit.
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Admission {
    pub fn new(allow: Vec<Prefix>, rate: u32) -> Admission {
        Admission {
            allow,
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn admit(&self, from: IpAddr, now: Instant) -> Result<(), Refused> {
        // An IPv4-mapped source is its IPv4 address for the allow list.
        let from = match from {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(from, IpAddr::V4),
            a => a,
        };
        if !self.allow.iter().any(|p| p.contains(from)) {
            return Err(Refused::NotAllowed);
        }
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&from) {
            buckets.retain(|_, b| now.duration_since(b.last) < IDLE);
            if buckets.len() >= MAX_SOURCES {
                return Err(Refused::RateLimited);
            }
        }
        let b = buckets.entry(from).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Refused::RateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn only_allowed_sources_and_mapped_v4_counts_as_v4() {
        let a = Admission::new(vec!["198.18.1.0/24".parse().expect("prefix")], 0);
        let t = Instant::now();
        assert_eq!(a.admit(ip("198.18.1.9"), t), Ok(()));
        assert_eq!(a.admit(ip("::ffff:198.18.1.9"), t), Ok(()));
        assert_eq!(a.admit(ip("203.0.113.5"), t), Err(Refused::NotAllowed));
        let none = Admission::new(vec![], 0);
        assert_eq!(none.admit(ip("198.18.1.9"), t), Err(Refused::NotAllowed));
    }

    #[test]
    fn each_source_gets_its_rate_and_refills_over_time() {
        let a = Admission::new(vec!["198.18.0.0/15".parse().expect("prefix")], 10);
        let t = Instant::now();
        let ok = (0..2_500)
            .filter(|_| a.admit(ip("198.18.1.9"), t).is_ok())
            .count();
        assert_eq!(ok, 10, "a burst of the rate, then refused");
        // Another source is not starved by the first.
        assert_eq!(a.admit(ip("198.18.1.10"), t), Ok(()));
        // Half a second later: half the rate again.
        let later = t + Duration::from_millis(500);
        let ok = (0..100)
            .filter(|_| a.admit(ip("198.18.1.9"), later).is_ok())
            .count();
        assert_eq!(ok, 5);
    }

    #[test]
    fn the_source_table_is_bounded() {
        let a = Admission::new(vec!["2001:db8::/32".parse().expect("prefix")], 5);
        let t = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            let addr = std::net::Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(i),
            );
            assert_eq!(a.admit(IpAddr::V6(addr), t), Ok(()));
        }
        // Full of busy sources: a new one is refused rather than the table growing.
        assert_eq!(a.admit(ip("2001:db8:1::1"), t), Err(Refused::RateLimited));
        // Once they are idle they are forgotten and new sources get in.
        assert_eq!(a.admit(ip("2001:db8:1::1"), t + IDLE), Ok(()));
    }
}
