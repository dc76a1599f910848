//! The reflector at run time: writes the configuration, the own-address and deny maps at
//! start (also over an adopted data plane: the rate buckets and keys stay), keeps the clock
//! map current, rotates the ticket keys and signs tickets.
use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use relay_common::{reflector::DataPlaneConfig, siphash::SipKey};

use super::{
    config::{BUILTIN_DENY, Prefix, ReflectorConfig},
    keys::{KeyAction, KeyRing, fresh_key},
    tickets::{self, Policy, Refusal},
};
use crate::{
    api::{TicketRequest, TicketView},
    clock::unix_now,
    dataplane::Reflector,
    error::Error,
};

#[derive(Default)]
pub struct Counters {
    pub tickets_issued: AtomicU64,
    pub refused: [AtomicU64; Refusal::ALL.len()],
    pub key_rotations: AtomicU64,
    pub key_removals: AtomicU64,
    pub key_errors: AtomicU64,
    pub clock_errors: AtomicU64,
}

struct Inner {
    maps: Reflector,
    ring: KeyRing,
    /// Key bytes by id, for signing (the kernel map holds the same).
    keys: HashMap<u16, SipKey>,
}

pub struct ReflectorService {
    cfg: ReflectorConfig,
    /// Addresses tickets may name as source (also `RELAY_OWN_ADDRS`).
    allowed_src: Vec<IpAddr>,
    /// Built-in, this box's addresses, then the operator's.
    deny: Vec<Prefix>,
    ring_file: PathBuf,
    inner: Mutex<Inner>,
    pub counters: Counters,
}

/// Where the key ring (ids and ages, no key bytes) is saved: next to the state file.
pub fn ring_file(state_file: &std::path::Path) -> PathBuf {
    let mut p = state_file.as_os_str().to_owned();
    p.push(".keys");
    PathBuf::from(p)
}

