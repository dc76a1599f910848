//! A call through two NATs: each end host sits behind its own masquerading NAT namespace, so
//! the relay only ever sees the NATs' outside addresses, as with real endpoints at home.
//!
//! ```text
//!  [caller ns]           [nat-a ns]                         [relay ns]                        [nat-b ns]                      [callee ns]
//!  c0 192.0.2.2/24 <-> n0 192.0.2.1/24 | n1 198.18.1.2/24 <-> r0 198.18.1.1/24 | r1 198.18.2.1/24 <-> m1 198.18.2.2/24 | m0 198.51.100.1/24 <-> e0 198.51.100.2/24
//! ```
//!
//! The NATs masquerade with nftables, which gives Linux's usual port-restricted cone: the
//! mapping keeps the inside source port when it is free (endpoint-independent), and conntrack
//! lets in only replies from the exact remote address:port the inside host sent to. The relay
//! has no default route: it knows its two /24s, on which the NATs' outside addresses are.
use std::{
    io::Write,
    net::{Ipv4Addr, Ipv6Addr},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::{
    netns::{Netns, prime_neighbours, veth},
    topology::{RELAY_A_IP, RELAY_B_IP, RELAY_IF_A, RELAY_IF_B},
    xdp_pass::{self, XdpPass},
};

pub const CALLER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const NAT_A_IN_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const NAT_A_OUT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const NAT_B_OUT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const NAT_B_IN_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const CALLEE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// IPv6 (`add_ipv6`): routed, not translated, as IPv6 usually is; the NATs' IPv6 firewall
/// lets in only replies, so the relay is still what connects the two.
pub const CALLER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 2);
pub const NAT_A_IN_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
pub const NAT_A_OUT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const RELAY_A_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const RELAY_B_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
pub const NAT_B_OUT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
pub const NAT_B_IN_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);
pub const CALLEE_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 2);
pub const CALLER_IF: &str = "c0";
pub const NAT_A_IN_IF: &str = "n0";
pub const NAT_A_OUT_IF: &str = "n1";
pub const NAT_B_OUT_IF: &str = "m1";
pub const NAT_B_IN_IF: &str = "m0";
pub const CALLEE_IF: &str = "e0";

/// Caller and callee each behind a NAT, the NATs on the two links of a relay namespace.
pub struct NatTopology {
    // Field order is drop order: the relay (and whatever runs in it) goes last.
    /// XDP_PASS on the NATs' outside veths, so XDP_TX'd frames from the relay get picked up.
    _xdp_pass: Vec<XdpPass>,
    pub caller: Netns,
    pub callee: Netns,
    pub nat_a: Netns,
    pub nat_b: Netns,
    pub relay: Netns,
}

impl NatTopology {
    /// Build the topology; `tag` keeps concurrent topologies apart (namespace names). On error
    /// the namespaces made so far are deleted.
    pub fn build(tag: &str) -> Result<NatTopology> {
        let mut t = NatTopology {
            _xdp_pass: vec![],
            caller: Netns::add(&format!("mr-{tag}-caller"))?,
            callee: Netns::add(&format!("mr-{tag}-callee"))?,
            nat_a: Netns::add(&format!("mr-{tag}-nat-a"))?,
            nat_b: Netns::add(&format!("mr-{tag}-nat-b"))?,
            relay: Netns::add(&format!("mr-{tag}-relay"))?,
        };
        let cidr = |ip: Ipv4Addr| format!("{ip}/24");
        veth(
            (&t.caller, CALLER_IF, &cidr(CALLER_IP), "02:00:00:10:00:02"),
            (
                &t.nat_a,
                NAT_A_IN_IF,
                &cidr(NAT_A_IN_IP),
                "02:00:00:10:00:01",
            ),
        )?;
        veth(
            (
                &t.nat_a,
                NAT_A_OUT_IF,
                &cidr(NAT_A_OUT_IP),
                "02:00:00:11:00:02",
            ),
            (&t.relay, RELAY_IF_A, &cidr(RELAY_A_IP), "02:00:00:11:00:01"),
        )?;
        veth(
            (&t.relay, RELAY_IF_B, &cidr(RELAY_B_IP), "02:00:00:12:00:01"),
            (
                &t.nat_b,
                NAT_B_OUT_IF,
                &cidr(NAT_B_OUT_IP),
                "02:00:00:12:00:02",
            ),
        )?;
        veth(
            (
                &t.nat_b,
                NAT_B_IN_IF,
                &cidr(NAT_B_IN_IP),
                "02:00:00:13:00:01",
            ),
            (&t.callee, CALLEE_IF, &cidr(CALLEE_IP), "02:00:00:13:00:02"),
        )?;
        for (ns, gw) in [
            (&t.caller, NAT_A_IN_IP),
            (&t.nat_a, RELAY_A_IP),
            (&t.nat_b, RELAY_B_IP),
            (&t.callee, NAT_B_IN_IP),
        ] {
            ns.ip(&["route", "add", "default", "via", &gw.to_string()])?;
        }
        for (nat, out_if) in [(&t.nat_a, NAT_A_OUT_IF), (&t.nat_b, NAT_B_OUT_IF)] {
            // A new namespace starts with forwarding off (or whatever the host has).
            nat.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
            nft(nat, &nat_ruleset(out_if))?;
        }
        // The NATs' outside veths receive what the relay's XDP sends with XDP_TX/REDIRECT,
        // which a veth only accepts with NAPI on: request GRO (veth shows it "on" without
        // having requested it, so turn it off, then on; see `Topology::build`).
        //
        // TX checksum offload off wherever the media is sent or forwarded on its way to the
        // relay: a veth hands over CHECKSUM_PARTIAL datagrams whose checksum XDP cannot
        // complete after rewriting (see `Topology::build`).
        for (ns, ifname) in [(&t.nat_a, NAT_A_OUT_IF), (&t.nat_b, NAT_B_OUT_IF)] {
            ns.exec("ethtool", &["-K", ifname, "gro", "off"])?;
            ns.exec("ethtool", &["-K", ifname, "gro", "on", "tx", "off"])?;
            // GRO is enough for frames the relay redirects here, not for those it sends back
            // out the same link with XDP_TX (STUN answers): see `xdp_pass`.
            let idx = ns.ifindex(ifname)?;
            t._xdp_pass.push(ns.run(|| xdp_pass::attach(idx))??);
        }
        for (ns, ifname) in [
            (&t.caller, CALLER_IF),
            (&t.nat_a, NAT_A_IN_IF),
            (&t.nat_b, NAT_B_IN_IF),
            (&t.callee, CALLEE_IF),
        ] {
            ns.exec("ethtool", &["-K", ifname, "tx", "off"])?;
        }
        Ok(t)
    }

