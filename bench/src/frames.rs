//! Frames for the measurements, built by etherparse (checksums computed independently of
//! the code under test).
use anyhow::{Context, Result};
use etherparse::PacketBuilder;

/// Ethernet/IPv4/UDP frame with `payload`; `zero_csum` sends UDP checksum 0 ("none"), which
/// lets the generator change ports without touching a checksum.
pub fn udp4(
    macs: ([u8; 6], [u8; 6]),
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ttl: u8,
    payload: &[u8],
    zero_csum: bool,
) -> Result<Vec<u8>> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, ttl)
        .udp(src.1, dst.1);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).context("building a frame")?;
    if zero_csum {
        // UDP checksum: bytes 40..42 of an untagged frame without IP options.
        out[40] = 0;
        out[41] = 0;
    }
    Ok(out)
}

/// 172 bytes of RTP (12-byte header + 20 ms of G.711): a 200-byte IP packet.
pub fn rtp_payload() -> Vec<u8> {
    (0..172u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// A STUN Binding request without attributes (RFC 8489: type, length, cookie, txid).
pub fn stun_binding_request() -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ]);
    m
}