impl ReflectorService {
    /// Configure the maps and make sure a signing key exists. `relay_addrs` are the default
    /// reflect sources (and, with `cfg.turn_port` set, addresses XDP takes TURN ChannelData
    /// on), `box_addrs` every address of this box (denied as destinations).
    pub fn start(
        mut maps: Reflector,
        cfg: &ReflectorConfig,
        relay_addrs: &[IpAddr],
        box_addrs: &[IpAddr],
        state_file: &std::path::Path,
    ) -> Result<ReflectorService> {
        let now = unix_now();
        // The clock first: keys and config are useless to XDP while the clock reads 0.
        maps.set_clock(now)?;
        let mut allowed_src: Vec<IpAddr> = if cfg.reflect_src.is_empty() {
            relay_addrs
                .iter()
                .copied()
                .chain(cfg.stun_alt_addr)
                .filter(IpAddr::is_ipv4)
                .collect()
        } else {
            cfg.reflect_src.clone()
        };
        let mut seen = vec![];
        allowed_src.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        // Own addresses: the reflect sources, and with TURN on every relay address of both
        // families (XDP takes ChannelData only to the TURN port of an own address; an IPv6
        // entry is never a reflect source nor destination, the reflector being IPv4).
        let mut own = allowed_src.clone();
        if cfg.turn_port != 0 {
            own.extend(relay_addrs.iter().filter(|a| !allowed_src.contains(a)));
        }
        // New ones in before stale ones out, so none that stays is missing.
        let had = maps.own_addrs()?;
        for a in &own {
            maps.add_own_addr(*a)?;
        }
        for a in had.iter().filter(|a| !own.contains(a)) {
            maps.remove_own_addr(*a)?;
        }
        let mut deny: Vec<Prefix> = BUILTIN_DENY
            .iter()
            .map(|&(a, len)| Prefix {
                addr: a.into(),
                len,
            })
            .collect();
        for a in box_addrs.iter().chain(relay_addrs).chain(&allowed_src) {
            let p = Prefix::host(*a);
            if !deny.contains(&p) {
                deny.push(p);
            }
        }
        deny.extend(cfg.reflect_deny.iter().copied());
        let trie: Vec<(IpAddr, u8)> = deny.iter().map(|p| (p.addr, p.len)).collect();
        maps.set_deny_prefixes(&trie)?;
        maps.set_config(&DataPlaneConfig {
            reflector_port: cfg.reflector_port,
            stun_port: cfg.stun_port,
            reflect_rate: cfg.reflect_rate,
            reflect_burst: cfg.reflect_burst,
            turn_port: cfg.turn_port,
            _pad: 0,
        })?;

        let ring_file = ring_file(state_file);
        let in_map = maps.key_ids()?;
        let mut ring = KeyRing::load(&ring_file).unwrap_or_default();
        ring.reconcile(&in_map, now);
        let mut keys = HashMap::new();
        for id in &in_map {
            if let Some(k) = maps.key(*id)? {
                keys.insert(*id, k);
            }
        }
        if !in_map.is_empty() {
            log::info!(
                "reflector: kept {} key(s) from the pinned map, signing with {:?}",
                in_map.len(),
                ring.current().map(|k| k.id)
            );
        }
        let svc = ReflectorService {
            cfg: cfg.clone(),
            allowed_src,
            deny,
            ring_file,
            inner: Mutex::new(Inner { maps, ring, keys }),
            counters: Counters::default(),
        };
        svc.rotate_due(now)?;
        svc.save_ring();
        log::info!(
            "reflector: port {} ({}), STUN port {}, sources {}, {} deny prefixes",
            cfg.reflector_port,
            if cfg.reflector_port == 0 { "off" } else { "on" },
            cfg.stun_port,
            svc.allowed_src
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
            svc.deny.len()
        );
        Ok(svc)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere leaves the maps and ring usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save_ring(&self) {
        let ring = self.lock().ring.clone();
        if let Err(e) = ring.save(&self.ring_file) {
            self.counters.key_errors.fetch_add(1, Ordering::Relaxed);
            log::warn!("reflector: saving the key ring: {e:#}");
        }
    }

    /// Apply the due key actions at `now`. A new key goes into the map before it signs
    /// anything; an old key leaves only after its grace period.
    fn rotate_due(&self, now: u64) -> Result<()> {
        let mut changed = false;
        let result = (|| {
            let mut inner = self.lock();
            let due = inner.ring.due(
                now,
                self.cfg.key_rotate.as_secs(),
                self.cfg.key_grace.as_secs(),
            );
            for a in due {
                match a {
                    KeyAction::Create(id) => {
                        let bytes = fresh_key()?;
                        inner.maps.set_key(id, bytes)?;
                        inner.keys.insert(id, SipKey::from_bytes(bytes));
                        let first = inner.ring.current().is_none();
                        inner.ring.created(id, now);
                        if !first {
                            self.counters.key_rotations.fetch_add(1, Ordering::Relaxed);
                        }
                        log::info!("reflector: key {id} signs new tickets");
                    }
                    KeyAction::Remove(id) => {
                        inner.maps.remove_key(id)?;
                        inner.keys.remove(&id);
                        inner.ring.removed(id);
                        self.counters.key_removals.fetch_add(1, Ordering::Relaxed);
                        log::info!("reflector: key {id} removed (grace period over)");
                    }
                }
                changed = true;
            }
            Ok::<_, anyhow::Error>(())
        })();
        if changed {
            self.save_ring();
        }
        if result.is_err() {
            self.counters.key_errors.fetch_add(1, Ordering::Relaxed);
        }
        result.context("rotating reflector keys")
    }

    /// Once a second: the clock, then key rotation.
    pub fn tick(&self) {
        let now = unix_now();
        if let Err(e) = self.lock().maps.set_clock(now) {
            self.counters.clock_errors.fetch_add(1, Ordering::Relaxed);
            log::warn!("reflector: {e:#}");
        }
        if let Err(e) = self.rotate_due(now) {
            log::warn!("reflector: {e:#}");
        }
    }

    /// Run [`Self::tick`] every second until the task is aborted.
    pub async fn run(self: std::sync::Arc<Self>) {
        let mut t = tokio::time::interval(Duration::from_secs(1));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            self.tick();
        }
    }

    fn refuse(&self, why: Refusal, msg: String) -> Error {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.counters.refused[i].fetch_add(1, Ordering::Relaxed);
        }
        log::debug!("ticket refused ({}): {msg}", why.as_str());
        match why {
            Refusal::Disabled => Error::conflict(msg),
            Refusal::NoKey => Error::exhausted(msg),
            _ => Error::invalid(msg),
        }
    }

    /// `POST /v1/reflector/tickets`. `req` is the decoded body, or why it did not decode
    /// (counted like any other refusal).
    pub fn issue(&self, req: Result<TicketRequest, Error>) -> Result<TicketView, Error> {
        let req = req.map_err(|e| self.refuse(Refusal::BadBody, e.message))?;
        if self.cfg.reflector_port == 0 {
            return Err(self.refuse(
                Refusal::Disabled,
                "the reflector is off (reflector-port = 0)".into(),
            ));
        }
        let policy = Policy {
            allowed_src: &self.allowed_src,
            deny: &self.deny,
            max_ttl: self.cfg.ticket_max_ttl.as_secs(),
        };
        let checked = tickets::check(&req, &policy).map_err(|(why, msg)| self.refuse(why, msg))?;
        let signer = {
            let inner = self.lock();
            inner
                .ring
                .current()
                .and_then(|k| inner.keys.get(&k.id).map(|key| (k.id, *key)))
        };
        let Some((id, key)) = signer else {
            return Err(self.refuse(Refusal::NoKey, "no reflector key installed yet".into()));
        };
        let t = tickets::sign(&checked, &key, id, unix_now());
        self.counters.tickets_issued.fetch_add(1, Ordering::Relaxed);
        Ok(t)
    }
}