    /// Add IPv6 on every link (before the daemon starts, so it finds the relay's IPv6
    /// addresses): /64s from 2001:db8::/32, default routes towards the relay, the relay's
    /// routes to the two inside networks via the NATs, forwarding on the NATs, and a stateful
    /// IPv6 firewall on each NAT that admits only replies (RFC 6092's recommended default).
    pub fn add_ipv6(&self) -> Result<()> {
        let links: [(&Netns, &str, Ipv6Addr); 8] = [
            (&self.caller, CALLER_IF, CALLER_IP6),
            (&self.nat_a, NAT_A_IN_IF, NAT_A_IN_IP6),
            (&self.nat_a, NAT_A_OUT_IF, NAT_A_OUT_IP6),
            (&self.relay, RELAY_IF_A, RELAY_A_IP6),
            (&self.relay, RELAY_IF_B, RELAY_B_IP6),
            (&self.nat_b, NAT_B_OUT_IF, NAT_B_OUT_IP6),
            (&self.nat_b, NAT_B_IN_IF, NAT_B_IN_IP6),
            (&self.callee, CALLEE_IF, CALLEE_IP6),
        ];
        for (ns, ifname, ip) in links {
            // nodad: usable at once (duplicate address detection would hold it ~1 s).
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{ip}/64"),
                "dev",
                ifname,
                "nodad",
            ])?;
        }
        for (ns, gw) in [
            (&self.caller, NAT_A_IN_IP6),
            (&self.nat_a, RELAY_A_IP6),
            (&self.nat_b, RELAY_B_IP6),
            (&self.callee, NAT_B_IN_IP6),
        ] {
            ns.ip(&["-6", "route", "add", "default", "via", &gw.to_string()])?;
        }
        for (net, via) in [
            ("2001:db8:a::/64", NAT_A_OUT_IP6),
            ("2001:db8:b::/64", NAT_B_OUT_IP6),
        ] {
            self.relay
                .ip(&["-6", "route", "add", net, "via", &via.to_string()])?;
        }
        for (nat, out_if) in [(&self.nat_a, NAT_A_OUT_IF), (&self.nat_b, NAT_B_OUT_IF)] {
            nat.exec("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"])?;
            nft(nat, &firewall6(out_if))?;
        }
        Ok(())
    }

    /// `prime_neighbours` for IPv6 (neighbour discovery for both NATs' outside addresses).
    pub fn prime_neighbours6(&self) -> Result<()> {
        prime_neighbours(
            &self.relay,
            &[
                (&self.nat_a, NAT_A_OUT_IP6.into()),
                (&self.nat_b, NAT_B_OUT_IP6.into()),
            ],
        )
    }

    /// Resolve the relay's neighbours (ARP for both NATs' outside addresses) by sending one
    /// datagram from the relay to a socket in each NAT namespace and waiting for it to arrive.
    /// XDP only forwards once the neighbour is known.
    pub fn prime_neighbours(&self) -> Result<()> {
        prime_neighbours(
            &self.relay,
            &[
                (&self.nat_a, NAT_A_OUT_IP.into()),
                (&self.nat_b, NAT_B_OUT_IP.into()),
            ],
        )
    }
}

/// Masquerade out of `out_if`. The forward rule makes the NAT a firewall too, like a home
/// router: nothing unsolicited from outside is routed inside even if someone routes to it.
fn nat_ruleset(out_if: &str) -> String {
    format!(
        r#"table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{out_if}" masquerade
    }}
}}
table ip filter {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{out_if}" ct state new drop
    }}
}}
"#
    )
}

/// The NAT box's IPv6 firewall: nothing new from outside is routed inside.
fn firewall6(out_if: &str) -> String {
    format!(
        r#"table ip6 filter {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{out_if}" ct state new drop
    }}
}}
"#
    )
}

/// Load an nftables ruleset inside the namespace (`nft -f -`).
fn nft(ns: &Netns, ruleset: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ip netns exec nft")?;
    // Dropping stdin after the write closes it, so nft sees the end of the ruleset.
    let written = child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(ruleset.as_bytes());
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "nft -f - in {} (is nftables installed? `cargo xtask setup`): {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.context("writing the ruleset to nft")?;
    Ok(())
}
