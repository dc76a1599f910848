//! TURN (RFC 8656) channels as the data plane relays them: the map contract between the
//! controller's TURN server (`relay-ctl/src/turn/`) and the XDP ChannelData path
//! (`relay-ebpf/src/turn.rs`). docs/turn.md has the whole picture.
//!
//! Three directions are relayed in XDP, each from one entry the controller writes whole:
//! - client -> peer: ChannelData arriving at the TURN listen endpoint; the 4-byte header (and
//!   any padding) is stripped and the payload leaves from the relayed address to the peer
//!   ([`TurnAction::Strip`], map [`crate::map_names::TURN_CHANNELS`]);
//! - peer -> client: plain UDP arriving at a relayed address from a peer with a bound channel;
//!   the header is added (the frame grows at the head, padded to 4 bytes) and it leaves from
//!   the TURN listen endpoint to the client ([`TurnAction::Add`], map
//!   [`crate::map_names::TURN_PEERS`], reached through a relayed port's entry in the legs map
//!   flagged [`crate::leg::LEG_F_TURN`]);
//! - client -> client on this box (seed 000's relay mode: two allocations that are each other's
//!   peers): the ChannelData keeps its header with the other client's channel number and goes
//!   straight to the other client ([`TurnAction::Renumber`], map `TURN_CHANNELS`), with no
//!   userspace hop and no second pass through XDP.
//!
//! Anything without an entry (Send and Data indications, a peer without a channel, an unknown
//! channel, a wrong source) goes up to the controller, which applies the RFC in userspace.
use crate::endpoint::Endpoint;

/// First and last channel number a client may bind (RFC 8656 section 12).
pub const CHANNEL_MIN: u16 = 0x4000;
pub const CHANNEL_MAX: u16 = 0x4fff;
/// Last channel number RFC 5766 allowed. RFC 8656 narrowed the range to `CHANNEL_MAX` (so
/// that DTLS and SRTP can share a port with TURN, RFC 7983), but clients written for 5766,
/// coturn's own among them, still bind numbers up to here. A TURN port carries no DTLS or
/// SRTP, so the server binds and the data plane relays the whole 5766 range.
pub const CHANNEL_MAX_5766: u16 = 0x7fff;
/// ChannelData header: channel number and length, both 16-bit.
pub const CHANNEL_HEADER_LEN: usize = 4;

/// What XDP does with a packet whose entry it found ([`TurnValue::action`]).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnAction {
    /// ChannelData from a client: strip the header, send the payload to the peer.
    Strip = 1,
    /// UDP from a peer: add the header with `channel_be`, send it to the client.
    Add = 2,
    /// ChannelData from a client to another allocation on this box: rewrite the channel
    /// number to `channel_be`, send it to that allocation's client.
    Renumber = 3,
}

/// Key of `TURN_CHANNELS`: ChannelData sent by `client` to the TURN listen endpoint `server`
/// on channel `channel_be` (network byte order, as on the wire).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ChannelKey {
    pub server: Endpoint,
    pub client: Endpoint,
    pub channel_be: u16,
    pub _pad: u16,
}

/// Value of `TURN_CHANNELS` and of `TURN_PEERS` (whose key is
/// `LegKey::channel(relayed address, peer)`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TurnValue {
    /// Written as the packet's new source: the relayed address (Strip) or the TURN listen
    /// endpoint the client talks to (Add, Renumber).
    pub new_src: Endpoint,
    /// Written as the packet's new destination: the peer (Strip) or the client (Add,
    /// Renumber).
    pub new_dst: Endpoint,
    /// `bpf_ktime_get_coarse_ns()` after which the permission (or channel) is over and XDP
    /// passes the packet to the controller; the controller also deletes expired entries.
    pub expires_ns: u64,
    /// Index into the per-leg stats array (the same slot scheme as legs).
    pub slot: u32,
    /// Channel number written (Add, Renumber), network byte order; 0 for Strip.
    pub channel_be: u16,
    /// A [`TurnAction`] value.
    pub action: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<Endpoint>(), 20);
        assert_eq!(size_of::<ChannelKey>(), 44);
        assert_eq!(size_of::<TurnValue>(), 56);
    }
}
