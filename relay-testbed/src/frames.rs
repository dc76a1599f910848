//! Test frames built with etherparse, an independent packet library: every checksum in an
//! expected frame is computed by it, never by the code under test. The fixture table builds
//! its inputs and expected outputs with these, the benchmark its measurement frames.
use anyhow::{Context, Result};
use etherparse::{
    EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header,
    SingleVlanHeader, SlicedPacket, TransportSlice, UdpHeader, VlanId, VlanPcp,
};

/// An Ethernet (+ optional 802.1Q) / IPv4 / UDP frame described field by field.
#[derive(Clone, Debug)]
pub struct Udp4 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub ttl: u8,
    pub payload: Vec<u8>,
    /// Send UDP checksum 0 ("no checksum", legal over IPv4).
    pub zero_udp_csum: bool,
    /// IPv4 options (multiple of 4 bytes).
    pub ip_options: Vec<u8>,
    pub more_fragments: bool,
    pub frag_offset: u16,
    /// Layer 4 protocol; anything but UDP writes `payload` directly after the IPv4 header.
    pub protocol: IpNumber,
    /// Lie in the IPv4 total length (checksum still correct), to test length checks.
    pub total_len_override: Option<u16>,
}

impl Udp4 {
    pub fn new(
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
    ) -> Udp4 {
        Udp4 {
            src_mac,
            dst_mac,
            vlan: None,
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            ttl: 64,
            payload: rtp_payload(),
            zero_udp_csum: false,
            ip_options: vec![],
            more_fragments: false,
            frag_offset: 0,
            protocol: IpNumber::UDP,
            total_len_override: None,
        }
    }

    /// The frame; panics where [`Udp4::try_bytes`] fails (for tables of test cases).
    pub fn bytes(&self) -> Vec<u8> {
        self.try_bytes().expect("a frame etherparse can write")
    }

    /// The frame, or why etherparse cannot write it (e.g. a payload beyond 64 KiB).
    pub fn try_bytes(&self) -> Result<Vec<u8>> {
        let l4_len = if self.protocol == IpNumber::UDP {
            UdpHeader::LEN + self.payload.len()
        } else {
            self.payload.len()
        };
        let mut ip = Ipv4Header::new(l4_len as u16, self.ttl, self.protocol, self.src, self.dst)
            .context("ipv4 header")?;
        ip.options = self.ip_options.as_slice().try_into().context("options")?;
        // Options lengthen the header; the total length must say so.
        ip.total_len = (ip.header_len() + l4_len) as u16;
        ip.more_fragments = self.more_fragments;
        ip.fragment_offset = IpFragOffset::try_new(self.frag_offset).context("offset")?;
        ip.identification = 0x1234;
        let true_ip = ip.clone();
        if let Some(len) = self.total_len_override {
            ip.total_len = len;
        }
        ip.header_checksum = ip.calc_header_checksum();

        let mut out = Vec::new();
        let (outer_type, inner_type) = match self.vlan {
            Some(_) => (EtherType::VLAN_TAGGED_FRAME, EtherType::IPV4),
            None => (EtherType::IPV4, EtherType::IPV4),
        };
        Ethernet2Header {
            source: self.src_mac,
            destination: self.dst_mac,
            ether_type: outer_type,
        }
        .write(&mut out)
        .context("eth")?;
        if let Some(id) = self.vlan {
            SingleVlanHeader {
                pcp: VlanPcp::try_new(5).context("pcp")?,
                drop_eligible_indicator: false,
                vlan_id: VlanId::try_new(id).context("vlan id")?,
                ether_type: inner_type,
            }
            .write(&mut out)
            .context("vlan")?;
        }
        ip.write(&mut out).context("ip")?;
        if self.protocol == IpNumber::UDP {
            let mut udp =
                UdpHeader::with_ipv4_checksum(self.sport, self.dport, &true_ip, &self.payload)
                    .context("udp")?;
            if self.zero_udp_csum {
                udp.checksum = 0;
            }
            udp.write(&mut out).context("udp")?;
        }
        out.extend_from_slice(&self.payload);
        Ok(out)
    }
}

/// 172 bytes of RTP (an RTP header plus 160 bytes of G.711, 20 ms): a 200-byte IPv4 packet.
pub fn rtp_payload() -> Vec<u8> {
    (0..172u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// A non-IP frame (e.g. ARP) of the given EtherType.
pub fn raw_l2(ether_type: EtherType, src_mac: [u8; 6], dst_mac: [u8; 6], body: &[u8]) -> Vec<u8> {
    let mut out = Ethernet2Header {
        source: src_mac,
        destination: dst_mac,
        ether_type,
    }
    .to_bytes()
    .to_vec();
    out.extend_from_slice(body);
    out
}

/// UDP payload bytes of a frame by etherparse's reading of the UDP length field (the program
/// uses the IP total length: an independent measure of what `fwd_bytes` must grow by).
pub fn udp_payload_len(frame: &[u8]) -> u64 {
    match SlicedPacket::from_ethernet(frame).map(|p| p.transport) {
        Ok(Some(TransportSlice::Udp(udp))) => u64::from(udp.length()) - UdpHeader::LEN as u64,
        other => panic!("not a UDP frame: {other:?}"),
    }
}

/// Hex dump with the first differing offset, for failure messages.
pub fn diff(got: &[u8], want: &[u8]) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "lengths got {} want {}, first difference at byte {first}\n   got: {}\n  want: {}",
        got.len(),
        want.len(),
        hex(&got[first.saturating_sub(4)..got.len().min(first + 24)]),
        hex(&want[first.saturating_sub(4)..want.len().min(first + 24)]),
    )
}

