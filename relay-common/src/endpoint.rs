//! An address:port as the data plane sees it: 16 address bytes plus a family tag, so IPv6 and
//! v4/v6 bridging need no change to map layouts.

/// Address family tag stored in [`Endpoint::family`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// No address: an unlatched leg's source, for example.
    None = 0,
    V4 = 4,
    V6 = 6,
}

/// An IP endpoint in network byte order.
///
/// IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2): bytes 12..16 hold the
/// address, so the data plane compares and copies one aligned `u32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Endpoint {
    pub addr: [u8; 16],
    /// UDP port, network byte order (the fast path copies it without swapping).
    pub port_be: u16,
    /// A [`Family`] value.
    pub family: u8,
    pub _pad: u8,
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl Endpoint {
    /// The "no endpoint" value (family `None`).
    pub const NONE: Endpoint = Endpoint {
        addr: [0; 16],
        port_be: 0,
        family: Family::None as u8,
        _pad: 0,
    };

    /// An IPv4 endpoint from the address as it appears on the wire and a host-order port.
    #[inline(always)]
    pub const fn v4(octets: [u8; 4], port: u16) -> Endpoint {
        let mut addr = [0u8; 16];
        let mut i = 0;
        while i < 12 {
            addr[i] = V4_MAPPED_PREFIX[i];
            i += 1;
        }
        addr[12] = octets[0];
        addr[13] = octets[1];
        addr[14] = octets[2];
        addr[15] = octets[3];
        Endpoint {
            addr,
            port_be: port.to_be(),
            family: Family::V4 as u8,
            _pad: 0,
        }
    }

    /// An IPv6 endpoint from its 16 wire bytes and a host-order port.
    pub const fn v6(addr: [u8; 16], port: u16) -> Endpoint {
        Endpoint {
            addr,
            port_be: port.to_be(),
            family: Family::V6 as u8,
            _pad: 0,
        }
    }

    /// The IPv4 address bytes (meaningful only when `family == V4`).
    #[inline(always)]
    pub const fn v4_octets(&self) -> [u8; 4] {
        [self.addr[12], self.addr[13], self.addr[14], self.addr[15]]
    }

    /// The IPv4 address as a `u32` in memory (network) byte order, as it sits in a header.
    #[inline(always)]
    pub const fn v4_raw(&self) -> u32 {
        u32::from_ne_bytes(self.v4_octets())
    }

    /// The port in host byte order.
    #[inline(always)]
    pub const fn port(&self) -> u16 {
        u16::from_be(self.port_be)
    }

    pub const fn is_v4(&self) -> bool {
        self.family == Family::V4 as u8
    }

    pub const fn is_none(&self) -> bool {
        self.family == Family::None as u8
    }
}

#[cfg(feature = "user")]
mod std_conv {
    use super::Endpoint;
    use std::net::{IpAddr, SocketAddr};

    impl From<SocketAddr> for Endpoint {
        fn from(sa: SocketAddr) -> Endpoint {
            match sa.ip() {
                IpAddr::V4(ip) => Endpoint::v4(ip.octets(), sa.port()),
                // An IPv4-mapped IPv6 address is an IPv4 peer: keep one canonical form.
                IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                    Some(v4) => Endpoint::v4(v4.octets(), sa.port()),
                    None => Endpoint::v6(ip.octets(), sa.port()),
                },
            }
        }
    }

    impl Endpoint {
        /// The socket address, or `None` for an empty or malformed endpoint.
        pub fn to_socket_addr(&self) -> Option<SocketAddr> {
            if self.is_v4() {
                Some(SocketAddr::from((self.v4_octets(), self.port())))
            } else if self.family == super::Family::V6 as u8 {
                Some(SocketAddr::from((self.addr, self.port())))
            } else {
                None
            }
        }
    }

    impl core::fmt::Display for Endpoint {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self.to_socket_addr() {
                Some(sa) => write!(f, "{sa}"),
                None => f.write_str("-"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_is_mapped_and_port_is_network_order() {
        let e = Endpoint::v4([198, 18, 0, 1], 30000);
        assert_eq!(&e.addr[..12], &V4_MAPPED_PREFIX);
        assert_eq!(e.v4_octets(), [198, 18, 0, 1]);
        assert_eq!(e.port_be.to_ne_bytes(), 30000u16.to_be_bytes());
        assert_eq!(e.port(), 30000);
        assert!(e.is_v4() && !e.is_none());
        assert!(Endpoint::NONE.is_none());
    }

    #[test]
    fn layout_has_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<Endpoint>(), 20);
        assert_eq!(core::mem::align_of::<Endpoint>(), 2);
    }
}
