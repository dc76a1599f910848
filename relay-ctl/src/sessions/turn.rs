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
        self.lock().slots.alloc()
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

/// The daemon's offload in this branch: the `LEG_F_TURN` port entries go into the legs map
/// (today's XDP passes such a port up to the controller: its entry has no latched source),
/// the channel maps are not written yet.
impl TurnOffload for Controller {
    // MERGE: write TURN_CHANNELS (relay-ctl/src/dataplane/turn.rs, the XDP worker's map
    // handle) here; until then ChannelData is relayed in userspace.
    fn set_channel(&self, _key: ChannelKey, _value: TurnValue) -> Result<()> {
        Ok(())
    }
    // MERGE: delete from TURN_CHANNELS.
    fn del_channel(&self, _key: ChannelKey) -> Result<()> {
        Ok(())
    }
    // MERGE: write TURN_PEERS.
    fn set_peer(&self, _key: LegKey, _value: TurnValue) -> Result<()> {
        Ok(())
    }
    // MERGE: delete from TURN_PEERS.
    fn del_peer(&self, _key: LegKey) -> Result<()> {
        Ok(())
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
