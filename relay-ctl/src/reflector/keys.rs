//! Ticket keys: which key signs new tickets, which older keys still verify, and when each
//! goes. Pure bookkeeping (unit-tested); `service.rs` applies its decisions to the kernel map.
//!
//! The key bytes live only in the pinned `RELAY_REFLECT_KEYS` map (so a restarted daemon
//! reads them back); the ring's ids and ages go to a small JSON file next to the state file,
//! which holds no key material.
use std::{fs, io::Write, path::Path};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub id: u16,
    /// Unix seconds when the key was made.
    pub created: u64,
    /// Unix seconds when a newer key replaced it; it is removed `grace` later.
    pub retired: Option<u64>,
}

/// The keys installed, newest (the signing key) last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    pub keys: Vec<KeyEntry>,
}

/// What the ring wants done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Make a key with this id and sign with it from now on.
    Create(u16),
    /// Remove this retired key: its grace period is over.
    Remove(u16),
}

impl KeyRing {
    /// The key new tickets are signed with.
    pub fn current(&self) -> Option<KeyEntry> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.retired.is_none())
            .copied()
    }

    /// A free id after the newest one (wrapping, never 0 so a zeroed header is never valid).
    pub fn next_id(&self) -> u16 {
        let mut id = self.keys.last().map_or(0, |k| k.id);
        loop {
            id = id.wrapping_add(1);
            if id != 0 && !self.keys.iter().any(|k| k.id == id) {
                return id;
            }
        }
    }

    /// Due actions at `now`: a key when there is none or the current one is older than
    /// `rotate`, and removals of keys retired more than `grace` ago.
    pub fn due(&self, now: u64, rotate: u64, grace: u64) -> Vec<KeyAction> {
        let mut out = vec![];
        match self.current() {
            Some(k) if now < k.created.saturating_add(rotate) => {}
            _ => out.push(KeyAction::Create(self.next_id())),
        }
        for k in &self.keys {
            if let Some(r) = k.retired
                && now >= r.saturating_add(grace)
            {
                out.push(KeyAction::Remove(k.id));
            }
        }
        out
    }

    /// `id` was installed at `now` and signs from now on; the previous signer retires.
    pub fn created(&mut self, id: u16, now: u64) {
        for k in &mut self.keys {
            if k.retired.is_none() {
                k.retired = Some(now);
            }
        }
        self.keys.push(KeyEntry {
            id,
            created: now,
            retired: None,
        });
    }

    pub fn removed(&mut self, id: u16) {
        self.keys.retain(|k| k.id != id);
    }

    /// Make the ring agree with the ids actually in the kernel map (after a restart, or a
    /// lost or stale file): entries whose key is gone are dropped, keys the file does not know
    /// retire now (they still verify for the grace period, then go).
    pub fn reconcile(&mut self, in_map: &[u16], now: u64) {
        self.keys.retain(|k| in_map.contains(&k.id));
        for &id in in_map {
            if !self.keys.iter().any(|k| k.id == id) {
                self.keys.insert(
                    0,
                    KeyEntry {
                        id,
                        created: now,
                        retired: Some(now),
                    },
                );
            }
        }
    }

    /// The ring saved by a previous daemon, if any (a broken file is reported and ignored:
    /// reconcile then retires the keys it finds).
    pub fn load(path: &Path) -> Option<KeyRing> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!("ignoring {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_str(&text) {
            Ok(r) => Some(r),
            Err(e) => {
                log::warn!("ignoring {}: {e}", path.display());
                None
            }
        }
    }

    /// Write atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let text = serde_json::to_vec_pretty(self)?;
        let mut f = fs::File::create(&tmp)
            .with_context(|| format!("creating {}", Path::new(&tmp).display()))?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// 16 key bytes from the kernel's CSPRNG. getrandom(2) directly: keys are made once an hour,
/// so a userspace generator (rand) would add state and code for nothing.
pub fn fresh_key() -> Result<[u8; 16]> {
    let mut k = [0u8; 16];
    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_key_then_rotation_then_removal_after_grace() {
        let mut r = KeyRing::default();
        assert_eq!(r.due(1000, 3600, 600), [KeyAction::Create(1)]);
        r.created(1, 1000);
        assert_eq!(r.current().map(|k| k.id), Some(1));
        assert!(r.due(4599, 3600, 600).is_empty());
        assert_eq!(r.due(4600, 3600, 600), [KeyAction::Create(2)]);
        r.created(2, 4600);
        assert_eq!(r.current().map(|k| k.id), Some(2));
        // Key 1 still verifies during the grace period, then goes.
        assert!(r.due(5199, 3600, 600).is_empty());
        assert_eq!(r.due(5200, 3600, 600), [KeyAction::Remove(1)]);
        r.removed(1);
        assert_eq!(r.keys.len(), 1);
    }

    #[test]
    fn ids_wrap_and_skip_zero_and_ids_in_use() {
        let mut r = KeyRing::default();
        r.created(u16::MAX, 1);
        assert_eq!(r.next_id(), 1);
        r.keys.insert(
            0,
            KeyEntry {
                id: 1,
                created: 0,
                retired: Some(1),
            },
        );
        assert_eq!(r.next_id(), 2);
    }

    #[test]
    fn reconcile_with_the_map() {
        let mut r = KeyRing::default();
        r.created(4, 10);
        r.created(5, 20);
        // Key 4 vanished from the map, 9 is there without a record.
        r.reconcile(&[5, 9], 30);
        assert_eq!(r.current().map(|k| k.id), Some(5));
        assert!(r.keys.iter().all(|k| k.id != 4));
        let nine = r.keys.iter().find(|k| k.id == 9).unwrap();
        assert_eq!(nine.retired, Some(30));
        assert_eq!(r.due(30 + 600, 3600, 600), [KeyAction::Remove(9)]);
        // No file and an empty map: one key gets made.
        let mut e = KeyRing::default();
        e.reconcile(&[], 0);
        assert_eq!(e.due(0, 3600, 600), [KeyAction::Create(1)]);
    }

    #[test]
    fn save_and_load() {
        let dir = std::env::temp_dir().join(format!("relay-keys-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k.json");
        let mut r = KeyRing::default();
        r.created(3, 7);
        r.save(&p).unwrap();
        assert_eq!(KeyRing::load(&p), Some(r));
        fs::write(&p, "not json").unwrap();
        assert_eq!(KeyRing::load(&p), None);
        assert_eq!(KeyRing::load(&dir.join("missing")), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fresh_keys_differ() {
        assert_ne!(fresh_key().unwrap(), fresh_key().unwrap());
    }
}
