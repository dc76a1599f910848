//! The TURN server's typed counters: one counter per outcome, exported by the metrics as
//! `media_relay_turn_events_total{event}` (and the relayed packets and bytes as their own
//! families).
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! events {
    ($($v:ident => $n:literal,)*) => {
        /// Everything the TURN server counts.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum TurnEvent { $($v,)* }

        impl TurnEvent {
            pub const ALL: &'static [TurnEvent] = &[$(TurnEvent::$v,)*];

            /// The metric label.
            pub fn name(self) -> &'static str {
                match self { $(TurnEvent::$v => $n,)* }
            }
        }
    };
}

events! {
    AllocateOk => "allocate_ok",
    RefreshOk => "refresh_ok",
    DeallocateOk => "deallocate_ok",
    PermissionOk => "permission_ok",
    ChannelBindOk => "channel_bind_ok",
    BindingOk => "binding_ok",
    Error400 => "error_400_bad_request",
    Error401 => "error_401_unauthenticated",
    Error401BadIntegrity => "error_401_bad_integrity",
    Error401UnknownUser => "error_401_unknown_user",
    Error401ExpiredUser => "error_401_expired_rest_user",
    Error403 => "error_403_forbidden_peer",
    Error420 => "error_420_unknown_attribute",
    Error437 => "error_437_allocation_mismatch",
    Error438 => "error_438_stale_nonce",
    Error440 => "error_440_family_not_supported",
    Error441 => "error_441_wrong_credentials",
    Error442 => "error_442_unsupported_transport",
    Error443 => "error_443_peer_family_mismatch",
    Error486 => "error_486_quota_reached",
    Error508 => "error_508_insufficient_capacity",
    AllocationExpired => "allocation_expired",
    PermissionExpired => "permission_expired",
    ChannelExpired => "channel_expired",
    Retransmission => "retransmission",
    SendIndication => "send_indication",
    DataIndication => "data_indication",
    ChannelDataIn => "channel_data_from_client",
    ChannelDataOut => "channel_data_to_client",
    DropMalformed => "drop_malformed",
    DropNotRequest => "drop_not_request",
    DropNoAllocation => "drop_no_allocation",
    DropNoPermission => "drop_no_permission",
    DropUnknownChannel => "drop_unknown_channel",
    DropDeniedPeer => "drop_denied_peer",
    DropBandwidth => "drop_bandwidth",
    DropRateLimited => "drop_rate_limited",
    DropSendError => "drop_send_error",
    OffloadError => "offload_error",
    OffloadNoSlot => "offload_no_slot",
    BindError => "bind_error",
    DropTooManyStreams => "drop_too_many_streams",
    DropIdleStream => "drop_idle_stream",
    DropTlsHandshake => "drop_tls_handshake",
}

/// The counters, one per [`TurnEvent`], plus packets and bytes relayed in userspace.
pub struct TurnStats {
    events: Vec<AtomicU64>,
    pub relayed_packets: AtomicU64,
    pub relayed_bytes: AtomicU64,
}

impl Default for TurnStats {
    fn default() -> Self {
        TurnStats {
            events: TurnEvent::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            relayed_packets: AtomicU64::new(0),
            relayed_bytes: AtomicU64::new(0),
        }
    }
}

impl TurnStats {
    pub fn inc(&self, e: TurnEvent) {
        self.add(e, 1);
    }

    pub fn add(&self, e: TurnEvent, n: u64) {
        if let Some(c) = self.events.get(e as usize) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, e: TurnEvent) -> u64 {
        self.events
            .get(e as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// A relayed payload (either direction, userspace).
    pub fn relayed(&self, bytes: usize) {
        self.relayed_packets.fetch_add(1, Ordering::Relaxed);
        self.relayed_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Every event with its value, zeros included.
    pub fn snapshot(&self) -> Vec<(TurnEvent, u64)> {
        TurnEvent::ALL.iter().map(|e| (*e, self.get(*e))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for e in TurnEvent::ALL {
            assert!(seen.insert(e.name()), "{}", e.name());
            assert!(
                e.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
        }
        let s = TurnStats::default();
        s.inc(TurnEvent::Error438);
        s.add(TurnEvent::Error438, 2);
        assert_eq!(s.get(TurnEvent::Error438), 3);
        assert_eq!(s.get(TurnEvent::Error437), 0);
    }
}
