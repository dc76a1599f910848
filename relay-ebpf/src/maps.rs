//! Map declarations. Names and value types come from `relay_common`; the loader may resize
//! `RELAY_LEGS` and `RELAY_LEG_STATS` (max legs) before loading.
use aya_ebpf::{
    bindings::bpf_fib_lookup,
    macros::map,
    maps::{Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, SockMap},
};
use relay_common::{
    DEFAULT_MAX_LEGS, LegKey, LegStats, LegValue, MAX_EGRESS_IFACES, MAX_OWN_ADDRS,
    MAX_RATE_SOURCES, MAX_REFLECT_DENY, MAX_REFLECT_KEYS, MAX_TURN_CHANNELS,
    counters::NUM_COUNTERS,
    nexthop::{MAX_NEXTHOPS, NEXTHOP_GEN_OFF, NextHopKey, NextHopValue},
    reflector::{DataPlaneConfig, MAC_BLOCKS},
    siphash::SipKey,
    steer::{MAX_STEER_ADDRS, SteerKey, SteerValue},
    turn::{ChannelKey, TurnValue},
};

#[map]
pub static RELAY_LEGS: HashMap<LegKey, LegValue> = HashMap::with_max_entries(DEFAULT_MAX_LEGS, 0);

/// The leg stored under `key`, read in place (a copy would not fit on the stack next to the
/// rest of a path). The reference lives no longer than `key`, a value of this program run.
#[inline(always)]
pub fn leg(key: &LegKey) -> Option<&LegValue> {
    // SAFETY: a hash map value stays allocated until an RCU grace period after it is removed
    // or replaced, and none ends while this program runs; the controller replaces entries
    // whole (it never writes in place, nor does this program), and `LegValue` is plain
    // integers, so the value read is always a valid one.
    unsafe { RELAY_LEGS.get(key) }
}

/// Per-leg counters, one shared entry per slot (not per CPU: at 64 CPUs a per-CPU entry
/// cost 1.5 KB per leg). Adds are atomic; a leg's packets mostly arrive on one CPU (the NIC
/// hashes a flow to one queue), so the cache line rarely moves.
#[map]
pub static RELAY_LEG_STATS: Array<LegStats> = Array::with_max_entries(DEFAULT_MAX_LEGS, 0);

#[map]
pub static RELAY_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NUM_COUNTERS, 0);

#[map]
pub static RELAY_EGRESS: DevMapHash = DevMapHash::with_max_entries(MAX_EGRESS_IFACES, 0);

/// Per-CPU time of the last rare-path log line (rate limit for aya-log).
#[map]
pub static RELAY_LOG_LIMIT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// One entry: reflector and STUN ports (0 = off) and the reflect rate limit.
#[map]
pub static RELAY_CONFIG: Array<DataPlaneConfig> = Array::with_max_entries(1, 0);

/// Reflector MAC keys by key id (the controller rotates them).
#[map]
pub static RELAY_REFLECT_KEYS: HashMap<u32, SipKey> =
    HashMap::with_max_entries(MAX_REFLECT_KEYS, 0);

/// One entry: unix seconds, written by the controller once a second (XDP has no wall clock
/// on 6.1: bpf_ktime_get_tai_ns is 6.1 but TAI is not what tickets carry, and this keeps
/// the controller the single authority on time).
#[map]
pub static RELAY_CLOCK: Array<u64> = Array::with_max_entries(1, 0);

/// This box's addresses, IPv4-mapped: allowed reflect sources, denied destinations, and the
/// addresses XDP answers STUN and reflector packets on.
#[map]
pub static RELAY_OWN_ADDRS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(MAX_OWN_ADDRS, 0);

/// Operator-denied reflect destinations (IPv4-mapped prefixes, so /8 is prefix length 104).
#[map]
pub static RELAY_REFLECT_DENY: LpmTrie<[u8; 16], u8> =
    LpmTrie::with_max_entries(MAX_REFLECT_DENY, 0);

/// Rate limiter state per outer source IPv4: the next time (monotonic ns) at which one more
/// packet conforms (GCRA). LRU: a flood of sources evicts old entries instead of failing.
#[map]
pub static RELAY_REFLECT_RATE: LruHashMap<u32, u64> =
    LruHashMap::with_max_entries(MAX_RATE_SOURCES, 0);

