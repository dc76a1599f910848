//! The stateless reflector's wire header (version 1) and the data-plane configuration.
//!
//! A sender puts [`ReflectHeader`] in front of its UDP payload and sends it to the reflector
//! port; XDP checks it, strips it and sends the payload from `src` to `dst`. The byte layout,
//! the MAC input and a worked example are in docs/reflector.md (the example's bytes are
//! checked by `worked_example` below).
use crate::{
    Endpoint, Family,
    siphash::{SipKey, siphash24_blocks},
};

/// "RFL" + 0x01: never a valid RTP (version 2) or STUN (top bits 00, cookie) first word.
pub const MAGIC: [u8; 4] = [0x52, 0x46, 0x4c, 0x01];
pub const VERSION: u8 = 1;
/// Bytes of a version 1 header in front of the payload.
pub const HEADER_LEN: usize = 56;
/// Offset of the MAC; everything before it is MAC input.
pub const MAC_OFFSET: usize = 48;
/// 8-byte blocks of the MAC input: the 48 header bytes before the MAC, the outer source
/// address (16, IPv4-mapped), the outer source port (2, network order) and 6 zero bytes.
pub const MAC_BLOCKS: usize = 9;

/// Version 1 header, exactly as on the wire (all byte arrays: alignment 1, no padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReflectHeader {
    pub magic: [u8; 4],
    pub version: u8,
    /// Reserved, must be 0 in version 1 (a future flag may select another layout).
    pub flags: u8,
    /// Big-endian key id: which key in the key map signed this ticket.
    pub key_id: [u8; 2],
    /// Big-endian unix seconds; the ticket is refused once the reflector's clock is past it.
    pub expiry: [u8; 4],
    /// Source to write: one of the reflector's own addresses (IPv4-mapped for IPv4).
    pub src_addr: [u8; 16],
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    /// Destination to write (IPv4-mapped for IPv4).
    pub dst_addr: [u8; 16],
    /// SipHash-2-4 tag, little-endian bytes of the 64-bit result.
    pub mac: [u8; 8],
}

/// `RELAY_CONFIG[0]`: what XDP answers besides relay legs. Ports in host order, 0 = off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataPlaneConfig {
    pub reflector_port: u16,
    pub stun_port: u16,
    /// Reflected packets per second per outer source IPv4; 0 = unlimited.
    pub reflect_rate: u32,
    /// Packets a source may send at once before the rate applies (0 is taken as 1).
    pub reflect_burst: u32,
    /// TURN listen port (0 = off): ChannelData to this port on an own address takes the
    /// TURN path (`turn.rs`); STUN-format messages to it still go to the STUN answerer or
    /// the controller, so it may equal `stun_port`.
    pub turn_port: u16,
    pub _pad: u16,
}

/// Value of the own-addresses map (its key is a 16-byte IPv4-mapped address).
pub const OWN_ADDR_PRESENT: u8 = 1;

/// IPv4-mapped 16-byte form of an IPv4 address (the key of the address maps).
#[inline(always)]
pub const fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    Endpoint::v4(a, 0).addr
}

/// Bytes 12..16 if `addr` is IPv4-mapped.
#[inline(always)]
pub fn v4_of_mapped(addr: &[u8; 16]) -> Option<[u8; 4]> {
    let mut i = 0;
    while i < 10 {
        if addr[i] != 0 {
            return None;
        }
        i += 1;
    }
    if addr[10] != 0xff || addr[11] != 0xff {
        return None;
    }
    Some([addr[12], addr[13], addr[14], addr[15]])
}

#[inline(always)]
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

impl ReflectHeader {
    /// An unsigned header (MAC zero) for `src` -> `dst`, valid until `expiry`.
    pub fn new(key_id: u16, src: &Endpoint, dst: &Endpoint, expiry: u32) -> ReflectHeader {
        ReflectHeader {
            magic: MAGIC,
            version: VERSION,
            flags: 0,
            key_id: key_id.to_be_bytes(),
            expiry: expiry.to_be_bytes(),
            src_addr: src.addr,
            src_port: src.port_be.to_ne_bytes(),
            dst_port: dst.port_be.to_ne_bytes(),
            dst_addr: dst.addr,
            mac: [0; 8],
        }
    }

    pub const fn key_id(&self) -> u16 {
        u16::from_be_bytes(self.key_id)
    }

    pub const fn expiry(&self) -> u32 {
        u32::from_be_bytes(self.expiry)
    }

    /// The requested source (family from the address form: IPv4-mapped or IPv6).
    pub fn src(&self) -> Endpoint {
        endpoint(self.src_addr, self.src_port)
    }

