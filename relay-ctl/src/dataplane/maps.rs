//! Typed access to the data plane's maps, either freshly loaded (`from_ebpf`) or pinned by a
//! running or crashed daemon (`open`).
use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::IterableMap,
    maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuValues},
    util::nr_cpus,
};
use relay_common::{
    Counter, LegKey, LegStats, LegValue,
    leg::{LEG_F_SHARED, LEG_F_TURN},
    map_names,
};

use super::pins::Instance;

/// The per-leg counters: one shared entry per slot (this program), or one per CPU (a data
/// plane pinned by an older daemon, adopted in a hitless upgrade).
enum LegStatsMap {
    Shared(Array<MapData, LegStats>),
    PerCpu(PerCpuArray<MapData, LegStats>),
}

impl LegStatsMap {
    fn new(map: Map) -> Result<LegStatsMap> {
        match map {
            Map::PerCpuArray(_) => Ok(LegStatsMap::PerCpu(
                map.try_into().context("leg stats map type")?,
            )),
            map => Ok(LegStatsMap::Shared(
                map.try_into().context("leg stats map type")?,
            )),
        }
    }

    fn data(&self) -> &MapData {
        match self {
            LegStatsMap::Shared(m) => IterableMap::map(m),
            LegStatsMap::PerCpu(m) => IterableMap::map(m),
        }
    }
}

/// The leg table and the counters.
pub struct DataPlane {
    legs: HashMap<MapData, LegKey, LegValue>,
    leg_stats: LegStatsMap,
    counters: PerCpuArray<MapData, u64>,
    /// Size of the stats array, fixed at load time (read once, not per install).
    max_legs: u32,
}

/// Interfaces XDP may redirect to (ifindex -> ifindex).
pub struct EgressMap(DevMapHash<MapData>);

pub(super) fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map> {
    ebpf.take_map(name)
        .with_context(|| format!("map {name} missing from the object"))
}

pub(super) fn open_pinned(instance: &Instance, name: &str) -> Result<Map> {
    let path = instance.map_path(name);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening pinned map {}", path.display()))?;
    Map::from_map_data(data).with_context(|| format!("pinned map {name}"))
}

