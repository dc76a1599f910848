//! Port steering: the `relay_steer` sk_lookup program, attached to the daemon's network
//! namespace, hands every UDP packet to a relay address and a port in the relay range to one
//! receive socket per relay address. So a call holds no socket (it held four, which capped a
//! box at its open-files limit / 4 calls), and the controller learns the port from each
//! packet's original destination (`udp::recv_with_dst`).
//!
//! Steering belongs to the running daemon, not to the pinned data plane: it is loaded from the
//! same object on every start (with the big maps shrunk, since only the steering maps are
//! used), never pinned, and goes away with the process (the kernel detaches the link when its
//! last descriptor closes). Between a daemon's death and its successor's start, latched media
//! keeps flowing in XDP; only packets XDP would pass up (first packets of new legs) find no
//! socket, as before.
use std::{
    fs::{self, File},
    net::IpAddr,
};

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, SockMap},
    programs::SkLookup,
};
use relay_common::{
    STEER_PROGRAM_NAME, map_names,
    steer::{MAX_STEER_ADDRS, SteerKey, SteerValue},
};

use super::load::RELAY_OBJECT;
use crate::{ports::PortRange, udp};

/// The program and its maps (attached after `attach_here`); dropping it detaches steering.
pub struct Steering {
    ebpf: Ebpf,
}

/// Maps of the object that steering does not use, shrunk to one entry in its copy (their
/// preallocated memory would otherwise be paid twice).
const UNUSED_BIG_MAPS: [&str; 5] = [
    map_names::LEGS,
    map_names::LEG_STATS,
    map_names::REFLECT_RATE,
    map_names::OWN_ADDRS,
    map_names::REFLECT_DENY,
];

/// [`load`], then attach to this process's network namespace (after reserving the range).
pub fn start(addrs: &[IpAddr], range: PortRange) -> Result<(Steering, Vec<std::net::UdpSocket>)> {
    reserve_range(range);
    let (mut steering, socks) = load(addrs, range)?;
    steering.attach_here()?;
    log::info!(
        "port steering: ports {}-{} on {} relay address(es) go to one receive socket each",
        range.min,
        range.max,
        addrs.len()
    );
    Ok((steering, socks))
}

/// Bind one receive socket per relay address, enter them and the range in the steering maps,
/// and load (verify) the program. Returns the sockets in the order of `addrs`.
pub fn load(addrs: &[IpAddr], range: PortRange) -> Result<(Steering, Vec<std::net::UdpSocket>)> {
    anyhow::ensure!(
        addrs.len() <= MAX_STEER_ADDRS as usize,
        "{} relay addresses; at most {MAX_STEER_ADDRS} are supported",
        addrs.len()
    );
    let mut loader = EbpfLoader::new();
    for name in UNUSED_BIG_MAPS {
        loader.map_max_entries(name, 1);
    }
    let mut ebpf = loader
        .load(RELAY_OBJECT)
        .context("loading the relay eBPF object for port steering")?;
    let mut socks = Vec::with_capacity(addrs.len());
    {
        let mut sock_map: SockMap<_> = map_mut(&mut ebpf, map_names::STEER_SOCKS)?
            .try_into()
            .context("steering socket map")?;
        for (i, &addr) in addrs.iter().enumerate() {
            let sock = udp::bind_receiver(addr)
                .with_context(|| format!("binding the receive socket on relay address {addr}"))?;
            sock_map
                .set(i as u32, &sock, 0)
                .with_context(|| format!("entering the receive socket of {addr}"))?;
            socks.push(sock);
        }
    }
    {
        let mut addr_map: HashMap<_, SteerKey, SteerValue> =
            map_mut(&mut ebpf, map_names::STEER_ADDRS)?
                .try_into()
                .context("steering address map")?;
        for (i, &addr) in addrs.iter().enumerate() {
            let value = SteerValue {
                port_min: u32::from(range.min),
                port_max: u32::from(range.max),
                index: i as u32,
                _pad: 0,
            };
            addr_map
                .insert(&SteerKey::of(addr), &value, 0)
                .with_context(|| format!("entering relay address {addr}"))?;
        }
    }
    let mut steering = Steering { ebpf };
    steering
        .program()?
        .load()
        .context("loading the port steering program (verifier)")?;
    Ok((steering, socks))
}

