//! What the TURN server (`crate::turn`) takes from the session controller: relayed ports from
//! the same port allocator as sessions (quarantine and exhaustion rules included), kernel
//! stats slots from the same slot allocator, the legs map for the `LEG_F_TURN` port entry of
//! each relayed address, and the steered receive sockets' packets to relayed ports (see
//! `io.rs`: a packet to a port no session owns is offered to the [`RelayedSink`] first).
use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Weak},
    time::Instant,
};

use relay_common::{
    endpoint::Endpoint,
    leg::LegKey,
    turn::{ChannelKey, TurnValue},
};

use super::{Controller, alloc_error};
use crate::{
    dataplane::TurnMaps,
    error::{Error, Result},
    ports::PortPair,
    turn::{
        handler::Resources,
        offload::{TurnOffload, relayed_port_entry},
    },
};

/// Whoever serves packets to relayed ports that no session owns (the TURN server).
pub trait RelayedSink: Send + Sync {
    /// A packet from `src` to relay address:port `relayed`; false: not a port of the sink's.
    fn on_relayed(&self, relayed: SocketAddr, src: SocketAddr, pkt: &[u8]) -> bool;
}

impl Controller {
    /// Hand packets to relayed ports no session owns to `sink` (once; later calls are
    /// ignored). Held weakly: the sink's owner decides how long it lives.
    pub fn set_relayed_sink(&self, sink: Weak<dyn RelayedSink>) {
        let _ = self.relayed_sink.set(sink);
    }

    pub(super) fn relayed_sink(&self) -> Option<Arc<dyn RelayedSink>> {
        self.relayed_sink.get().and_then(Weak::upgrade)
    }
}

impl Resources for Controller {
    fn reserve(&self, ip: IpAddr) -> Result<SocketAddr> {
        let mut inner = self.lock();
        let a = inner
            .ports
            .allocate(ip, Instant::now())
            .map_err(alloc_error)?;
        Ok(a.pair.rtp_addr())
    }

    fn release(&self, relayed: SocketAddr) {
        let mut inner = self.lock();
        inner
            .ports
            .release(PortPair::new(relayed.ip(), relayed.port()), Instant::now());
    }

    fn alloc_slot(&self) -> Option<u32> {
        let mut inner = self.lock();
        let slot = inner.slots.alloc()?;
        // A slot's counters start at zero for its new owner (a freed slot keeps the last
        // owner's until then).
        if let Err(e) = inner.dp.reset_slot(slot) {
            log::warn!("TURN: {e:#}");
            inner.slots.free(slot);
            return None;
        }
        Some(slot)
    }

    fn free_slot(&self, slot: u32) {
        self.lock().slots.free(slot);
    }

    fn slot_packets(&self, slot: u32) -> u64 {
        self.lock().dp.leg_stats(slot).map_or(0, |s| s.packets)
    }
}

fn internal(e: anyhow::Error) -> Error {
    Error::internal(format!("{e:#}"))
}

impl Controller {
    /// Give the TURN server's offload the XDP channel maps. Entries a previous daemon left
    /// in them are removed first: allocations do not survive a restart, so their channels
    /// must not stay relayed.
    pub fn set_turn_maps(&self, mut maps: TurnMaps) -> Result<()> {
        let stale_channels = maps.channels()?;
        let stale_peers = maps.peers()?;
        for (k, _) in &stale_channels {
            maps.del_channel(k)?;
        }
        for (k, _) in &stale_peers {
            maps.del_peer(k)?;
        }
        if !stale_channels.is_empty() || !stale_peers.is_empty() {
            log::info!(
                "TURN: removed {} channel and {} peer entries left by a previous daemon",
                stale_channels.len(),
                stale_peers.len()
            );
        }
        *self.turn_maps_lock() = Some(maps);
        Ok(())
    }

    fn turn_maps_lock(&self) -> std::sync::MutexGuard<'_, Option<TurnMaps>> {
        self.turn_maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the channel maps; without them (a data plane that predates them) nothing
    /// is offloaded and the TURN server relays in userspace, which it does anyway for
    /// whatever XDP passes up.
    fn with_turn_maps<T>(&self, f: impl FnOnce(&mut TurnMaps) -> Result<T>) -> Result<()> {
        match self.turn_maps_lock().as_mut() {
            Some(m) => f(m).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// The daemon's offload: channel entries into the XDP channel maps, the `LEG_F_TURN` port
/// entries into the legs map.
impl TurnOffload for Controller {
    fn set_channel(&self, key: ChannelKey, value: TurnValue) -> Result<()> {
        self.with_turn_maps(|m| m.set_channel(&key, &value))
    }
    fn del_channel(&self, key: ChannelKey) -> Result<()> {
        self.with_turn_maps(|m| m.del_channel(&key))
    }
    fn set_peer(&self, key: LegKey, value: TurnValue) -> Result<()> {
        self.with_turn_maps(|m| m.set_peer(&key, &value))
    }
    fn del_peer(&self, key: LegKey) -> Result<()> {
        self.with_turn_maps(|m| m.del_peer(&key))
    }
    fn mark_relayed(&self, relayed: Endpoint) -> Result<()> {
        let (k, v) = relayed_port_entry(relayed);
        self.lock().dp.install_leg(&k, &v).map_err(internal)
    }
    fn unmark_relayed(&self, relayed: Endpoint) -> Result<()> {
        let (k, _) = relayed_port_entry(relayed);
        self.lock().dp.remove_leg(&k).map(|_| ()).map_err(internal)
    }
}
