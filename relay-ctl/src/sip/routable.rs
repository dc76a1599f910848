//! Which SDP addresses are "routable": seed 003 keeps the first IP channel from the invite's
//! SDP only when the client is reachable at it; a private address behind a NAT is learned
//! from the media instead (latching). What counts as private is the operator's call (a
//! carrier's own CGNAT range, say), so it is a list of prefixes with the usual defaults.
use std::net::IpAddr;

pub use crate::prefix::Prefix;

/// RFC 1918, RFC 6598 (CGNAT), loopback, link-local, "this network", and IPv6 ULA,
/// link-local and loopback: addresses a client behind a NAT typically puts in its SDP.
pub const DEFAULT_PRIVATE: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "0.0.0.0/8",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
];

pub fn default_private() -> Vec<Prefix> {
    DEFAULT_PRIVATE
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Routable: a unicast address outside every private prefix.
pub fn is_routable(ip: IpAddr, private: &[Prefix]) -> bool {
    let special = match ip {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
    };
    !special && !private.iter().any(|p| p.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    #[test]
    fn defaults() {
        let p = default_private();
        assert_eq!(p.len(), DEFAULT_PRIVATE.len());
        for private in [
            "10.1.2.3",
            "172.31.0.1",
            "100.127.0.1",
            "127.0.0.1",
            "fd00::1",
        ] {
            assert!(!is_routable(ip(private), &p), "{private}");
        }
        for special in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "ff02::1", "::"] {
            assert!(!is_routable(ip(special), &p), "{special}");
        }
        for public in ["198.51.100.2", "203.0.113.9", "2001:db8::1", "172.32.0.1"] {
            assert!(is_routable(ip(public), &p), "{public}");
        }
    }

    #[test]
    fn operator_prefixes() {
        let p: Vec<Prefix> = vec!["192.0.2.0/24".parse().expect("prefix")];
        assert!(!is_routable(ip("192.0.2.200"), &p));
        assert!(is_routable(ip("192.0.3.1"), &p));
        assert!(!is_routable(
            ip("192.0.2.1"),
            &["0.0.0.0/0".parse().expect("all")]
        ));
    }

    #[test]
    fn parse_errors() {
        for bad in ["192.0.2.0/33", "x/8", "2001:db8::/129", "1.2.3.4/-1"] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
        assert_eq!(
            "2001:db8::/32".parse::<Prefix>().map(|p| p.to_string()),
            Ok("2001:db8::/32".to_owned())
        );
        // A bare address is a host prefix.
        assert_eq!(
            "192.0.2.7".parse::<Prefix>().map(|p| p.to_string()),
            Ok("192.0.2.7/32".to_owned())
        );
    }
}
