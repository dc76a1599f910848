//! Map declarations. Names and value types come from `relay_common`; the loader may resize
//! `RELAY_LEGS` and `RELAY_LEG_STATS` (max legs) before loading.
use aya_ebpf::{
    macros::map,
    maps::{DevMapHash, HashMap, PerCpuArray},
};
use relay_common::{
    DEFAULT_MAX_LEGS, LegKey, LegStats, LegValue, MAX_EGRESS_IFACES, counters::NUM_COUNTERS,
};

#[map]
pub static RELAY_LEGS: HashMap<LegKey, LegValue> = HashMap::with_max_entries(DEFAULT_MAX_LEGS, 0);

#[map]
pub static RELAY_LEG_STATS: PerCpuArray<LegStats> =
    PerCpuArray::with_max_entries(DEFAULT_MAX_LEGS, 0);

#[map]
pub static RELAY_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(NUM_COUNTERS, 0);

#[map]
pub static RELAY_EGRESS: DevMapHash = DevMapHash::with_max_entries(MAX_EGRESS_IFACES, 0);

/// Per-CPU time of the last rare-path log line (rate limit for aya-log).
#[map]
pub static RELAY_LOG_LIMIT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
