//! Relay media ports: RTP on an even port, RTCP on RTP + 1, in pairs from a configured range on
//! each relay address (docs/design.md section 5).
//!
//! No socket holds a relay port: the `sk_lookup` program steers every packet to a relay address
//! and port in the range to the controller's one receive socket for that address
//! (`dataplane/steer.rs`), so a call costs no descriptor. Before a pair is handed out both
//! ports are probed by binding them (without SO_REUSEADDR) and closing again: a port some
//! other process holds fails the probe and the pair is skipped, since that process could not
//! receive there anyway and the relay could not send from it. Freed pairs wait a quarantine
//! before reuse so late packets of an old call never reach a new one, and free pairs are
//! handed out least recently freed first so ports are reused as late as possible. Time is
//! always the caller's `now`, which keeps the quarantine testable without sleeping.
//!
//! Note the default range 30000-39999 overlaps Linux's default ephemeral range (32768-60999):
//! outgoing sockets elsewhere on the box can take relay ports, which shows up as bind conflicts
//! (and the replies to such a socket would be steered to the relay): keep the range out of
//! `net.ipv4.ip_local_port_range`, or list it in `net.ipv4.ip_local_reserved_ports`.

mod pool;
mod range;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use pool::{Pool, State};
pub use range::{PortRange, RangeError};

/// Default quarantine of a freed pair.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(30);

/// Longest quarantine the allocator keeps; longer ones are cut to this so `now + quarantine`
/// cannot overflow `Instant`.
pub const MAX_QUARANTINE: Duration = Duration::from_secs(24 * 3600);

/// A relay pair: RTP on `rtp` (even), RTCP on `rtp + 1`, on relay address `addr`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PortPair {
    pub addr: IpAddr,
    pub rtp: u16,
}

impl PortPair {
    pub fn new(addr: IpAddr, rtp: u16) -> PortPair {
        PortPair { addr, rtp }
    }

    /// `rtp + 1` (saturating: pairs from the allocator have an even `rtp`, so it never does).
    pub fn rtcp(&self) -> u16 {
        self.rtp.saturating_add(1)
    }

    pub fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.rtp)
    }

    pub fn rtcp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.rtcp())
    }
}

/// "198.18.1.1:30000/30001"; IPv6 in brackets like a socket address: "[2001:db8::1]:30000/30001".
impl fmt::Display for PortPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.rtp, self.rtcp()),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.rtp, self.rtcp()),
        }
    }
}

/// A reserved pair (both ports probed free when it was handed out). Free it with
/// `PortAllocator::release`.
#[derive(Debug)]
pub struct Allocation {
    pub pair: PortPair,
}

#[derive(Debug)]
pub enum AllocError {
    /// No free pair on `addr`: `pairs` in range, `quarantined` of them waiting out the quarantine.
    Exhausted {
        addr: IpAddr,
        pairs: u32,
        quarantined: u32,
    },
    /// `addr` is not one of the allocator's relay addresses.
    UnknownAddr(IpAddr),
    /// `reserve` of a pair that is already handed out.
    InUse(PortPair),
    /// `reserve` of a pair outside the range, or whose RTP port is odd.
    OutOfRange(PortPair),
    /// Probing a port failed for another reason than someone else holding it.
    Bind { pair: PortPair, source: io::Error },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Exhausted {
                addr,
                pairs,
                quarantined,
            } => write!(
                f,
                "no free relay port pair on {addr} ({pairs} pairs in range, {quarantined} in \
                 quarantine): widen --port-min/--port-max or wait for the quarantine"
            ),
            AllocError::UnknownAddr(addr) => {
                write!(f, "{addr} is not a relay address of this relay")
            }
            AllocError::InUse(pair) => write!(f, "relay port pair {pair} is already in use"),
            AllocError::OutOfRange(pair) => write!(
                f,
                "relay port pair {pair} is not a pair of the port range (RTP even, both ports \
                 inside --port-min/--port-max)"
            ),
            AllocError::Bind { pair, source } => {
                write!(f, "cannot bind relay port pair {pair}: {source}")
            }
        }
    }
}

impl std::error::Error for AllocError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AllocError::Bind { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Pair counts on one relay address; `used + free + quarantined == total`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStats {
    pub addr: IpAddr,
    pub total_pairs: u32,
    pub used_pairs: u32,
    pub free_pairs: u32,
    pub quarantined_pairs: u32,
}

/// Port pairs on every relay address.
#[derive(Debug)]
pub struct PortAllocator {
    range: PortRange,
    quarantine: Duration,
    /// In the order given to `new`.
    pools: Vec<(IpAddr, Pool)>,
    by_addr: HashMap<IpAddr, usize>,
    exhausted: u64,
    bind_conflicts: u64,
}

impl PortAllocator {
    /// Pools for `addrs` in that order. Wildcard addresses (binding them would take the port on
    /// every address) and repeats are left out with a warning; a quarantine above
    /// `MAX_QUARANTINE` is cut to it.
    pub fn new(addrs: &[IpAddr], range: PortRange, quarantine: Duration) -> PortAllocator {
        let mut pools = Vec::with_capacity(addrs.len());
        let mut by_addr = HashMap::with_capacity(addrs.len());
        for &addr in addrs {
            if addr.is_unspecified() {
                log::warn!(
                    "relay ports: ignoring wildcard address {addr}; give specific addresses"
                );
                continue;
            }
            if by_addr.contains_key(&addr) {
                log::warn!("relay ports: address {addr} given twice; using it once");
                continue;
            }
            by_addr.insert(addr, pools.len());
            pools.push((addr, Pool::new(range.pairs())));
        }
        if quarantine > MAX_QUARANTINE {
            log::warn!("relay ports: quarantine {quarantine:?} cut to {MAX_QUARANTINE:?}");
        }
        PortAllocator {
            range,
            quarantine: quarantine.min(MAX_QUARANTINE),
            pools,
            by_addr,
            exhausted: 0,
            bind_conflicts: 0,
        }
    }

