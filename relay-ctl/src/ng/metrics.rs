//! The ng listener's Prometheus counters, from the controller counters it adds to
//! (`Control::count`), registered into the same per-scrape registry as the rest.
use anyhow::Result;
use prometheus::{IntCounterVec, Opts, Registry};

use crate::api::StatsView;

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help).namespace("media_relay"), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn ctl(s: &StatsView, name: &str) -> u64 {
    s.controller.get(name).copied().unwrap_or(0)
}

pub fn register(reg: &Registry, s: &StatsView) -> Result<()> {
    let req = counter(
        reg,
        "ng_requests_total",
        "ng control protocol requests handled (retransmissions not included), by command",
        &["command"],
    )?;
    for c in [
        "ping",
        "offer",
        "answer",
        "delete",
        "query",
        "list",
        "statistics",
        "other",
    ] {
        let key = format!("ng_cmd_{c}");
        req.with_label_values(&[c]).inc_by(ctl(s, &key));
    }
    let err = counter(
        reg,
        "ng_errors_total",
        "ng requests answered with result=error, by reason",
        &["reason"],
    )?;
    for r in [
        "missing_key",
        "unknown_command",
        "unknown_call",
        "sdp",
        "unsupported",
        "resources",
        "rejected",
        "internal",
    ] {
        let key = format!("ng_error_{r}");
        err.with_label_values(&[r]).inc_by(ctl(s, &key));
    }
    let ev = counter(
        reg,
        "ng_events_total",
        "ng listener events: bad frames, retransmissions answered from the cache, re-offers",
        &["event"],
    )?;
    for e in [
        "bad_frames",
        "retransmits",
        "reoffer_same_ports",
        "reoffer_new_media",
        "unknown_direction",
        "tag_mismatch",
        "adopted_calls",
    ] {
        let key = format!("ng_{e}");
        ev.with_label_values(&[e]).inc_by(ctl(s, &key));
    }
    let unk = counter(
        reg,
        "ng_unknown_flags_total",
        "Flags, replace items and option values the ng listener ignored (never fatal)",
        &[],
    )?;
    unk.with_label_values::<&str>(&[])
        .inc_by(ctl(s, "ng_unknown_flags"));
    let keys = counter(
        reg,
        "ng_unknown_keys_total",
        "Request keys the ng listener ignored",
        &[],
    )?;
    keys.with_label_values::<&str>(&[])
        .inc_by(ctl(s, "ng_unknown_keys"));
    Ok(())
}
