//! [`Topology`], end hosts directly on the relay's links:
//!
//! ```text
//!  [sender ns]              [relay ns]                 [receiver ns]
//!  s0 198.18.1.2/24 <-veth-> r0 198.18.1.1/24
//!                            r1 198.18.2.1/24 <-veth-> v0 198.18.2.2/24
//! ```
use std::net::Ipv4Addr;

use anyhow::Result;

use crate::netns::{Netns, prime_neighbours, veth};

pub const SENDER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const RELAY_A_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub const RELAY_B_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
pub const RECEIVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const RELAY_IF_A: &str = "r0";
pub const RELAY_IF_B: &str = "r1";

/// Sender and receiver on two links of a relay namespace.
pub struct Topology {
    // Field order is drop order: the relay (and whatever runs in it) goes last.
    pub sender: Netns,
    pub receiver: Netns,
    pub relay: Netns,
}

impl Topology {
    /// Build the topology; `tag` keeps concurrent topologies apart (namespace names).
    pub fn build(tag: &str) -> Result<Topology> {
        let t = Topology {
            sender: Netns::add(&format!("mr-{tag}-snd"))?,
            receiver: Netns::add(&format!("mr-{tag}-rcv"))?,
            relay: Netns::add(&format!("mr-{tag}-rly"))?,
        };
        veth(
            (&t.sender, "s0", "198.18.1.2/24", "02:00:00:00:01:02"),
            (&t.relay, RELAY_IF_A, "198.18.1.1/24", "02:00:00:00:01:01"),
        )?;
        veth(
            (&t.relay, RELAY_IF_B, "198.18.2.1/24", "02:00:00:00:02:01"),
            (&t.receiver, "v0", "198.18.2.2/24", "02:00:00:00:02:02"),
        )?;
        // A veth only accepts frames that XDP_TX/XDP_REDIRECT put on its peer when it has NAPI
        // enabled: with an XDP program or with GRO requested. The end hosts run no XDP, so
        // request GRO; veth shows it "on" by default without having requested it, so a plain
        // "on" changes nothing: turn it off, then on.
        //
        // Checksum offload off on the end hosts: a veth hands the peer a UDP datagram with
        // only the pseudo-header sum filled in (CHECKSUM_PARTIAL). XDP sees raw bytes without
        // that metadata, so after rewriting the receiver would find a wrong checksum. A real
        // NIC always delivers complete checksums; here the hosts must compute them.
        for (host, ifname) in [(&t.sender, "s0"), (&t.receiver, "v0")] {
            host.exec("ethtool", &["-K", ifname, "gro", "off"])?;
            host.exec("ethtool", &["-K", ifname, "gro", "on", "tx", "off"])?;
        }
        Ok(t)
    }

    /// Resolve the relay's neighbours (ARP) by sending one datagram from the relay to each end
    /// host and waiting for it to arrive. XDP only forwards once the neighbour is known.
    pub fn prime_neighbours(&self) -> Result<()> {
        prime_neighbours(
            &self.relay,
            &[
                (&self.sender, SENDER_IP.into()),
                (&self.receiver, RECEIVER_IP.into()),
            ],
        )
    }
}
