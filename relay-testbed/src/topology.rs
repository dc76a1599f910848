//! Throw-away network topologies for the end-to-end tests and the demo, and the daemon process
//! guard they use. Everything is created in namespaces this process makes, with addresses from
//! the documentation and benchmarking ranges only (198.18.0.0/15, 192.0.2.0/24,
//! 198.51.100.0/24), and removed on drop (also when a test fails or panics).
//!
//! [`Topology`], end hosts directly on the relay's links:
//!
//! ```text
//!  [sender ns]              [relay ns]                 [receiver ns]
//!  s0 198.18.1.2/24 <-veth-> r0 198.18.1.1/24
//!                            r1 198.18.2.1/24 <-veth-> v0 198.18.2.2/24
//! ```
//!
//! [`NatTopology`]: each end host behind its own masquerading NAT (see `testbed/nat.rs`).
//! [`DaemonProcess`]: a `relay-ctl daemon` in a namespace, with kill -9 and restart support.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::netns::{ifindex, in_netns};

mod daemon;
mod nat;
mod xdp_pass;

pub use daemon::DaemonProcess;
pub use nat::{
    CALLEE_IF, CALLEE_IP, CALLEE_IP6, CALLER_IF, CALLER_IP, CALLER_IP6, NAT_A_IN_IF, NAT_A_IN_IP,
    NAT_A_OUT_IF, NAT_A_OUT_IP, NAT_A_OUT_IP6, NAT_B_IN_IF, NAT_B_IN_IP, NAT_B_OUT_IF,
    NAT_B_OUT_IP, NAT_B_OUT_IP6, NatTopology, RELAY_A_IP6, RELAY_B_IP6,
};

/// Run a command, failing with its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd} (is it installed? `cargo xtask setup`)"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A network namespace that is deleted when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn add(name: &str) -> Result<Netns> {
        // A namespace left by a killed earlier run would make `add` fail: remove it first.
        let _ = run("ip", &["netns", "del", name]);
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["-n", &self.name];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Run a program inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Result<()> {
        let mut a = vec!["netns", "exec", &self.name, cmd];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Run `f` inside the namespace (see [`in_netns`]).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_netns(&self.name, f)
    }

    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        self.run(|| ifindex(ifname))?
    }

    /// Bind a UDP socket inside the namespace.
    pub fn udp_socket(&self, addr: SocketAddr) -> Result<UdpSocket> {
        let sock = self
            .run(|| UdpSocket::bind(addr))?
            .with_context(|| format!("bind {addr}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(sock)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veth ends inside it (and their peers).
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("cleanup: {e:#}");
        }
    }
}

/// Make a veth pair with one end in each namespace, up, with addresses and fixed MACs.
pub fn veth(a: (&Netns, &str, &str, &str), b: (&Netns, &str, &str, &str)) -> Result<()> {
    let ((ns_a, if_a, cidr_a, mac_a), (ns_b, if_b, cidr_b, mac_b)) = (a, b);
    ns_a.ip(&[
        "link",
        "add",
        if_a,
        "address",
        mac_a,
        "type",
        "veth",
        "peer",
        "name",
        if_b,
        "address",
        mac_b,
        "netns",
        ns_b.name(),
    ])?;
    for (ns, ifname, cidr) in [(ns_a, if_a, cidr_a), (ns_b, if_b, cidr_b)] {
        ns.ip(&["addr", "add", cidr, "dev", ifname])?;
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
}

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

/// Make `relay` resolve each host's address (ARP or IPv6 neighbour discovery) by sending one
/// datagram from it to a socket on the host and waiting for it to arrive: XDP only forwards
/// once the neighbour is known.
pub fn prime_neighbours(relay: &Netns, hosts: &[(&Netns, IpAddr)]) -> Result<()> {
    for (host, ip) in hosts {
        let sink = host.udp_socket(SocketAddr::new(*ip, 9))?;
        let any: IpAddr = match ip {
            IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let src = relay.udp_socket(SocketAddr::new(any, 0))?;
        src.send_to(b"neigh", sink.local_addr()?)?;
        let mut buf = [0u8; 8];
        sink.recv_from(&mut buf)
            .with_context(|| format!("priming the neighbour entry for {ip}"))?;
    }
    Ok(())
}
