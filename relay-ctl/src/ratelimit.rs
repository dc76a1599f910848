//! Per-source rate limits for the controller's UDP listeners (the SIP relay interface, the
//! STUN server): a token bucket per source address, `rate` per second with a burst of `rate`,
//! in a bounded table so a flood of spoofed sources cannot grow it without limit.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Sources tracked at once; past it, idle ones are forgotten, and if none are idle new ones
/// are refused.
pub const MAX_SOURCES: usize = 65_536;
/// A source idle this long has a full bucket again: forgetting it loses nothing.
const IDLE: Duration = Duration::from_secs(1);

struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct PerSource {
    /// Requests per second per source (also the burst); 0: no limit.
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl PerSource {
    pub fn new(rate: u32) -> PerSource {
        PerSource {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one more request from `from` fits its rate now.
    pub fn allow(&self, from: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_SOURCES && !buckets.contains_key(&from) {
            buckets.retain(|_, b| now.duration_since(b.last) < IDLE);
            if buckets.len() >= MAX_SOURCES {
                return false;
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
            true
        } else {
            false
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
    fn each_source_gets_its_rate_and_refills_over_time() {
        let l = PerSource::new(10);
        let t = Instant::now();
        let ok = (0..2_500).filter(|_| l.allow(ip("198.18.1.9"), t)).count();
        assert_eq!(ok, 10, "a burst of the rate, then refused");
        // Another source is not starved by the first.
        assert!(l.allow(ip("198.18.1.10"), t));
        // Half a second later: half the rate again.
        let later = t + Duration::from_millis(500);
        let ok = (0..100)
            .filter(|_| l.allow(ip("198.18.1.9"), later))
            .count();
        assert_eq!(ok, 5);
        // 0 is no limit.
        let open = PerSource::new(0);
        assert!((0..10_000).all(|_| open.allow(ip("198.18.1.9"), t)));
    }

    #[test]
    fn the_source_table_is_bounded() {
        let l = PerSource::new(5);
        let t = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            let addr = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | u128::from(i));
            assert!(l.allow(IpAddr::V6(addr), t));
        }
        // Full of busy sources: a new one is refused rather than the table growing.
        assert!(!l.allow(ip("2001:db8:1::1"), t));
        // Once they are idle they are forgotten and new sources get in.
        assert!(l.allow(ip("2001:db8:1::1"), t + IDLE));
    }
}
