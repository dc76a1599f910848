//! Named network namespaces (`/run/netns/<name>`, as `ip netns` makes them), veths between
//! them, and neighbour entries.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so [`in_netns`] runs work on a scoped
//! helper thread and the caller's namespace is never touched. Sockets created there stay in
//! that namespace after the thread ends.
use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use relay_ctl::netlink::ifindex;

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

/// Path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Run `f` on a thread that has entered network namespace `name`.
pub fn in_netns<T, F>(name: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let path = netns_path(name);
    let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: plain syscall on a valid fd; affects only this thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("setns into {}", path.display()));
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow!("thread in netns {name} panicked"))?
    })
}

/// `02:00:00:00:01:02`: a MAC as `ip` takes it.
pub fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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

    /// A link `name` (MAC `m`, addresses `cidrs`) whose veth peer `peer` stays in this
    /// namespace, both up: an interface for `BPF_PROG_TEST_RUN`'s ingress and a FIB to look up
    /// in, with no host behind it. IPv6 addresses skip duplicate address detection (usable at
    /// once).
    pub fn stub_link(&self, name: &str, m: [u8; 6], peer: &str, cidrs: &[&str]) -> Result<()> {
        let m = mac(m);
        self.ip(&[
            "link", "add", name, "address", &m, "type", "veth", "peer", "name", peer,
        ])?;
        for cidr in cidrs {
            let mut args = vec!["addr", "add", cidr, "dev", name];
            if cidr.contains(':') {
                args.push("nodad");
            }
            self.ip(&args)?;
        }
        self.ip(&["link", "set", name, "up"])?;
        self.ip(&["link", "set", peer, "up"])
    }

    /// A permanent neighbour entry (ARP or NDP, by the address's family): `bpf_fib_lookup`
    /// then answers with `m` deterministically, and nothing is ever resolved on the wire.
    pub fn neigh_permanent(&self, ip: IpAddr, m: [u8; 6], dev: &str) -> Result<()> {
        self.ip(&[
            "neigh",
            "replace",
            &ip.to_string(),
            "lladdr",
            &mac(m),
            "dev",
            dev,
            "nud",
            "permanent",
        ])
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
    veth_queues(a, b, 1)
}

/// [`veth`] with `queues` receive and transmit queues on each end (each receive queue has its
/// own ring and NAPI instance); 1 is veth's default.
pub fn veth_queues(
    a: (&Netns, &str, &str, &str),
    b: (&Netns, &str, &str, &str),
    queues: u32,
) -> Result<()> {
    let ((ns_a, if_a, cidr_a, mac_a), (ns_b, if_b, cidr_b, mac_b)) = (a, b);
    let q = queues.to_string();
    let qargs: &[&str] = if queues > 1 {
        &["numtxqueues", &q, "numrxqueues", &q]
    } else {
        &[]
    };
    let mut args = vec!["link", "add", if_a, "address", mac_a];
    args.extend_from_slice(qargs);
    args.extend_from_slice(&["type", "veth", "peer", "name", if_b, "address", mac_b]);
    args.extend_from_slice(qargs);
    args.extend_from_slice(&["netns", ns_b.name()]);
    ns_a.ip(&args)?;
    for (ns, ifname, cidr) in [(ns_a, if_a, cidr_a), (ns_b, if_b, cidr_b)] {
        ns.ip(&["addr", "add", cidr, "dev", ifname])?;
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_as_ip_writes_them() {
        assert_eq!(mac([0x02, 0, 0, 0x0a, 0x1b, 0xff]), "02:00:00:0a:1b:ff");
    }

    #[test]
    fn namespaces_live_under_run_netns() {
        assert_eq!(netns_path("mr-x"), PathBuf::from("/run/netns/mr-x"));
    }

    #[test]
    fn a_failing_command_names_itself_and_its_error() {
        let e = run("sh", &["-c", "echo broken >&2; exit 3"]).expect_err("exit 3");
        let msg = format!("{e:#}");
        assert!(msg.contains("sh -c") && msg.contains("broken"), "{msg}");
        let e = run("/nonexistent/tool", &[]).expect_err("missing");
        assert!(format!("{e:#}").contains("cargo xtask setup"));
    }
}
