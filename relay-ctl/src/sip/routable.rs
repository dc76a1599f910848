//! Which SDP addresses are "routable": seed 003 keeps the first IP channel from the invite's
//! SDP only when the client is reachable at it; a private address behind a NAT is learned
//! from the media instead (latching). Built in: what the standard library classifies as
//! private, loopback, link-local or unspecified (RFC 1918, RFC 3927, IPv6 unique-local and
//! link-local), RFC 6598's shared CGNAT space, "this network" (0/8), multicast and broadcast.
//! The operator adds their own non-routable prefixes (`--sip-private-net`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::prefix::Prefix;

fn builtin_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    // RFC 6598 shared address space (100.64.0.0/10): std's `is_shared` is not stable yet.
    let cgnat = o[0] == 100 && o[1] & 0xc0 == 64;
    a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || o[0] == 0
        || cgnat
}

fn builtin_v6(a: Ipv6Addr) -> bool {
    // An IPv4-mapped address is judged as the IPv4 address it carries.
    if let Some(v4) = a.to_ipv4_mapped() {
        return builtin_v4(v4);
    }
    a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || a.is_unique_local()
        || a.is_unicast_link_local()
}

/// Routable: not in the built-in classes above and outside every operator prefix.
pub fn is_routable(ip: IpAddr, private: &[Prefix]) -> bool {
    let builtin = match ip {
        IpAddr::V4(a) => builtin_v4(a),
        IpAddr::V6(a) => builtin_v6(a),
    };
    !builtin && !private.iter().any(|p| p.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    proptest::proptest! {
        /// Every IPv4 address std calls private, loopback or link-local, and every address
        /// of the CGNAT and "this network" blocks, is not routable without any operator
        /// prefix; nor is its IPv4-mapped IPv6 form.
        #[test]
        fn builtin_v4_classes(bits: u32) {
            let a = Ipv4Addr::from(bits);
            let o = a.octets();
            let special = a.is_private() || a.is_loopback() || a.is_link_local()
                || a.is_multicast() || a.is_broadcast() || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]));
            proptest::prop_assert_eq!(is_routable(a.into(), &[]), !special);
            proptest::prop_assert_eq!(is_routable(a.to_ipv6_mapped().into(), &[]), !special);
        }

        #[test]
        fn builtin_v6_classes(bits: u128) {
            let a = Ipv6Addr::from(bits);
            proptest::prop_assume!(a.to_ipv4_mapped().is_none());
            let special = a.is_unspecified() || a.is_loopback() || a.is_multicast()
                || a.is_unique_local() || a.is_unicast_link_local();
            proptest::prop_assert_eq!(is_routable(a.into(), &[]), !special);
        }
    }

    #[test]
    fn test_and_documentation_ranges_are_routable_by_default() {
        for public in [
            "198.51.100.2",
            "203.0.113.9",
            "192.0.2.2",
            "198.18.1.1",
            "2001:db8::1",
            "100.128.0.1",
        ] {
            assert!(is_routable(ip(public), &[]), "{public}");
        }
        for special in [
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "ff02::1",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
        ] {
            assert!(!is_routable(ip(special), &[]), "{special}");
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