impl DataPlane {
    /// Take the maps out of a freshly loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<DataPlane> {
        Self::from_maps(
            take(ebpf, map_names::LEGS)?,
            take(ebpf, map_names::LEG_STATS)?,
            take(ebpf, map_names::COUNTERS)?,
        )
    }

    /// Open the maps an instance has pinned.
    pub fn open(instance: &Instance) -> Result<DataPlane> {
        Self::from_maps(
            open_pinned(instance, map_names::LEGS)?,
            open_pinned(instance, map_names::LEG_STATS)?,
            open_pinned(instance, map_names::COUNTERS)?,
        )
    }

    fn from_maps(legs: Map, leg_stats: Map, counters: Map) -> Result<DataPlane> {
        let leg_stats = LegStatsMap::new(leg_stats)?;
        let max_legs = leg_stats
            .data()
            .info()
            .context("reading the stats map size")?
            .max_entries();
        Ok(DataPlane {
            legs: legs.try_into().context("legs map type")?,
            leg_stats,
            counters: counters.try_into().context("counters map type")?,
            max_legs,
        })
    }

    /// Pin the maps under the instance directory.
    pub fn pin(&self, instance: &Instance) -> Result<()> {
        let pins: [(&str, &MapData); 3] = [
            (map_names::LEGS, IterableMap::map(&self.legs)),
            (map_names::LEG_STATS, self.leg_stats.data()),
            (map_names::COUNTERS, IterableMap::map(&self.counters)),
        ];
        for (name, map) in pins {
            let path = instance.map_path(name);
            map.pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(())
    }

    /// Capacity of the stats array, i.e. the highest usable slot + 1.
    pub fn max_legs(&self) -> u32 {
        self.max_legs
    }

    /// Install or replace a leg in one map update: a packet sees the old value or the new one,
    /// never a mix. The slot's counters are zeroed first when the leg is new, so they start
    /// from this leg's first packet. A shared port entry (`LEG_F_SHARED`) or a TURN relayed
    /// port's entry (`LEG_F_TURN`) forwards nothing and owns no slot (its `slot` is 0), so
    /// its install leaves the stats alone: resetting slot 0 would wipe another leg's counters.
    pub fn install_leg(&mut self, key: &LegKey, value: &LegValue) -> Result<()> {
        if value.flags & (LEG_F_SHARED | LEG_F_TURN) == 0 {
            let max = self.max_legs;
            anyhow::ensure!(
                value.slot < max,
                "leg {key}: stats slot {} out of range (max legs {max})",
                value.slot
            );
            let is_new = self.leg(key)?.is_none();
            if is_new {
                self.reset_slot(value.slot)?;
            }
        }
        self.legs
            .insert(key, value, 0)
            .with_context(|| format!("installing leg {key}"))
    }

    /// Insert a leg with no slot check and no counter reset: only for tests that must put the
    /// table into states the controller never produces (e.g. a slot beyond the stats array).
    pub fn install_leg_unchecked(&mut self, key: &LegKey, value: &LegValue) -> Result<()> {
        self.legs
            .insert(key, value, 0)
            .with_context(|| format!("installing leg {key}"))
    }

    /// Remove a leg; removing one that is not there is not an error.
    pub fn remove_leg(&mut self, key: &LegKey) -> Result<bool> {
        match self.legs.remove(key) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing leg {key}")),
        }
    }

    pub fn leg(&self, key: &LegKey) -> Result<Option<LegValue>> {
        match self.legs.get(key, 0) {
            Ok(v) => Ok(Some(v)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("reading leg"),
        }
    }

    pub fn legs(&self) -> Result<Vec<(LegKey, LegValue)>> {
        self.legs
            .iter()
            .collect::<Result<_, _>>()
            .context("listing legs")
    }

    /// A slot's counters (summed over CPUs on an older, per-CPU map).
    pub fn leg_stats(&self, slot: u32) -> Result<LegStats> {
        let read = || -> Result<LegStats, MapError> {
            match &self.leg_stats {
                LegStatsMap::Shared(m) => m.get(&slot, 0),
                LegStatsMap::PerCpu(m) => Ok(m
                    .get(&slot, 0)?
                    .iter()
                    .fold(LegStats::default(), |a, b| a.merge(*b))),
            }
        };
        read().with_context(|| format!("reading stats slot {slot}"))
    }

    /// Zero a stats slot (before it is given to a new owner: sessions' legs on install, the
    /// TURN server's channels on allocation).
    pub fn reset_slot(&mut self, slot: u32) -> Result<()> {
        let done = match &mut self.leg_stats {
            LegStatsMap::Shared(m) => m.set(slot, &LegStats::default(), 0),
            LegStatsMap::PerCpu(m) => {
                let cpus = nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
                let zeros = PerCpuValues::try_from(vec![LegStats::default(); cpus.get() as usize])?;
                m.set(slot, zeros, 0)
            }
        };
        done.with_context(|| format!("resetting stats slot {slot} (max legs too small?)"))
    }

    /// Global counters summed over CPUs, in `Counter::ALL` order.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>> {
        Counter::ALL
            .iter()
            .map(|&c| {
                let v = self
                    .counters
                    .get(&(c as u32), 0)
                    .with_context(|| format!("reading counter {}", c.name()))?;
                Ok((c, v.iter().sum()))
            })
            .collect()
    }

    /// One global counter summed over CPUs.
    pub fn counter(&self, c: Counter) -> Result<u64> {
        Ok(self.counters.get(&(c as u32), 0)?.iter().sum())
    }
}

impl EgressMap {
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<EgressMap> {
        Ok(EgressMap(
            take(ebpf, map_names::EGRESS)?
                .try_into()
                .context("egress map type")?,
        ))
    }

    pub fn open(instance: &Instance) -> Result<EgressMap> {
        Ok(EgressMap(
            open_pinned(instance, map_names::EGRESS)?
                .try_into()
                .context("egress map type")?,
        ))
    }

    pub fn pin(&self, instance: &Instance) -> Result<()> {
        let path = instance.map_path(map_names::EGRESS);
        IterableMap::map(&self.0)
            .pin(&path)
            .with_context(|| format!("pinning {}", path.display()))
    }

    /// Allow redirects to `ifindex`. The kernel resolves the index in the calling thread's
    /// network namespace, so call this from the namespace the interface lives in.
    pub fn add(&mut self, ifindex: u32) -> Result<()> {
        self.0
            .insert(ifindex, ifindex, None, 0)
            .with_context(|| format!("adding ifindex {ifindex} to the egress devmap"))
    }
}
