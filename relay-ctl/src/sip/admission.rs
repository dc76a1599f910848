//! Who may use the SIP relay interface, and how fast: the seed's relay server answers the
//! proxy of its own network, not any endpoint that can reach a relay address. A request from
//! a source outside the allow list, or over its source's rate, is dropped before it is parsed
//! (no reply: a reply would make the relay a reflector for spoofed sources).
use std::{net::IpAddr, time::Instant};

use crate::{prefix::Prefix, ratelimit::PerSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The source is not in the allow list.
    NotAllowed,
    /// The source sent faster than its rate.
    RateLimited,
}

pub struct Admission {
    allow: Vec<Prefix>,
    rate: PerSource,
}

impl Admission {
    /// `rate`: requests per second per source address (also the burst); 0: no limit.
    pub fn new(allow: Vec<Prefix>, rate: u32) -> Admission {
        Admission {
            allow,
            rate: PerSource::new(rate),
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
        if self.rate.allow(from, now) {
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
    fn allowed_sources_are_rate_limited() {
        let a = Admission::new(vec!["198.18.0.0/15".parse().expect("prefix")], 10);
        let t = Instant::now();
        let ok = (0..100)
            .filter(|_| a.admit(ip("198.18.1.9"), t).is_ok())
            .count();
        assert_eq!(ok, 10);
        assert_eq!(a.admit(ip("198.18.1.9"), t), Err(Refused::RateLimited));
    }
}
