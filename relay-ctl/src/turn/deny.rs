//! Peers the relay must not reach (RFC 8656 section 21.2.3's open-relay concerns): loopback,
//! unspecified, multicast and broadcast always; this box's own addresses, except the relayed
//! addresses of live allocations (seed 000's relay mode: two allocations that are each other's
//! peers); and the operator's `--turn-deny` prefixes. CreatePermission and ChannelBind for a
//! denied peer get 403, a Send to one is dropped.
use std::net::{IpAddr, SocketAddr};

use crate::prefix::Prefix;

#[derive(Debug, Clone, Default)]
pub struct DenyList {
    /// This box's addresses (the relay addresses and every other address on the box).
    pub own: Vec<IpAddr>,
    /// The operator's prefixes.
    pub prefixes: Vec<Prefix>,
}

/// How a peer address fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// One of this box's addresses: allowed only to a live relayed address (relay mode).
    OwnAddress,
    Denied,
}

/// IPv4-mapped IPv6 addresses judged as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl DenyList {
    /// The verdict on a peer IP (a permission is per IP).
    pub fn ip(&self, ip: IpAddr) -> Verdict {
        let ip = canonical(ip);
        let always = ip.is_loopback()
            || ip.is_unspecified()
            || ip.is_multicast()
            || match ip {
                IpAddr::V4(a) => a.is_broadcast() || a.octets()[0] == 0,
                IpAddr::V6(_) => false,
            };
        if always || self.prefixes.iter().any(|p| p.contains(ip)) {
            return Verdict::Denied;
        }
        if self.own.iter().any(|a| canonical(*a) == ip) {
            return Verdict::OwnAddress;
        }
        Verdict::Allowed
    }

    /// Whether `peer` (address and port) may be relayed to: allowed, or one of this box's
    /// addresses at a port `is_relayed` says is a live relayed address.
    pub fn peer(&self, peer: SocketAddr, is_relayed: impl Fn(SocketAddr) -> bool) -> bool {
        match self.ip(peer.ip()) {
            Verdict::Allowed => true,
            Verdict::OwnAddress => is_relayed(peer),
            Verdict::Denied => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> DenyList {
        DenyList {
            own: vec![
                "198.18.1.1".parse().unwrap(),
                "2001:db8:1::1".parse().unwrap(),
            ],
            prefixes: vec!["203.0.113.0/24".parse().unwrap()],
        }
    }

    #[test]
    fn verdicts() {
        let d = list();
        for (ip, v) in [
            ("127.0.0.1", Verdict::Denied),
            ("127.1.2.3", Verdict::Denied),
            ("::1", Verdict::Denied),
            ("0.0.0.0", Verdict::Denied),
            ("0.1.2.3", Verdict::Denied),
            ("::", Verdict::Denied),
            ("224.0.0.1", Verdict::Denied),
            ("ff02::1", Verdict::Denied),
            ("255.255.255.255", Verdict::Denied),
            ("::ffff:127.0.0.1", Verdict::Denied),
            ("203.0.113.9", Verdict::Denied),
            ("::ffff:203.0.113.9", Verdict::Denied),
            ("198.18.1.1", Verdict::OwnAddress),
            ("::ffff:198.18.1.1", Verdict::OwnAddress),
            ("2001:db8:1::1", Verdict::OwnAddress),
            ("198.18.2.2", Verdict::Allowed),
            ("2001:db8:2::2", Verdict::Allowed),
        ] {
            assert_eq!(d.ip(ip.parse().unwrap()), v, "{ip}");
        }
    }

    #[test]
    fn own_address_only_at_a_relayed_port() {
        let d = list();
        let relayed: SocketAddr = "198.18.1.1:30000".parse().unwrap();
        let is_relayed = |a: SocketAddr| a == relayed;
        assert!(d.peer(relayed, is_relayed));
        assert!(!d.peer("198.18.1.1:9901".parse().unwrap(), is_relayed));
        assert!(!d.peer("127.0.0.1:30000".parse().unwrap(), is_relayed));
        assert!(d.peer("198.18.2.2:3480".parse().unwrap(), is_relayed));
    }
}
