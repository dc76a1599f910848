//! The reflector's and the controller STUN server's counters (the data plane's reflect/STUN
//! counters are in `media_relay_xdp_*` with the others).
use std::sync::atomic::Ordering;

use prometheus::{Registry, TextEncoder};

use super::counter;
use crate::{
    reflector::{ReflectorService, Refusal},
    stun::StunStats,
};

/// Prometheus text for the reflector's and the STUN server's counters.
pub fn render(r: &ReflectorService, stun: &StunStats) -> anyhow::Result<String> {
    let reg = Registry::new();
    let c = &r.counters;
    let tickets = counter(
        &reg,
        "reflector_tickets_total",
        "Reflector ticket requests: issued, or refused by reason",
        &["result"],
    )?;
    tickets
        .with_label_values(&["issued"])
        .inc_by(c.tickets_issued.load(Ordering::Relaxed));
    for (i, why) in Refusal::ALL.iter().enumerate() {
        tickets
            .with_label_values(&[&format!("refused_{}", why.as_str())])
            .inc_by(c.refused[i].load(Ordering::Relaxed));
    }
    let keys = counter(
        &reg,
        "reflector_key_events_total",
        "Reflector key events: rotations, removals after the grace period, errors",
        &["event"],
    )?;
    for (ev, v) in [
        ("rotated", &c.key_rotations),
        ("removed", &c.key_removals),
        ("error", &c.key_errors),
        ("clock_error", &c.clock_errors),
    ] {
        keys.with_label_values(&[ev])
            .inc_by(v.load(Ordering::Relaxed));
    }
    let stun_c = counter(
        &reg,
        "stun_user_total",
        "Controller STUN server: answers, error responses by code, silent drops by reason",
        &["event"],
    )?;
    for (ev, v) in stun.snapshot() {
        stun_c.with_label_values(&[ev]).inc_by(v);
    }
    Ok(TextEncoder::new().encode_to_string(&reg.gather())?)
}
