//! TURN's methods and attributes (RFC 8656 sections 17-18) on top of the STUN codec
//! (`stun/message.rs`), and ChannelData framing (section 12.4).
use relay_common::turn::{CHANNEL_HEADER_LEN, CHANNEL_MAX_5766, CHANNEL_MIN};

pub const METHOD_ALLOCATE: u16 = 0x003;
pub const METHOD_REFRESH: u16 = 0x004;
pub const METHOD_SEND: u16 = 0x006;
pub const METHOD_DATA: u16 = 0x007;
pub const METHOD_CREATE_PERMISSION: u16 = 0x008;
pub const METHOD_CHANNEL_BIND: u16 = 0x009;

pub const ATTR_CHANNEL_NUMBER: u16 = 0x000c;
pub const ATTR_LIFETIME: u16 = 0x000d;
pub const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
pub const ATTR_DATA: u16 = 0x0013;
pub const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const ATTR_REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
pub const ATTR_EVEN_PORT: u16 = 0x0018;
pub const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
pub const ATTR_DONT_FRAGMENT: u16 = 0x001a;
pub const ATTR_RESERVATION_TOKEN: u16 = 0x0022;
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
pub const ATTR_ADDRESS_ERROR_CODE: u16 = 0x8001;
pub const ATTR_PASSWORD_ALGORITHMS: u16 = 0x8002;
pub const ATTR_ICMP: u16 = 0x8004;

/// REQUESTED-TRANSPORT's protocol number for UDP, the only one relayed (section 18.11).
pub const TRANSPORT_UDP: u8 = 17;
/// REQUESTED-ADDRESS-FAMILY values (section 18.3).
pub const FAMILY_V4: u8 = 0x01;
pub const FAMILY_V6: u8 = 0x02;

/// The comprehension-required attributes this server understands (anything else below
/// 0x8000 in a request gets 420 with UNKNOWN-ATTRIBUTES). DONT-FRAGMENT is left out on
/// purpose: userspace relaying cannot promise it, and the RFC's answer then is 420.
pub const KNOWN_REQUIRED: &[u16] = &[
    crate::stun::message::ATTR_MAPPED_ADDRESS,
    crate::stun::message::ATTR_USERNAME,
    crate::stun::message::ATTR_MESSAGE_INTEGRITY,
    crate::stun::message::ATTR_ERROR_CODE,
    crate::stun::message::ATTR_REALM,
    crate::stun::message::ATTR_NONCE,
    crate::stun::message::ATTR_MESSAGE_INTEGRITY_SHA256,
    crate::stun::message::ATTR_USERHASH,
    crate::stun::message::ATTR_XOR_MAPPED_ADDRESS,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_XOR_RELAYED_ADDRESS,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_RESERVATION_TOKEN,
];

/// A u32 attribute (LIFETIME).
pub fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// CHANNEL-NUMBER's number (the top 16 bits; the rest is RFFU).
pub fn channel_of(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

pub fn channel_attr(ch: u16) -> [u8; 4] {
    let b = ch.to_be_bytes();
    [b[0], b[1], 0, 0]
}

/// A channel number this server binds (and XDP relays): RFC 5766's range, for clients
/// written for it (`relay_common::turn::CHANNEL_MAX_5766`).
pub fn is_channel(ch: u16) -> bool {
    (CHANNEL_MIN..=CHANNEL_MAX_5766).contains(&ch)
}

/// The first byte says ChannelData (0b01 in the top two bits: 64-127, section 12; RFC 7983
/// narrows it to 64-79 where DTLS and SRTP share the port, which a TURN port does not).
pub fn looks_like_channel_data(b: &[u8]) -> bool {
    b.first().is_some_and(|x| (0x40..=0x7f).contains(x))
}

/// A ChannelData message: channel number and the application data (without padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub data: &'a [u8],
}

/// Parse ChannelData from a datagram. Over UDP the padding may be missing (section 12.5);
/// bytes beyond the length (padding) are ignored. `None`: not a valid frame.
pub fn parse_channel_data(b: &[u8]) -> Option<ChannelData<'_>> {
    let h = b.get(..CHANNEL_HEADER_LEN)?;
    let channel = u16::from_be_bytes([h[0], h[1]]);
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if !is_channel(channel) {
        return None;
    }
    let data = b.get(CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len)?;
    Some(ChannelData { channel, data })
}

