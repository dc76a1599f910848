//! Typed access to the TURN channel maps (`relay_common::turn`, docs/turn.md): what the
//! controller's TURN server writes for XDP to relay ChannelData. A bound channel has one
//! entry in each map: `TURN_CHANNELS` for ChannelData from the client (Strip, or Renumber
//! to another allocation on this box), `TURN_PEERS` for UDP from the peer (Add). Pinned with
//! the other maps, so a restarted daemon finds its channels still relayed.
use aya::{
    Ebpf,
    maps::{HashMap, IterableMap, Map, MapData, MapError},
};
use relay_common::{
    LegKey, map_names,
    turn::{CHANNEL_MAX_5766, CHANNEL_MIN, ChannelKey, TurnAction, TurnValue},
};

use super::{
    maps::{open_pinned, take},
    pins::Instance,
};
use crate::error::{Error, Result};

pub struct TurnMaps {
    channels: HashMap<MapData, ChannelKey, TurnValue>,
    peers: HashMap<MapData, LegKey, TurnValue>,
}

const NAMES: [&str; 2] = [map_names::TURN_CHANNELS, map_names::TURN_PEERS];

fn internal(e: anyhow::Error) -> Error {
    Error::internal(format!("{e:#}"))
}

/// A map error in domain words: a full map is exhaustion, anything else internal.
fn map_error(what: &str, e: MapError) -> Error {
    let full = match &e {
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::E2BIG),
        _ => false,
    };
    if full {
        Error::exhausted(format!("{what}: the TURN channel map is full"))
    } else {
        Error::internal(format!("{what}: {e}"))
    }
}

/// Removing what is not there is not an error (`false`).
fn absent_ok(what: &str, r: Result<(), MapError>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(map_error(what, e)),
    }
}

/// A channel number as on the wire (`channel_be`) must be one a client may bind.
fn check_channel(channel_be: u16, what: &str) -> Result<()> {
    let ch = u16::from_be(channel_be);
    if (CHANNEL_MIN..=CHANNEL_MAX_5766).contains(&ch) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what}: channel number {ch:#06x} outside {CHANNEL_MIN:#06x}..={CHANNEL_MAX_5766:#06x}"
        )))
    }
}

impl TurnMaps {
    /// Take the maps out of a freshly loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<TurnMaps> {
        let [a, b] = NAMES.map(|n| take(ebpf, n).map_err(internal));
        Self::from_maps([a?, b?])
    }

    /// The pinned maps of a running data plane (`None` if it predates TURN: a plane pinned
    /// by an older daemon, whose program relays no ChannelData; TURN then stays in userspace).
    pub fn open(instance: &Instance) -> Result<Option<TurnMaps>> {
        if !instance.map_path(map_names::TURN_CHANNELS).exists() {
            return Ok(None);
        }
        let [a, b] = NAMES.map(|n| open_pinned(instance, n).map_err(internal));
        Self::from_maps([a?, b?]).map(Some)
    }

    fn from_maps([channels, peers]: [Map; 2]) -> Result<TurnMaps> {
        Ok(TurnMaps {
            channels: channels
                .try_into()
                .map_err(|e| Error::internal(format!("TURN channels map type: {e}")))?,
            peers: peers
                .try_into()
                .map_err(|e| Error::internal(format!("TURN peers map type: {e}")))?,
        })
    }

    /// Pin both maps under the instance directory, next to the relay's.
    pub fn pin(&self, instance: &Instance) -> Result<()> {
        let maps: [&MapData; 2] = [
            IterableMap::map(&self.channels),
            IterableMap::map(&self.peers),
        ];
        for (name, map) in NAMES.iter().zip(maps) {
            let path = instance.map_path(name);
            map.pin(&path)
                .map_err(|e| Error::internal(format!("pinning {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Install or replace the entry for ChannelData from `key.client` to `key.server` on
    /// `key.channel_be`, in one map update. Its action must be Strip (to the peer) or
    /// Renumber (to another allocation's client on this box, whose channel number
    /// `value.channel_be` must then be a valid one).
    pub fn set_channel(&mut self, key: &ChannelKey, value: &TurnValue) -> Result<()> {
        let what = "TURN channel entry";
        check_channel(key.channel_be, what)?;
        if value.action == TurnAction::Renumber as u16 {
            check_channel(value.channel_be, what)?;
        } else if value.action != TurnAction::Strip as u16 {
            return Err(Error::invalid(format!(
                "{what}: action {} is neither Strip nor Renumber",
                value.action
            )));
        }
        self.channels
            .insert(key, value, 0)
            .map_err(|e| map_error(what, e))
    }

    /// Remove a channel entry; `false` if there was none.
    pub fn del_channel(&mut self, key: &ChannelKey) -> Result<bool> {
        absent_ok("removing a TURN channel entry", self.channels.remove(key))
    }

    /// Every channel entry (a snapshot).
    pub fn channels(&self) -> Result<Vec<(ChannelKey, TurnValue)>> {
        self.channels
            .iter()
            .collect::<Result<_, _>>()
            .map_err(|e| map_error("listing TURN channel entries", e))
    }

    /// Install or replace the entry for UDP from the peer `key.peer` to the relayed address
    /// `key.relay` (`LegKey::channel`), in one map update. Its action must be Add, with the
    /// channel number to put in front. XDP only looks here for a relayed port whose port
    /// entry in the legs map is flagged `LEG_F_TURN`: install this entry first, the flag last.
    pub fn set_peer(&mut self, key: &LegKey, value: &TurnValue) -> Result<()> {
        let what = "TURN peer entry";
        if value.action != TurnAction::Add as u16 {
            return Err(Error::invalid(format!(
                "{what}: action {} is not Add",
                value.action
            )));
        }
        check_channel(value.channel_be, what)?;
        self.peers
            .insert(key, value, 0)
            .map_err(|e| map_error(what, e))
    }

    /// Remove a peer entry; `false` if there was none.
    pub fn del_peer(&mut self, key: &LegKey) -> Result<bool> {
        absent_ok("removing a TURN peer entry", self.peers.remove(key))
    }

    /// Every peer entry (a snapshot).
    pub fn peers(&self) -> Result<Vec<(LegKey, TurnValue)>> {
        self.peers
            .iter()
            .collect::<Result<_, _>>()
            .map_err(|e| map_error("listing TURN peer entries", e))
    }

    /// Insert without the checks of `set_channel`/`set_peer`: only for tests that must put
    /// the maps into states the controller never writes (an entry of the wrong kind).
    pub fn set_unchecked(
        &mut self,
        channel: Option<(&ChannelKey, &TurnValue)>,
        peer: Option<(&LegKey, &TurnValue)>,
    ) -> Result<()> {
        if let Some((k, v)) = channel {
            self.channels
                .insert(k, v, 0)
                .map_err(|e| map_error("TURN channel entry", e))?;
        }
        if let Some((k, v)) = peer {
            self.peers
                .insert(k, v, 0)
                .map_err(|e| map_error("TURN peer entry", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_numbers_are_checked_in_wire_order() {
        assert!(check_channel(0x4000u16.to_be(), "t").is_ok());
        assert!(check_channel(0x4fffu16.to_be(), "t").is_ok());
        // RFC 5766's range (coturn's client binds up to it).
        assert!(check_channel(0x7fffu16.to_be(), "t").is_ok());
        let e = check_channel(0x8000u16.to_be(), "t").unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Invalid);
        assert!(e.message.contains("0x8000"), "{}", e.message);
        // 0x0040 on the wire is 0x4000 read the wrong way round: refused.
        assert!(check_channel(0x4000, "t").is_err());
    }
}