/// An Ethernet (+ optional 802.1Q) / IPv6 / UDP frame, or another next header with a raw
/// body (extension headers, fragments, TCP) to test what the fast path refuses.
#[derive(Clone, Debug)]
pub struct Udp6 {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub hop_limit: u8,
    pub flow_label: u32,
    pub payload: Vec<u8>,
    /// Send UDP checksum 0 (forbidden over IPv6, RFC 8200 8.1).
    pub zero_udp_csum: bool,
    /// Next header; anything but UDP writes `payload` directly after the IPv6 header.
    pub next_header: IpNumber,
    /// Lie in the payload length, to test length checks.
    pub payload_len_override: Option<u16>,
}

impl Udp6 {
    pub fn new(
        src: ([u8; 16], u16),
        dst: ([u8; 16], u16),
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
    ) -> Udp6 {
        Udp6 {
            src_mac,
            dst_mac,
            vlan: None,
            src: src.0,
            dst: dst.0,
            sport: src.1,
            dport: dst.1,
            hop_limit: 64,
            flow_label: 0x12345,
            payload: (0..172u32).map(|i| (i * 5 + 1) as u8).collect(),
            zero_udp_csum: false,
            next_header: IpNumber::UDP,
            payload_len_override: None,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let l4_len = if self.next_header == IpNumber::UDP {
            UdpHeader::LEN + self.payload.len()
        } else {
            self.payload.len()
        };
        let ip = Ipv6Header {
            traffic_class: 0xb8,
            flow_label: Ipv6FlowLabel::try_new(self.flow_label).expect("flow label"),
            payload_length: self.payload_len_override.unwrap_or(l4_len as u16),
            next_header: self.next_header,
            hop_limit: self.hop_limit,
            source: self.src,
            destination: self.dst,
        };
        let mut out = Vec::new();
        let outer_type = match self.vlan {
            Some(_) => EtherType::VLAN_TAGGED_FRAME,
            None => EtherType::IPV6,
        };
        Ethernet2Header {
            source: self.src_mac,
            destination: self.dst_mac,
            ether_type: outer_type,
        }
        .write(&mut out)
        .expect("eth");
        if let Some(id) = self.vlan {
            SingleVlanHeader {
                pcp: VlanPcp::try_new(5).expect("pcp"),
                drop_eligible_indicator: false,
                vlan_id: VlanId::try_new(id).expect("vlan id"),
                ether_type: EtherType::IPV6,
            }
            .write(&mut out)
            .expect("vlan");
        }
        ip.write(&mut out).expect("ipv6");
        if self.next_header == IpNumber::UDP {
            let true_ip = Ipv6Header {
                payload_length: l4_len as u16,
                ..ip.clone()
            };
            let mut udp =
                UdpHeader::with_ipv6_checksum(self.sport, self.dport, &true_ip, &self.payload)
                    .expect("udp");
            if self.zero_udp_csum {
                udp.checksum = 0;
            }
            udp.write(&mut out).expect("udp");
        }
        out.extend_from_slice(&self.payload);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 1, 2];
    const B: [u8; 6] = [2, 0, 0, 0, 1, 1];

    #[test]
    fn udp4_is_what_it_says_with_valid_checksums() {
        let f = Udp4::new(([198, 18, 1, 2], 5004), ([198, 18, 1, 1], 30000), A, B).bytes();
        assert_eq!(f.len(), 14 + 20 + 8 + 172);
        let p = SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4: {:?}", p.net)
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP")
        };
        let want = udp
            .to_header()
            .calc_checksum_ipv4(&h, udp.payload())
            .expect("checksum");
        assert_eq!(udp.checksum(), want);
        assert_eq!((udp.source_port(), udp.destination_port()), (5004, 30000));
        assert_eq!(udp_payload_len(&f), 172);
    }

    #[test]
    fn udp4_zero_checksum_and_vlan() {
        let mut u = Udp4::new(([198, 18, 1, 2], 5004), ([198, 18, 1, 1], 30000), A, B);
        u.zero_udp_csum = true;
        u.vlan = Some(7);
        let f = u.bytes();
        assert_eq!(f.len(), 14 + 4 + 20 + 8 + 172);
        assert_eq!(&f[12..14], &[0x81, 0x00]);
        // UDP checksum: after Ethernet, the tag, IPv4 and the UDP ports and length.
        assert_eq!(&f[18 + 20 + 6..18 + 20 + 8], &[0, 0]);
    }

    #[test]
    fn udp4_too_large_is_an_error_not_a_panic() {
        let mut u = Udp4::new(([198, 18, 1, 2], 5004), ([198, 18, 1, 1], 30000), A, B);
        u.payload = vec![0; 70_000];
        assert!(u.try_bytes().is_err());
    }

    #[test]
    fn diff_points_at_the_first_difference() {
        let d = diff(&[1, 2, 3, 4], &[1, 2, 9, 4]);
        assert!(d.contains("first difference at byte 2"), "{d}");
    }
}
