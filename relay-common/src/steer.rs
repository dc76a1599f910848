//! Socket steering: which local UDP destinations the `sk_lookup` program hands to the
//! controller's one receive socket per relay address, instead of one bound socket per port.
//!
//! The key is the relay address as the kernel's `bpf_sk_lookup` context holds it (network
//! byte order words: IPv4 in `addr[0]`, the rest zero), so the program looks it up without
//! converting anything.

/// Address families as in `bpf_sk_lookup::family` (AF_INET, AF_INET6).
pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

/// Relay addresses one daemon steers (and receive sockets it holds).
pub const MAX_STEER_ADDRS: u32 = 64;

/// A relay address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SteerKey {
    pub family: u32,
    /// Network byte order words, as in `bpf_sk_lookup::local_ip4` / `local_ip6`.
    pub addr: [u32; 4],
}

/// The relay port range on that address and the receive socket's index in the socket map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerValue {
    /// Host byte order, inclusive.
    pub port_min: u32,
    pub port_max: u32,
    pub index: u32,
    pub _pad: u32,
}

impl SteerValue {
    /// Whether `port` (host byte order) is one of this address's relay ports.
    #[inline(always)]
    pub fn covers(&self, port: u32) -> bool {
        port >= self.port_min && port <= self.port_max
    }
}

#[cfg(feature = "user")]
impl SteerKey {
    /// The key of a relay address.
    pub fn of(ip: core::net::IpAddr) -> SteerKey {
        match ip {
            core::net::IpAddr::V4(a) => SteerKey {
                family: AF_INET,
                addr: [u32::from_ne_bytes(a.octets()), 0, 0, 0],
            },
            core::net::IpAddr::V6(a) => {
                let o = a.octets();
                let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                SteerKey {
                    family: AF_INET6,
                    addr: [w(0), w(4), w(8), w(12)],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<SteerKey>(), 20);
        assert_eq!(core::mem::size_of::<SteerValue>(), 16);
    }

    #[test]
    fn covers_is_inclusive() {
        let v = SteerValue {
            port_min: 30000,
            port_max: 30003,
            index: 0,
            _pad: 0,
        };
        assert!(!v.covers(29999));
        assert!(v.covers(30000) && v.covers(30003));
        assert!(!v.covers(30004));
    }

    #[cfg(feature = "user")]
    #[test]
    fn keys_hold_addresses_in_network_order() {
        // The kernel's local_ip4 for 198.18.0.1 read as a native u32 from the wire bytes.
        let k = SteerKey::of("198.18.0.1".parse().unwrap());
        assert_eq!(k.family, AF_INET);
        assert_eq!(k.addr[0].to_ne_bytes(), [198, 18, 0, 1]);
        assert_eq!(&k.addr[1..], &[0, 0, 0]);
        let k6 = SteerKey::of("2001:db8::7".parse().unwrap());
        assert_eq!(k6.family, AF_INET6);
        assert_eq!(k6.addr[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(k6.addr[3].to_ne_bytes(), [0, 0, 0, 7]);
    }
}
