//! Which SDP addresses are "routable": seed 003 keeps the first IP channel from the invite's
//! SDP only when the client is reachable at it; a private address behind a NAT is learned
//! from the media instead (latching). What counts as private is the operator's call (a
//! carrier's own CGNAT range, say), so it is a list of prefixes with the usual defaults.
use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};

/// An IPv4 or IPv6 prefix, `addr/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(p) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix, String> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a prefix (addr/len)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?;
        Ok(Prefix { addr, len })
    }
}

impl TryFrom<String> for Prefix {
    type Error = String;
    fn try_from(s: String) -> Result<Prefix, String> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.to_string()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

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
        for bad in [
            "192.0.2.0",
            "192.0.2.0/33",
            "x/8",
            "2001:db8::/129",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
        assert_eq!(
            "2001:db8::/32".parse::<Prefix>().map(|p| p.to_string()),
            Ok("2001:db8::/32".to_owned())
        );
    }
}
