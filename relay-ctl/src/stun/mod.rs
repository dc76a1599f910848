//! The controller's STUN server: what XDP passes up from the STUN port (requests with
//! attributes, CHANGE-REQUEST, MESSAGE-INTEGRITY, ...) and everything on the RFC 5780
//! alternate address and port. docs/stun.md describes both halves.
pub mod handler;
pub mod message;
pub mod server;

use std::{collections::BTreeMap, sync::Mutex};

/// Counters of the userspace server, by event label (exported as
/// `media_relay_stun_user_total{event}`).
#[derive(Default)]
pub struct StunStats {
    events: Mutex<BTreeMap<&'static str, u64>>,
}

impl StunStats {
    pub fn inc(&self, event: &'static str) {
        *self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(event)
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
