//! Per-user allocation quota (486 Allocation Quota Reached) and the per-allocation bandwidth
//! limit of userspace relaying (a token bucket in bytes; packets over it are dropped and
//! counted). Time is the caller's monotonic nanoseconds, so tests need no sleeping.
use std::collections::HashMap;

/// Allocations held per user name.
#[derive(Debug, Default)]
pub struct UserQuota {
    /// 0: no limit.
    pub max_per_user: u32,
    held: HashMap<String, u32>,
}

impl UserQuota {
    pub fn new(max_per_user: u32) -> UserQuota {
        UserQuota {
            max_per_user,
            held: HashMap::new(),
        }
    }

    /// Take one allocation for `user`; false (486) when the user is at the quota.
    pub fn take(&mut self, user: &str) -> bool {
        let n = self.held.entry(user.to_string()).or_default();
        if self.max_per_user != 0 && *n >= self.max_per_user {
            return false;
        }
        *n += 1;
        true
    }

    pub fn give_back(&mut self, user: &str) {
        if let Some(n) = self.held.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(user);
            }
        }
    }

    pub fn held(&self, user: &str) -> u32 {
        self.held.get(user).copied().unwrap_or(0)
    }
}

/// A token bucket of bytes: `rate` bytes per second, burst of one second's worth (at least
/// one maximal datagram). Rate 0: unlimited.
#[derive(Debug, Clone)]
pub struct Bandwidth {
    rate: u64,
    tokens: f64,
    last_ns: u64,
}

impl Bandwidth {
    pub fn new(rate_bytes_per_sec: u64, now_ns: u64) -> Bandwidth {
        Bandwidth {
            rate: rate_bytes_per_sec,
            tokens: Self::burst_of(rate_bytes_per_sec),
            last_ns: now_ns,
        }
    }

    fn burst_of(rate: u64) -> f64 {
        rate.max(65_535) as f64
    }

    /// Whether `bytes` more fit now (and take them if so).
    pub fn allow(&mut self, bytes: usize, now_ns: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let dt = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.last_ns = self.last_ns.max(now_ns);
        self.tokens = (self.tokens + dt * self.rate as f64).min(Self::burst_of(self.rate));
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_per_user() {
        let mut q = UserQuota::new(2);
        assert!(q.take("a") && q.take("a"));
        assert!(!q.take("a"));
        assert!(q.take("b"));
        q.give_back("a");
        assert_eq!(q.held("a"), 1);
        assert!(q.take("a"));
        let mut unlimited = UserQuota::new(0);
        assert!((0..100).all(|_| unlimited.take("a")));
    }

    #[test]
    fn bandwidth_bucket_refills_with_time() {
        // 100 kB/s: the burst is 100 kB; then 1000 bytes per 10 ms.
        let mut b = Bandwidth::new(100_000, 0);
        let sent = (0..200).filter(|_| b.allow(1000, 0)).count();
        assert_eq!(sent, 100);
        assert!(!b.allow(1000, 0));
        assert!(b.allow(1000, 10_000_000));
        assert!(!b.allow(1000, 10_000_000));
        let mut free = Bandwidth::new(0, 0);
        assert!((0..1000).all(|_| free.allow(65_000, 0)));
    }
}