/// Per-CPU scratch memory for buffers too big for the 512-byte stack next to the rest of a
/// path (one entry; XDP runs to completion on its CPU, so nothing else uses it meanwhile).
#[repr(C)]
pub struct Scratch {
    /// SipHash input of a reflector ticket's MAC.
    pub mac_blocks: [u64; MAC_BLOCKS],
    /// The next-hop cache's key and the value a fill writes (`fib.rs`).
    pub nh_key: NextHopKey,
    pub nh_value: NextHopValue,
    /// The `bpf_fib_lookup` request and answer of a next-hop cache miss (64 bytes).
    pub fib: bpf_fib_lookup,
    /// The TURN channel lookup's key (`turn.rs`).
    pub turn_key: ChannelKey,
}

/// This CPU's scratch memory, for the path running now.
#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: this CPU's entry of a per-CPU array; XDP runs to completion on its CPU and a
    // path takes the reference once, so no other reference to it is alive meanwhile.
    RELAY_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[map]
pub static RELAY_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Relay addresses and port ranges the `sk_lookup` program steers (`steer.rs`).
#[map]
pub static RELAY_STEER_ADDRS: HashMap<SteerKey, SteerValue> =
    HashMap::with_max_entries(MAX_STEER_ADDRS, 0);

/// The controller's receive socket per relay address.
#[map]
pub static RELAY_STEER_SOCKS: SockMap = SockMap::with_max_entries(MAX_STEER_ADDRS, 0);

/// The steering entry of a relay address, copied out of the map.
#[inline(always)]
pub fn steer_range(key: &SteerKey) -> Option<SteerValue> {
    // SAFETY: the value is copied out before the program's run could let the map change it.
    unsafe { RELAY_STEER_ADDRS.get(key) }.copied()
}

/// The next-hop cache (`relay_common::nexthop`): LRU, so a box with more destinations than
/// entries keeps the busiest.
#[map]
pub static RELAY_NEXTHOPS: LruHashMap<NextHopKey, NextHopValue> =
    LruHashMap::with_max_entries(MAX_NEXTHOPS, 0);

/// The next-hop cache's generation (one entry), bumped by the controller on netlink events.
#[map]
pub static RELAY_NEXTHOP_GEN: Array<u32> = Array::with_max_entries(1, 0);

/// The current generation (`NEXTHOP_GEN_OFF` if the map cannot be read: no caching).
#[inline(always)]
pub fn nexthop_generation() -> u32 {
    RELAY_NEXTHOP_GEN.get(0).copied().unwrap_or(NEXTHOP_GEN_OFF)
}

/// The cached next hop of `key`, read in place (a copy would crowd the IPv6 path's stack).
#[inline(always)]
pub fn nexthop(key: &NextHopKey) -> Option<&NextHopValue> {
    // SAFETY: an LRU value stays allocated until an RCU grace period after it is replaced or
    // evicted, and none ends while this program runs; updates replace values whole (this
    // program and the controller never write in place), and the value is plain integers.
    unsafe { RELAY_NEXTHOPS.get(key) }
}

/// Store a next hop (replacing any entry of `key`). A failed insert only costs a FIB lookup
/// on the next packet.
#[inline(always)]
pub fn nexthop_fill(key: &NextHopKey, value: &NextHopValue) {
    let _ = RELAY_NEXTHOPS.insert(key, value, 0);
}

/// Bound TURN channels, ChannelData from clients (`turn.rs`).
#[map]
pub static RELAY_TURN_CHANNELS: HashMap<ChannelKey, TurnValue> =
    HashMap::with_max_entries(MAX_TURN_CHANNELS, 0);

/// Bound TURN channels, UDP from peers to a relayed address, keyed by (relayed, peer).
#[map]
pub static RELAY_TURN_PEERS: HashMap<LegKey, TurnValue> =
    HashMap::with_max_entries(MAX_TURN_CHANNELS, 0);

/// The channel entry of ChannelData from a client, read in place (as `leg`).
#[inline(always)]
pub fn turn_channel(key: &ChannelKey) -> Option<&TurnValue> {
    // SAFETY: as for `leg`: the value outlives this run, the controller replaces entries
    // whole, and `TurnValue` is plain integers.
    unsafe { RELAY_TURN_CHANNELS.get(key) }
}

/// The channel entry of UDP from a peer to a relayed address, read in place (as `leg`).
#[inline(always)]
pub fn turn_peer(key: &LegKey) -> Option<&TurnValue> {
    // SAFETY: as for `turn_channel`.
    unsafe { RELAY_TURN_PEERS.get(key) }
}