/// The length of the ChannelData frame at the start of a stream buffer, padding included
/// (TCP/TLS carry it padded to 4, section 12.5); `None` until the header is there.
pub fn channel_frame_len(b: &[u8]) -> Option<usize> {
    let h = b.get(..CHANNEL_HEADER_LEN)?;
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    Some(CHANNEL_HEADER_LEN + len.div_ceil(4) * 4)
}

/// Bytes on a TURN stream that are neither a STUN message nor ChannelData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAFrame;

/// The length of the message at the start of a stream buffer (section 3.1: STUN messages and
/// ChannelData padded to 4 share the stream): `Ok(None)` until enough has arrived to tell,
/// `Err` when the first bytes are neither (the stream is then closed).
pub fn stream_frame_len(b: &[u8]) -> Result<Option<usize>, NotAFrame> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    match first >> 6 {
        0 => {
            let Some(h) = b.get(..4) else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if !len.is_multiple_of(4) {
                return Err(NotAFrame);
            }
            Ok(Some(relay_common::stun::HEADER_LEN + len))
        }
        1 => Ok(channel_frame_len(b)),
        _ => Err(NotAFrame),
    }
}

/// ChannelData for `data` on `channel`; `pad`: padded to a multiple of 4 (always over
/// streams; over UDP too, as the RFC recommends and the XDP path does).
pub fn channel_data(channel: u16, data: &[u8], pad: bool) -> Vec<u8> {
    let len = data.len().min(usize::from(u16::MAX));
    let mut v = Vec::with_capacity(CHANNEL_HEADER_LEN + len + 3);
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&data[..len]);
    if pad {
        while !v.len().is_multiple_of(4) {
            v.push(0);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_round_trip_and_padding() {
        let f = channel_data(0x4001, b"hello", true);
        assert_eq!(f.len(), 12);
        assert_eq!(&f[..4], &[0x40, 0x01, 0, 5]);
        assert_eq!(
            parse_channel_data(&f),
            Some(ChannelData {
                channel: 0x4001,
                data: b"hello"
            })
        );
        assert_eq!(channel_frame_len(&f), Some(12));
        // Unpadded over UDP is fine; truncated is not; a number outside the range is not.
        assert!(parse_channel_data(&channel_data(0x4001, b"hello", false)).is_some());
        assert_eq!(parse_channel_data(&f[..8]), None);
        assert_eq!(parse_channel_data(&[0x80, 0, 0, 0]), None);
        assert_eq!(parse_channel_data(&[0x40, 0]), None);
        assert!(looks_like_channel_data(&f));
        assert!(!looks_like_channel_data(&[0x00, 1]));
    }

    #[test]
    fn stream_framing() {
        let cd = channel_data(0x4001, b"hello", true);
        assert_eq!(stream_frame_len(&cd), Ok(Some(12)));
        assert_eq!(stream_frame_len(&cd[..2]), Ok(None));
        assert_eq!(stream_frame_len(&[]), Ok(None));
        let stun =
            crate::stun::message::Builder::new(1, crate::stun::message::Class::Request, [0; 12])
                .finish(true);
        assert_eq!(stream_frame_len(&stun), Ok(Some(stun.len())));
        assert_eq!(stream_frame_len(&[0x00, 0x01, 0x00, 0x03]), Err(NotAFrame));
        assert_eq!(stream_frame_len(&[0x80]), Err(NotAFrame));
    }

    #[test]
    fn attribute_values() {
        assert_eq!(channel_of(&channel_attr(0x4abc)), Some(0x4abc));
        assert_eq!(u32_of(&600u32.to_be_bytes()), Some(600));
        assert_eq!(u32_of(&[1, 2]), None);
        assert!(is_channel(0x4000) && is_channel(0x4fff));
        assert!(!is_channel(0x3fff) && !is_channel(0x8000));
        assert!(is_channel(0x5000) && is_channel(0x7fff));
    }
}
