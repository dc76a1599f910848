//! Typed access to the next-hop cache (`relay_common::nexthop`): its generation, which the
//! controller bumps when the network changes (`crate::nexthop`), and its entries (for the
//! operator's view and the tests).
use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, IterableMap, Map, MapData},
};
use relay_common::{
    map_names,
    nexthop::{NEXTHOP_GEN_OFF, NextHopKey, NextHopValue},
};

use super::{
    maps::{open_pinned, take},
    pins::Instance,
};

pub struct NextHops {
    generation: Array<MapData, u32>,
    cache: HashMap<MapData, NextHopKey, NextHopValue>,
}

const NAMES: [&str; 2] = [map_names::NEXTHOP_GEN, map_names::NEXTHOPS];

impl NextHops {
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<NextHops> {
        let [a, b] = NAMES.map(|n| take(ebpf, n));
        Self::from_maps([a?, b?])
    }

    /// The pinned maps of a running data plane (`None` if it predates the cache: a plane
    /// pinned by an older daemon, whose program looks up the FIB for every packet).
    pub fn open(instance: &Instance) -> Result<Option<NextHops>> {
        if !instance.map_path(map_names::NEXTHOP_GEN).exists() {
            return Ok(None);
        }
        let [a, b] = NAMES.map(|n| open_pinned(instance, n));
        Self::from_maps([a?, b?]).map(Some)
    }

    fn from_maps([generation, cache]: [Map; 2]) -> Result<NextHops> {
        Ok(NextHops {
            generation: generation
                .try_into()
                .context("next-hop generation map type")?,
            cache: cache.try_into().context("next-hop cache map type")?,
        })
    }

    pub fn pin(&self, instance: &Instance) -> Result<()> {
        let maps: [&MapData; 2] = [
            IterableMap::map(&self.generation),
            IterableMap::map(&self.cache),
        ];
        for (name, map) in NAMES.iter().zip(maps) {
            let path = instance.map_path(name);
            map.pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(())
    }

    pub fn generation(&self) -> Result<u32> {
        self.generation
            .get(&0, 0)
            .context("reading the next-hop generation")
    }

    /// Every cached entry made before this call unusable from the next packet on. Skips the
    /// value that means "off", and wraps past it.
    pub fn bump(&mut self) -> Result<u32> {
        let cur = self.generation()?;
        let mut next = cur.wrapping_add(1);
        if next == NEXTHOP_GEN_OFF {
            next = 0;
        }
        self.set_generation(next)?;
        Ok(next)
    }

    /// Turn the cache off (every packet asks the FIB) or on again.
    pub fn set_enabled(&mut self, on: bool) -> Result<()> {
        if on {
            if self.generation()? == NEXTHOP_GEN_OFF {
                self.set_generation(0)?;
            }
            Ok(())
        } else {
            self.set_generation(NEXTHOP_GEN_OFF)
        }
    }

    fn set_generation(&mut self, g: u32) -> Result<()> {
        self.generation
            .set(0, &g, 0)
            .context("writing the next-hop generation")
    }

    /// The cached entries (a snapshot; the program keeps filling and the LRU evicting).
    pub fn entries(&self) -> Vec<(NextHopKey, NextHopValue)> {
        self.cache.iter().filter_map(|r| r.ok()).collect()
    }

    /// Write an entry as the program would (the fixture tests plant old or short ones).
    pub fn put(&mut self, key: &NextHopKey, value: &NextHopValue) -> Result<()> {
        self.cache
            .insert(key, value, 0)
            .context("writing a next-hop entry")
    }

    /// Remove every entry (the fixture tests start each case from an empty cache).
    pub fn clear(&mut self) -> Result<()> {
        let keys: Vec<NextHopKey> = self.cache.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            // An entry evicted meanwhile is fine.
            let _ = self.cache.remove(&k);
        }
        Ok(())
    }
}