    pub fn dst(&self) -> Endpoint {
        endpoint(self.dst_addr, self.dst_port)
    }

    /// The header as wire bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        *self.as_bytes()
    }

    /// The header's wire bytes in place (no copy: the data plane's stack is 512 bytes).
    #[inline(always)]
    pub fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        // SAFETY: repr(C) of byte arrays only: 56 bytes, alignment 1, no padding.
        unsafe { &*(self as *const ReflectHeader as *const [u8; HEADER_LEN]) }
    }

    /// The header at the start of `b`, if `b` is long enough (no field is checked).
    pub fn from_bytes(b: &[u8]) -> Option<ReflectHeader> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        // SAFETY: every bit pattern is a valid ReflectHeader (byte arrays only).
        Some(unsafe { core::mem::transmute_copy(b) })
    }

    /// The MAC input (see [`MAC_BLOCKS`]); `outer_addr` is the packet's outer source,
    /// IPv4-mapped, `outer_port_be` its source port as in the UDP header.
    #[inline(always)]
    pub fn mac_blocks(&self, outer_addr: &[u8; 16], outer_port_be: u16) -> [u64; MAC_BLOCKS] {
        let mut b = [0u64; MAC_BLOCKS];
        self.write_mac_blocks(outer_addr, outer_port_be, &mut b);
        b
    }

    /// [`Self::mac_blocks`] written into `out` (the data plane passes per-CPU map memory:
    /// 72 bytes on its 512-byte stack would not fit next to the rest of the path).
    #[inline(always)]
    pub fn write_mac_blocks(
        &self,
        outer_addr: &[u8; 16],
        outer_port_be: u16,
        out: &mut [u64; MAC_BLOCKS],
    ) {
        let h = self.as_bytes();
        let p = outer_port_be.to_ne_bytes();
        let mut i = 0;
        while i < 6 {
            out[i] = le64(h, 8 * i);
            i += 1;
        }
        out[6] = le64(outer_addr, 0);
        out[7] = le64(outer_addr, 8);
        out[8] = u64::from_le_bytes([p[0], p[1], 0, 0, 0, 0, 0, 0]);
    }

    /// The tag for this header sent from `outer_addr`:`outer_port_be`.
    #[inline(always)]
    pub fn compute_mac(&self, key: &SipKey, outer_addr: &[u8; 16], outer_port_be: u16) -> [u8; 8] {
        siphash24_blocks(key, &self.mac_blocks(outer_addr, outer_port_be)).to_le_bytes()
    }

    /// Fill in the MAC for a sender at `outer`.
    pub fn sign(&mut self, key: &SipKey, outer: &Endpoint) {
        self.mac = self.compute_mac(key, &outer.addr, outer.port_be);
    }
}

fn endpoint(addr: [u8; 16], port: [u8; 2]) -> Endpoint {
    let family = if v4_of_mapped(&addr).is_some() {
        Family::V4
    } else {
        Family::V6
    };
    Endpoint {
        addr,
        port_be: u16::from_ne_bytes(port),
        family: family as u8,
        _pad: 0,
    }
}

#[cfg(feature = "user")]
mod build {
    use super::*;
    use std::vec::Vec;

