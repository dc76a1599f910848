//! The TURN server's metrics: `media_relay_turn_events_total{event}` (every outcome of
//! `turn::TurnEvent`, zeros included), the packets and bytes it relayed in userspace, and
//! gauges of its allocations, permissions and channels.
use std::sync::atomic::Ordering;

use prometheus::{IntGauge, Opts, Registry, TextEncoder};

use super::{NS, counter};
use crate::turn::server::TurnServer;

fn gauge(reg: &Registry, name: &str, help: &str, v: usize) -> anyhow::Result<()> {
    let g = IntGauge::with_opts(Opts::new(name, help).namespace(NS))?;
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    reg.register(Box::new(g))?;
    Ok(())
}

pub fn render(t: &TurnServer) -> anyhow::Result<String> {
    let reg = Registry::new();
    let events = counter(
        &reg,
        "turn_events_total",
        "TURN server: successful requests by method, error responses by code, drops by reason, expiries",
        &["event"],
    )?;
    for (e, v) in t.stats.snapshot() {
        events.with_label_values(&[e.name()]).inc_by(v);
    }
    let p = counter(
        &reg,
        "turn_user_relayed_packets_total",
        "Packets the TURN server relayed in userspace (both directions)",
        &[],
    )?;
    p.with_label_values(&[] as &[&str])
        .inc_by(t.stats.relayed_packets.load(Ordering::Relaxed));
    let b = counter(
        &reg,
        "turn_user_relayed_bytes_total",
        "Payload bytes the TURN server relayed in userspace (both directions)",
        &[],
    )?;
    b.with_label_values(&[] as &[&str])
        .inc_by(t.stats.relayed_bytes.load(Ordering::Relaxed));
    let (allocs, perms, chans) = t.gauges();
    gauge(&reg, "turn_allocations", "Live TURN allocations", allocs)?;
    gauge(
        &reg,
        "turn_permissions",
        "TURN permissions of live allocations",
        perms,
    )?;
    gauge(
        &reg,
        "turn_channels",
        "TURN channel bindings of live allocations",
        chans,
    )?;
    Ok(TextEncoder::new().encode_to_string(&reg.gather())?)
}
