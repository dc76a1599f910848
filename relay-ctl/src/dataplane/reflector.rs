//! Typed access to the reflector's and STUN responder's maps (docs/reflector.md): the
//! data-plane config, MAC keys, the clock, this box's addresses, the deny prefixes and the
//! rate limiter's state (only pinned, so a restarted daemon keeps the buckets).
use std::net::IpAddr;

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap, IterableMap, Map, MapData, MapError, lpm_trie::Key, lpm_trie::LpmTrie},
};
use relay_common::{Endpoint, map_names, reflector::DataPlaneConfig, siphash::SipKey};

use super::{
    maps::{open_pinned, take},
    pins::Instance,
};

pub struct Reflector {
    config: Array<MapData, DataPlaneConfig>,
    keys: HashMap<MapData, u32, SipKey>,
    clock: Array<MapData, u64>,
    own_addrs: HashMap<MapData, [u8; 16], u8>,
    deny: LpmTrie<MapData, [u8; 16], u8>,
    rate: HashMap<MapData, u32, u64>,
}

const NAMES: [&str; 6] = [
    map_names::CONFIG,
    map_names::REFLECT_KEYS,
    map_names::CLOCK,
    map_names::OWN_ADDRS,
    map_names::REFLECT_DENY,
    map_names::REFLECT_RATE,
];

/// 16-byte map form of an address (IPv4-mapped for IPv4, like `Endpoint`).
fn addr16(ip: IpAddr) -> [u8; 16] {
    Endpoint::from(std::net::SocketAddr::new(ip, 0)).addr
}

/// A deny-trie key: IPv4 prefixes sit under the IPv4-mapped /96.
fn prefix_key(ip: IpAddr, len: u8) -> Result<Key<[u8; 16]>> {
    let (max, offset) = match ip {
        IpAddr::V4(_) => (32, 96),
        IpAddr::V6(_) => (128, 0),
    };
    anyhow::ensure!(len <= max, "prefix length {len} too long for {ip}");
    Ok(Key::new(u32::from(len) + offset, addr16(ip)))
}

impl Reflector {
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Reflector> {
        let [a, b, c, d, e, f] = NAMES.map(|n| take(ebpf, n));
        Self::from_maps([a?, b?, c?, d?, e?, f?])
    }

    pub fn open(instance: &Instance) -> Result<Reflector> {
        let [a, b, c, d, e, f] = NAMES.map(|n| open_pinned(instance, n));
        Self::from_maps([a?, b?, c?, d?, e?, f?])
    }

    fn from_maps([config, keys, clock, own, deny, rate]: [Map; 6]) -> Result<Reflector> {
        Ok(Reflector {
            config: config.try_into().context("config map type")?,
            keys: keys.try_into().context("reflector key map type")?,
            clock: clock.try_into().context("clock map type")?,
            own_addrs: own.try_into().context("own addresses map type")?,
            deny: deny.try_into().context("deny trie type")?,
            rate: rate.try_into().context("rate map type")?,
        })
    }