impl Steering {
    fn program(&mut self) -> Result<&mut SkLookup> {
        self.ebpf
            .program_mut(STEER_PROGRAM_NAME)
            .with_context(|| format!("program {STEER_PROGRAM_NAME} missing from the object"))?
            .try_into()
            .with_context(|| format!("program {STEER_PROGRAM_NAME} is not sk_lookup"))
    }

    /// Attach to the calling thread's network namespace.
    pub fn attach_here(&mut self) -> Result<()> {
        let netns = File::open("/proc/self/ns/net").context("opening this network namespace")?;
        self.program()?
            .attach(netns)
            .context("attaching port steering (sk_lookup) to this network namespace")?;
        Ok(())
    }

    /// The loaded program's descriptor (for BPF_PROG_TEST_RUN in the fixture tests).
    pub fn program_fd(&mut self) -> Result<std::os::fd::RawFd> {
        use std::os::fd::{AsFd, AsRawFd};
        Ok(self.program()?.fd()?.as_fd().as_raw_fd())
    }
}

const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/// Keep the kernel from handing relay ports out as ephemeral ports (to any socket in this
/// network namespace, IPv4 and IPv6): a reply to such a socket on a relay address would be
/// steered to the relay and dropped. Explicit binds are unaffected. The sysctl is per network
/// namespace; a failure to set it is logged, not fatal (the operator may manage it).
fn reserve_range(range: PortRange) {
    let result = fs::read_to_string(RESERVED_PORTS).and_then(|cur| match with_range(&cur, range) {
        Some(new) => fs::write(RESERVED_PORTS, &new).map(|()| Some(new)),
        None => Ok(None),
    });
    match result {
        Ok(Some(new)) => log::info!(
            "reserved relay ports {}-{} from ephemeral use (net.ipv4.ip_local_reserved_ports = {new})",
            range.min,
            range.max
        ),
        Ok(None) => {}
        Err(e) => log::warn!(
            "cannot reserve relay ports {}-{} in {RESERVED_PORTS} ({e}): outgoing sockets may take relay ports, and their replies would be steered to the relay",
            range.min,
            range.max
        ),
    }
}

/// The reserved-ports list `current` with `range` added, or `None` if one of its entries
/// already covers the range.
fn with_range(current: &str, range: PortRange) -> Option<String> {
    let current = current.trim();
    let covered = current.split(',').any(|entry| {
        let mut ends = entry.trim().splitn(2, '-').map(|p| p.trim().parse::<u16>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), Some(Ok(b))) => a <= range.min && b >= range.max,
            (Some(Ok(a)), None) => a == range.min && a == range.max,
            _ => false,
        }
    });
    if covered {
        return None;
    }
    let add = format!("{}-{}", range.min, range.max);
    Some(if current.is_empty() {
        add
    } else {
        format!("{current},{add}")
    })
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("map {name} missing from the object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_gain_the_range_once() {
        let r = PortRange::new(30000, 39999).unwrap();
        assert_eq!(with_range("", r).as_deref(), Some("30000-39999"));
        assert_eq!(with_range("\n", r).as_deref(), Some("30000-39999"));
        assert_eq!(
            with_range("8080,9000-9100\n", r).as_deref(),
            Some("8080,9000-9100,30000-39999")
        );
        assert_eq!(with_range("30000-39999\n", r), None);
        assert_eq!(with_range("5060,20000-40000", r), None);
        // A partial overlap is not coverage.
        assert_eq!(
            with_range("30000-35000", r).as_deref(),
            Some("30000-35000,30000-39999")
        );
    }
}
