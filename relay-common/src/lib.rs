//! Types shared between the XDP program (`relay-ebpf`, no_std) and the controller (`relay-ctl`).
//!
//! Everything that crosses the kernel/user boundary is `#[repr(C)]`, has no implicit padding
//! and is `Copy`, so both sides agree on the byte layout. The `user` feature adds `aya::Pod`.
#![no_std]

#[cfg(feature = "user")]
extern crate std;

pub mod counters;
pub mod crc32;
pub mod csum;
pub mod endpoint;
pub mod leg;
pub mod nexthop;
#[cfg(feature = "user")]
mod pod;
pub mod reflector;
pub mod siphash;
pub mod steer;
pub mod stun;
pub mod turn;

pub use counters::Counter;
pub use endpoint::{Endpoint, Family};
pub use leg::{LegKey, LegStats, LegValue, stream_legs};

/// Names of the maps in the eBPF object (and of their pins under the instance directory).
pub mod map_names {
    /// `HashMap<LegKey, LegValue>`: relay legs keyed by (relay address:port, peer); the peer is
    /// `Endpoint::NONE` except for the channels of a shared port (see `leg.rs`).
    pub const LEGS: &str = "RELAY_LEGS";
    /// `PerCpuArray<LegStats>` indexed by `LegValue::slot`.
    pub const LEG_STATS: &str = "RELAY_LEG_STATS";
    /// `PerCpuArray<u64>` indexed by `Counter`.
    pub const COUNTERS: &str = "RELAY_COUNTERS";
    /// `DevMapHash` keyed by ifindex: interfaces XDP may redirect to.
    pub const EGRESS: &str = "RELAY_EGRESS";
    /// `Array<DataPlaneConfig>`, one entry: reflector and STUN ports, reflect rate limit.
    pub const CONFIG: &str = "RELAY_CONFIG";
    /// `HashMap<u32, SipKey>`: reflector MAC keys by key id.
    pub const REFLECT_KEYS: &str = "RELAY_REFLECT_KEYS";
    /// `Array<u64>`, one entry: unix seconds, written by the controller once a second.
    pub const CLOCK: &str = "RELAY_CLOCK";
    /// `HashMap<[u8; 16], u8>`: this box's own addresses (IPv4-mapped).
    pub const OWN_ADDRS: &str = "RELAY_OWN_ADDRS";
    /// `LpmTrie<[u8; 16], u8>`: operator-denied reflect destinations (IPv4-mapped prefixes).
    pub const REFLECT_DENY: &str = "RELAY_REFLECT_DENY";
    /// `LruHashMap<u32, u64>`: per outer source IPv4, the rate limiter's next-allowed time.
    pub const REFLECT_RATE: &str = "RELAY_REFLECT_RATE";
    /// `HashMap<SteerKey, SteerValue>`: relay addresses and port ranges steered to the
    /// controller's receive sockets (see `steer.rs`).
    pub const STEER_ADDRS: &str = "RELAY_STEER_ADDRS";
    /// `SockMap`: the controller's receive socket per relay address, by `SteerValue::index`.
    pub const STEER_SOCKS: &str = "RELAY_STEER_SOCKS";
    /// `LruHashMap<NextHopKey, NextHopValue>`: the next-hop cache (see `nexthop.rs`).
    pub const NEXTHOPS: &str = "RELAY_NEXTHOPS";
    /// `Array<u32>`, one entry: the next-hop cache's generation, bumped by the controller.
    pub const NEXTHOP_GEN: &str = "RELAY_NEXTHOP_GEN";
    /// `HashMap<ChannelKey, TurnValue>`: bound TURN channels, ChannelData from clients
    /// (see `turn.rs`).
    pub const TURN_CHANNELS: &str = "RELAY_TURN_CHANNELS";
    /// `HashMap<LegKey, TurnValue>`: bound TURN channels, UDP from peers to a relayed address,
    /// keyed by (relayed address:port, peer address:port) (see `turn.rs`).
    pub const TURN_PEERS: &str = "RELAY_TURN_PEERS";
}

/// Capacity of each TURN channel map (a bound channel has one entry in each).
pub const MAX_TURN_CHANNELS: u32 = 65_536;

/// Capacity of the reflector key map (key ids in use at once, e.g. current and next).
pub const MAX_REFLECT_KEYS: u32 = 16;
/// Capacity of the own-addresses map.
pub const MAX_OWN_ADDRS: u32 = 256;
/// Capacity of the deny trie.
pub const MAX_REFLECT_DENY: u32 = 1024;
/// Sources the reflect rate limiter remembers (least recently used evicted).
pub const MAX_RATE_SOURCES: u32 = 65_536;

/// Name of the XDP program in the eBPF object.
pub const PROGRAM_NAME: &str = "relay_xdp";

/// Name of the `sk_lookup` program that steers relay ports to the controller's sockets.
pub const STEER_PROGRAM_NAME: &str = "relay_steer";

/// Default capacity of the legs map and the per-leg stats array (the loader may resize both).
pub const DEFAULT_MAX_LEGS: u32 = 65_536;

/// Capacity of the egress devmap (interfaces the relay is attached to).
pub const MAX_EGRESS_IFACES: u32 = 64;
