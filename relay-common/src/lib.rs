//! Types shared between the XDP program (`relay-ebpf`, no_std) and the controller (`relay-ctl`).
//!
//! Everything that crosses the kernel/user boundary is `#[repr(C)]`, has no implicit padding
//! and is `Copy`, so both sides agree on the byte layout. The `user` feature adds `aya::Pod`.
#![no_std]

#[cfg(feature = "user")]
extern crate std;

pub mod counters;
pub mod csum;
pub mod endpoint;
pub mod leg;
#[cfg(feature = "user")]
mod pod;

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
}

/// Name of the XDP program in the eBPF object.
pub const PROGRAM_NAME: &str = "relay_xdp";

/// Default capacity of the legs map and the per-leg stats array (the loader may resize both).
pub const DEFAULT_MAX_LEGS: u32 = 65_536;

/// Capacity of the egress devmap (interfaces the relay is attached to).
pub const MAX_EGRESS_IFACES: u32 = 64;