    /// A reflector packet's UDP payload: a header for `src` -> `dst` signed with `key`
    /// (known to the data plane as `key_id`) for a sender whose packets leave its NAT from
    /// `sender`, followed by `payload`.
    pub fn reflector_payload(
        key: &SipKey,
        key_id: u16,
        src: &Endpoint,
        dst: &Endpoint,
        expiry: u32,
        sender: &Endpoint,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut h = ReflectHeader::new(key_id, src, dst, expiry);
        h.sign(key, sender);
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&h.to_bytes());
        out.extend_from_slice(payload);
        out
    }
}
#[cfg(feature = "user")]
pub use build::reflector_payload;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::siphash::siphash24;

    #[test]
    fn layout() {
        assert_eq!(core::mem::size_of::<ReflectHeader>(), HEADER_LEN);
        assert_eq!(core::mem::align_of::<ReflectHeader>(), 1);
        assert_eq!(core::mem::offset_of!(ReflectHeader, mac), MAC_OFFSET);
        assert_eq!(core::mem::offset_of!(ReflectHeader, src_addr), 12);
        assert_eq!(core::mem::offset_of!(ReflectHeader, dst_addr), 32);
        assert_eq!(core::mem::size_of::<DataPlaneConfig>(), 16);
    }

    /// The worked example of docs/reflector.md, byte for byte.
    #[test]
    fn worked_example() {
        let key = SipKey::from_bytes(core::array::from_fn(|i| i as u8));
        let src = Endpoint::v4([203, 0, 113, 1], 3478);
        let dst = Endpoint::v4([198, 51, 100, 7], 40000);
        let sender = Endpoint::v4([192, 0, 2, 10], 5004);
        let mut h = ReflectHeader::new(7, &src, &dst, 1_800_000_000);
        h.sign(&key, &sender);
        let want: [u8; HEADER_LEN] = [
            0x52, 0x46, 0x4c, 0x01, 0x01, 0x00, 0x00, 0x07, // magic, version, flags, key id
            0x6b, 0x49, 0xd2, 0x00, // expiry 1800000000
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 1, // src 203.0.113.1
            0x0d, 0x96, 0x9c, 0x40, // src port 3478, dst port 40000
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7, // dst 198.51.100.7
            0xe4, 0x4b, 0xde, 0x0d, 0xc3, 0x7d, 0xd3, 0xf6, // MAC
        ];
        assert_eq!(h.to_bytes(), want, "{:02x?}", h.to_bytes());

        // The MAC is SipHash-2-4 of the documented 72-byte input, by the byte-string form.
        let mut input = [0u8; 72];
        input[..48].copy_from_slice(&want[..48]);
        input[48..64].copy_from_slice(&sender.addr);
        input[64..66].copy_from_slice(&5004u16.to_be_bytes());
        assert_eq!(siphash24(&key, &input).to_le_bytes(), h.mac);
    }

    #[test]
    fn codec_round_trip_and_fields() {
        let src = Endpoint::v4([198, 18, 1, 1], 3478);
        let dst = Endpoint::v6([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 9);
        let h = ReflectHeader::new(0xbeef, &src, &dst, 42);
        let mut wire = h.to_bytes().to_vec();
        wire.extend_from_slice(b"payload");
        let back = ReflectHeader::from_bytes(&wire).unwrap();
        assert_eq!(back, h);
        assert_eq!((back.key_id(), back.expiry()), (0xbeef, 42));
        assert_eq!(back.src(), src);
        assert_eq!(back.dst(), dst);
        assert!(ReflectHeader::from_bytes(&wire[..HEADER_LEN - 1]).is_none());
        assert_eq!(v4_of_mapped(&v4_mapped([1, 2, 3, 4])), Some([1, 2, 3, 4]));
        assert_eq!(v4_of_mapped(&dst.addr), None);
    }

    #[test]
    fn mac_binds_every_field_and_the_sender() {
        let key = SipKey::from_bytes([9; 16]);
        let src = Endpoint::v4([198, 18, 1, 1], 3478);
        let dst = Endpoint::v4([198, 18, 2, 2], 6004);
        let sender = Endpoint::v4([198, 18, 1, 2], 5004);
        let mut h = ReflectHeader::new(1, &src, &dst, 100);
        h.sign(&key, &sender);
        let ok = h.compute_mac(&key, &sender.addr, sender.port_be);
        assert_eq!(ok, h.mac);
        // Another sender address or port, or any header bit changed: another tag.
        let other = Endpoint::v4([198, 18, 1, 3], 5004);
        assert_ne!(h.compute_mac(&key, &other.addr, other.port_be), ok);
        assert_ne!(h.compute_mac(&key, &sender.addr, 5005u16.to_be()), ok);
        let bytes = h.to_bytes();
        for i in 0..MAC_OFFSET {
            let mut b = bytes;
            b[i] ^= 1;
            let t = ReflectHeader::from_bytes(&b).unwrap();
            assert_ne!(
                t.compute_mac(&key, &sender.addr, sender.port_be),
                ok,
                "byte {i}"
            );
        }
        assert_ne!(
            h.compute_mac(&SipKey::from_bytes([8; 16]), &sender.addr, sender.port_be),
            ok
        );
    }
}

#[cfg(all(test, feature = "user"))]
mod builder_tests {
    use super::*;

    #[test]
    fn builder_signs_for_the_sender_and_appends_the_payload() {
        let key = SipKey::from_bytes([3; 16]);
        let src = Endpoint::v4([198, 18, 1, 1], 3478);
        let dst = Endpoint::v4([198, 18, 2, 2], 6004);
        let sender = Endpoint::v4([198, 18, 1, 2], 5004);
        let p = reflector_payload(&key, 5, &src, &dst, 77, &sender, b"hello");
        assert_eq!(p.len(), HEADER_LEN + 5);
        assert_eq!(&p[HEADER_LEN..], b"hello");
        let h = ReflectHeader::from_bytes(&p).unwrap();
        assert_eq!(
            (h.key_id(), h.expiry(), h.src(), h.dst()),
            (5, 77, src, dst)
        );
        assert_eq!(h.mac, h.compute_mac(&key, &sender.addr, sender.port_be));
    }
}