    /// Pin every map under the instance directory, next to the relay's.
    pub fn pin(&self, instance: &Instance) -> Result<()> {
        let maps: [&MapData; 6] = [
            IterableMap::map(&self.config),
            IterableMap::map(&self.keys),
            IterableMap::map(&self.clock),
            IterableMap::map(&self.own_addrs),
            IterableMap::map(&self.deny),
            IterableMap::map(&self.rate),
        ];
        for (name, map) in NAMES.iter().zip(maps) {
            let path = instance.map_path(name);
            map.pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(())
    }

    /// Reflector port, STUN port (0 = off) and the reflect rate limit, in one update.
    pub fn set_config(&mut self, cfg: &DataPlaneConfig) -> Result<()> {
        self.config
            .set(0, cfg, 0)
            .context("writing the data-plane config")
    }

    pub fn config(&self) -> Result<DataPlaneConfig> {
        self.config
            .get(&0, 0)
            .context("reading the data-plane config")
    }

    /// Install or replace the MAC key `key_id` (16 bytes, as SipHash takes them).
    pub fn set_key(&mut self, key_id: u16, key: [u8; 16]) -> Result<()> {
        self.keys
            .insert(&u32::from(key_id), &SipKey::from_bytes(key), 0)
            .with_context(|| format!("installing reflector key {key_id}"))
    }

    /// Remove a key; tickets signed with it are refused from now on. Missing is not an error.
    pub fn remove_key(&mut self, key_id: u16) -> Result<bool> {
        absent_ok(self.keys.remove(&u32::from(key_id)))
            .with_context(|| format!("removing reflector key {key_id}"))
    }

    /// The key installed as `key_id` (a restarted daemon signs with the keys it finds).
    pub fn key(&self, key_id: u16) -> Result<Option<SipKey>> {
        match self.keys.get(&u32::from(key_id), 0) {
            Ok(k) => Ok(Some(k)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading reflector key {key_id}")),
        }
    }

    /// Key ids installed.
    pub fn key_ids(&self) -> Result<Vec<u16>> {
        self.keys
            .keys()
            .map(|k| Ok(u16::try_from(k?).unwrap_or(u16::MAX)))
            .collect::<Result<_, MapError>>()
            .context("listing reflector keys")
    }

    /// The data plane's wall clock, unix seconds (the controller writes it once a second;
    /// 0, never written, refuses every ticket).
    pub fn set_clock(&mut self, unix_secs: u64) -> Result<()> {
        self.clock
            .set(0, &unix_secs, 0)
            .context("writing the clock")
    }

    pub fn clock(&self) -> Result<u64> {
        self.clock.get(&0, 0).context("reading the clock")
    }

    /// One of this box's addresses: an allowed reflect source, a denied reflect destination,
    /// and an address XDP answers STUN and reflector packets on.
    pub fn add_own_addr(&mut self, ip: IpAddr) -> Result<()> {
        self.own_addrs
            .insert(&addr16(ip), &relay_common::reflector::OWN_ADDR_PRESENT, 0)
            .with_context(|| format!("adding own address {ip}"))
    }

    pub fn remove_own_addr(&mut self, ip: IpAddr) -> Result<bool> {
        absent_ok(self.own_addrs.remove(&addr16(ip)))
            .with_context(|| format!("removing own address {ip}"))
    }

    pub fn own_addrs(&self) -> Result<Vec<IpAddr>> {
        self.own_addrs
            .keys()
            .map(|k| {
                let ip = std::net::Ipv6Addr::from(k?);
                Ok(ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4))
            })
            .collect::<Result<_, MapError>>()
            .context("listing own addresses")
    }

    /// Make the operator's deny list exactly `prefixes` (address, prefix length). New entries
    /// go in before stale ones come out, so no prefix that stays is ever missing.
    pub fn set_deny_prefixes(&mut self, prefixes: &[(IpAddr, u8)]) -> Result<()> {
        let want: Vec<Key<[u8; 16]>> = prefixes
            .iter()
            .map(|&(ip, len)| prefix_key(ip, len))
            .collect::<Result<_>>()?;
        for k in &want {
            self.deny
                .insert(k, &1, 0)
                .context("adding a deny prefix (deny trie full?)")?;
        }
        let have: Vec<Key<[u8; 16]>> = self
            .deny
            .keys()
            .collect::<Result<_, _>>()
            .context("listing deny prefixes")?;
        let same = |a: &Key<[u8; 16]>, b: &Key<[u8; 16]>| {
            a.prefix_len() == b.prefix_len() && a.data() == b.data()
        };
        for k in have.iter().filter(|h| !want.iter().any(|w| same(h, w))) {
            absent_ok(self.deny.remove(k)).context("removing a deny prefix")?;
        }
        Ok(())
    }
}

fn absent_ok(r: Result<(), MapError>) -> Result<bool, MapError> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        // Deleting a missing key comes back as the raw ENOENT.
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_keys_put_ipv4_under_the_mapped_prefix() {
        let k = prefix_key("198.51.100.0".parse().unwrap(), 24).unwrap();
        assert_eq!(k.prefix_len(), 120);
        assert_eq!(&k.data()[10..], &[0xff, 0xff, 198, 51, 100, 0]);
        assert!(prefix_key("198.51.100.0".parse().unwrap(), 33).is_err());
        let k = prefix_key("2001:db8::".parse().unwrap(), 32).unwrap();
        assert_eq!(k.prefix_len(), 32);
    }
}