    /// Next free pair on `addr`, least recently freed first; probes both ports. Quarantined
    /// pairs whose time has passed (`now >= released + quarantine`) become free first. A pair
    /// whose port someone else holds (EADDRINUSE, EACCES) is skipped, counted in
    /// `bind_conflicts` and moved to the back; other bind errors are returned and the pair stays
    /// first in line.
    pub fn allocate(&mut self, addr: IpAddr, now: Instant) -> Result<Allocation, AllocError> {
        let &i = self
            .by_addr
            .get(&addr)
            .ok_or(AllocError::UnknownAddr(addr))?;
        let range = self.range;
        let pool = &mut self.pools[i].1;
        pool.promote(now);
        // Each free pair is tried at most once per call, so a range full of foreign sockets ends
        // in Exhausted instead of a loop.
        for _ in 0..pool.free_count() {
            let Some(idx) = pool.front_free() else {
                break;
            };
            let pair = PortPair::new(addr, range.rtp(idx));
            match probe_pair(pair) {
                Ok(()) => {
                    pool.take(idx);
                    return Ok(Allocation { pair });
                }
                Err(e) if is_conflict(&e) => {
                    self.bind_conflicts += 1;
                    crate::log_limited!(
                        log::Level::Warn,
                        "port held elsewhere",
                        "relay port pair {pair} is held by another socket ({e}); skipping it"
                    );
                    pool.requeue(idx);
                }
                Err(source) => return Err(AllocError::Bind { pair, source }),
            }
        }
        self.exhausted += 1;
        Err(AllocError::Exhausted {
            addr,
            pairs: pool.total(),
            quarantined: pool.quarantined(),
        })
    }

    /// Takes this exact pair (a restarted daemon re-adopting its sessions): it must be in range
    /// and not in use; it comes out of the free list or the quarantine, and both ports are
    /// probed. A port someone else holds is an error here (and counted in `bind_conflicts`).
    pub fn reserve(&mut self, pair: PortPair, now: Instant) -> Result<Allocation, AllocError> {
        let &i = self
            .by_addr
            .get(&pair.addr)
            .ok_or(AllocError::UnknownAddr(pair.addr))?;
        let idx = self
            .range
            .index(pair.rtp)
            .ok_or(AllocError::OutOfRange(pair))?;
        let pool = &mut self.pools[i].1;
        pool.promote(now);
        if pool.state(idx) == Some(State::Used) {
            return Err(AllocError::InUse(pair));
        }
        match probe_pair(pair) {
            Ok(()) => {
                pool.take(idx);
                Ok(Allocation { pair })
            }
            Err(source) => {
                if is_conflict(&source) {
                    self.bind_conflicts += 1;
                }
                Err(AllocError::Bind { pair, source })
            }
        }
    }

    /// Returns a pair in use: it is quarantined until `now + quarantine`. Releasing a pair that
    /// is not in use (twice, never handed out, unknown address) is ignored with a warning and
    /// returns false.
    pub fn release(&mut self, pair: PortPair, now: Instant) -> bool {
        let slot = self
            .by_addr
            .get(&pair.addr)
            .and_then(|&i| Some((i, self.range.index(pair.rtp)?)));
        let Some((i, idx)) = slot else {
            log::warn!("release of relay port pair {pair}, which is not a pair of this relay");
            return false;
        };
        let pool = &mut self.pools[i].1;
        if pool.state(idx) != Some(State::Used) {
            log::warn!("release of relay port pair {pair}, which is not in use; ignored");
            return false;
        }
        // The quarantine is capped in new(), so this only fails for an Instant near the end of
        // time; then the pair waits at least until `now`.
        let until = now.checked_add(self.quarantine).unwrap_or(now);
        pool.quarantine(idx, until);
        true
    }

    /// One entry per relay address, in the order given to `new`. Pairs whose quarantine has
    /// passed by `now` count as free.
    pub fn stats(&self, now: Instant) -> Vec<PoolStats> {
        self.pools
            .iter()
            .map(|(addr, pool)| {
                let expired = pool.expired(now);
                PoolStats {
                    addr: *addr,
                    total_pairs: pool.total(),
                    used_pairs: pool.used(),
                    free_pairs: pool.free_count() + expired,
                    quarantined_pairs: pool.quarantined() - expired,
                }
            })
            .collect()
    }

    /// `allocate` calls refused with `Exhausted` since creation.
    pub fn exhausted(&self) -> u64 {
        self.exhausted
    }

    /// Binds that failed because someone else holds the port, since creation.
    pub fn bind_conflicts(&self) -> u64 {
        self.bind_conflicts
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    pub fn quarantine(&self) -> Duration {
        self.quarantine
    }

    pub fn addrs(&self) -> Vec<IpAddr> {
        self.pools.iter().map(|(addr, _)| *addr).collect()
    }
}

/// Binds RTP then RTCP and closes both: fails if anyone else holds either port. std sets no
/// SO_REUSEADDR on UDP sockets, which is what makes this a test of ownership. The address is
/// always a specific one, so IPV6_V6ONLY does not matter.
fn probe_pair(pair: PortPair) -> io::Result<()> {
    UdpSocket::bind(pair.rtp_addr())?;
    UdpSocket::bind(pair.rtcp_addr())?;
    Ok(())
}

/// The port is someone else's (taken, or privileged), as opposed to a broken setup.
fn is_conflict(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EADDRINUSE | libc::EACCES))
}
