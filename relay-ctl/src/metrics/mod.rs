//! `/metrics`: Prometheus text, in one place. The daemon's families (`render`) are built from
//! the same snapshot as `/v1/stats` and `/v1/ports`; controller events are exported by the
//! table in `events.rs`; the reflector and the STUN server add theirs (`reflector.rs`).
//! A fresh registry per scrape: the values live in the kernel maps and the controller,
//! so there is nothing to keep in between, and the text always matches the JSON.
mod reflector;
mod turn;

use std::collections::BTreeMap;

use anyhow::Result;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub use self::reflector::render as render_reflector;
pub use self::turn::render as render_turn;
use crate::{
    api::{PortsView, StatsView},
    events::{Event, Family},
};

const NS: &str = "media_relay";

/// Register a counter family in this scrape's registry (the one registration helper).
pub(crate) fn counter(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help).namespace(NS), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help).namespace(NS), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Every controller event that has a metric, in its family, zeros included (so a series
/// exists before its first event and `rate()` works from the start).
fn events(reg: &Registry, s: &StatsView) -> Result<()> {
    let mut families: BTreeMap<Family, IntCounterVec> = BTreeMap::new();
    for e in Event::ALL {
        let Some((family, value)) = e.metric() else {
            continue;
        };
        let vec = match families.get(&family) {
            Some(v) => v.clone(),
            None => {
                let (name, help, label) = family.describe();
                let labels: &[&str] = match &label {
                    Some(l) => std::slice::from_ref(l),
                    None => &[],
                };
                let v = counter(reg, name, help, labels)?;
                families.insert(family, v.clone());
                v
            }
        };
        let values: &[&str] = if value.is_empty() { &[] } else { &[value] };
        vec.with_label_values(values).inc_by(s.event(*e));
    }
    Ok(())
}

pub fn render(s: &StatsView, p: &PortsView) -> Result<String> {
    let reg = Registry::new();

    let up = IntGauge::with_opts(
        Opts::new("uptime_seconds", "Seconds since this daemon started").namespace(NS),
    )?;
    reg.register(Box::new(up.clone()))?;
    up.set(s.uptime_secs as i64);
    let adopted = IntGauge::with_opts(
        Opts::new(
            "adopted",
            "1 if this daemon adopted a pinned data plane (restart), 0 if it loaded one",
        )
        .namespace(NS),
    )?;
    reg.register(Box::new(adopted.clone()))?;
    adopted.set(i64::from(s.adopted));
    // Constant 1 with what is running as labels (the info-metric convention), so a dashboard
    // shows which build and which XDP object each box runs.
    let build = gauge(
        &reg,
        "build_info",
        "1, labelled with the controller's version, git revision and embedded XDP object hash",
        &["version", "revision", "ebpf"],
    )?;
    build
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            crate::version::GIT_REVISION,
            crate::version::EBPF_HASH,
        ])
        .set(1);

    let sessions = gauge(&reg, "sessions", "Live sessions by state", &["state"])?;
    sessions
        .with_label_values(&["offered"])
        .set(s.sessions_offered as i64);
    sessions
        .with_label_values(&["answered"])
        .set(s.sessions_answered as i64);

    let legs = gauge(&reg, "kernel_legs", "Entries in the XDP leg table", &[])?;
    legs.with_label_values(&[] as &[&str])
        .set(s.kernel_legs as i64);

    let ports = gauge(
        &reg,
        "port_pairs",
        "Relay port pairs (RTP+RTCP) by address and state",
        &["addr", "state"],
    )?;
    for pool in &p.pools {
        let a = pool.addr.to_string();
        for (st, v) in [
            ("used", pool.used_pairs),
            ("free", pool.free_pairs),
            ("quarantined", pool.quarantined_pairs),
        ] {
            ports.with_label_values(&[&a, st]).set(i64::from(v));
        }
    }
    let alloc = counter(
        &reg,
        "port_allocation_failures_total",
        "Session requests refused because no port pair was free",
        &[],
    )?;
    alloc.with_label_values(&[] as &[&str]).inc_by(p.exhausted);

    let pkts = counter(
        &reg,
        "forwarded_packets_total",
        "Packets forwarded, by who forwarded them (XDP in the kernel, or the controller)",
        &["path"],
    )?;
    pkts.with_label_values(&["kernel"])
        .inc_by(s.forwarded_kernel_packets);
    pkts.with_label_values(&["userspace"])
        .inc_by(s.forwarded_user_packets);
    let bytes = counter(
        &reg,
        "forwarded_bytes_total",
        "UDP payload bytes forwarded, by path",
        &["path"],
    )?;
    bytes
        .with_label_values(&["kernel"])
        .inc_by(s.forwarded_kernel_bytes);
    bytes
        .with_label_values(&["userspace"])
        .inc_by(s.forwarded_user_bytes);

    let verdicts = counter(&reg, "xdp_verdicts_total", "XDP verdicts", &["verdict"])?;
    let passes = counter(
        &reg,
        "xdp_pass_total",
        "Packets XDP handed to the stack, by reason",
        &["reason"],
    )?;
    let dropped = counter(
        &reg,
        "xdp_drops_total",
        "Packets XDP dropped, by reason (reflector refusals)",
        &["reason"],
    )?;
    let other = counter(
        &reg,
        "xdp_events_total",
        "Other data-plane events (e.g. leg_slot_invalid)",
        &["event"],
    )?;
    for (name, v) in &s.dataplane {
        if let Some(v_name) = name.strip_prefix("verdict_") {
            verdicts.with_label_values(&[v_name]).inc_by(*v);
        } else if let Some(reason) = name.strip_prefix("pass_") {
            passes.with_label_values(&[reason]).inc_by(*v);
        } else if let Some(reason) = name.strip_prefix("drop_") {
            dropped.with_label_values(&[reason]).inc_by(*v);
        } else if name != "fwd_bytes" {
            other.with_label_values(&[name.as_str()]).inc_by(*v);
        }
    }

    events(&reg, s)?;

    let xdp = gauge(
        &reg,
        "xdp_attached",
        "1 per interface the relay's XDP program is attached to, with its mode",
        &["iface", "mode"],
    )?;
    for i in &s.interfaces {
        xdp.with_label_values(&[i.name.as_str(), i.xdp_mode.as_str()])
            .set(1);
    }

    Ok(TextEncoder::new().encode_to_string(&reg.gather())?)
}
