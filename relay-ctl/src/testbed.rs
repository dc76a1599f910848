//! Throw-away network topologies for the end-to-end tests and the demo. Everything is created
//! in namespaces this process makes, with addresses from the benchmarking range 198.18.0.0/15
//! only, and removed on drop (also when a test fails or panics).
//!
//! ```text
//!  [sender ns]              [relay ns]                 [receiver ns]
//!  s0 198.18.1.2/24 <-veth-> r0 198.18.1.1/24
//!                            r1 198.18.2.1/24 <-veth-> v0 198.18.2.2/24
//! ```
use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    dataplane::Instance,
    netns::{ifindex, in_netns, netns_path},
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
        for (host, ip) in [(&self.sender, SENDER_IP), (&self.receiver, RECEIVER_IP)] {
            let sink = host.udp_socket(SocketAddr::from((ip, 9)))?;
            let src = self
                .relay
                .udp_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
            src.send_to(b"arp", sink.local_addr()?)?;
            let mut buf = [0u8; 8];
            sink.recv_from(&mut buf)
                .with_context(|| format!("priming the neighbour entry for {ip}"))?;
        }
        Ok(())
    }
}

/// A `relay-ctl daemon` process running in a namespace (entered with `nsenter --net`, which,
/// unlike `ip netns exec`, keeps the host's /sys/fs/bpf so the pins are visible to us).
/// Dropping it kills the process and removes the instance's pins, also after a failure.
pub struct DaemonProcess {
    child: Child,
    instance: Instance,
    bpffs_root: PathBuf,
    log: PathBuf,
}

impl DaemonProcess {
    /// Start `bin daemon --iface ...` for instance `name` and wait until it says it is ready.
    pub fn start(
        bin: &Path,
        netns: &Netns,
        bpffs_root: &Path,
        name: &str,
        ifaces: &[&str],
    ) -> Result<DaemonProcess> {
        let instance = Instance::new(bpffs_root, name)?;
        instance.remove()?;
        let log = std::env::temp_dir().join(format!("relay-ctl-{name}.log"));
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", netns_path(netns.name()).display()))
            .arg(bin)
            .args(["--instance", name, "--bpffs-root"])
            .arg(bpffs_root)
            .arg("daemon");
        for i in ifaces {
            cmd.args(["--iface", i]);
        }
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} under nsenter", bin.display()))?;
        let mut d = DaemonProcess {
            child,
            instance,
            bpffs_root: bpffs_root.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.log().contains("ready:") {
            if let Some(status) = d.child.try_wait()? {
                bail!("daemon exited with {status}:\n{}", d.log());
            }
            if Instant::now() > deadline {
                bail!("daemon not ready after 20 s:\n{}", d.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// Everything the daemon has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// SIGTERM and wait for a clean exit (the default exit leaves XDP attached via the pins).
    pub fn stop(&mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "daemon exit {status}:\n{}", self.log());
        Ok(())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(e) = self.instance.remove() {
            eprintln!("cleanup: {e:#}");
        }
        let _ = fs::remove_file(&self.log);
        // The root goes too once no other instance uses it (fails harmlessly otherwise).
        let _ = fs::remove_dir(&self.bpffs_root);
    }
}
