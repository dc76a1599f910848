//! `/metrics`: Prometheus text built from the same snapshot as `/v1/stats` and `/v1/ports`.
//! A fresh registry per scrape: the values live in the kernel maps and the controller,
//! so there is nothing to keep in between, and the text always matches the JSON.
use anyhow::Result;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::api::{PortsView, StatsView};

const NS: &str = "media_relay";

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help).namespace(NS), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help).namespace(NS), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

fn ctl(s: &StatsView, name: &str) -> u64 {
    s.controller.get(name).copied().unwrap_or(0)
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

    let latch = counter(
        &reg,
        "latch_events_total",
        "Latching: first latches, re-latches (handover), and refused sources",
        &["event"],
    )?;
    for (ev, key) in [
        ("latch", "latch_total"),
        ("relatch", "relatch_total"),
        ("rejected_strict", "latch_rejected_strict"),
        ("rejected_holdoff", "latch_rejected_holdoff"),
    ] {
        latch.with_label_values(&[ev]).inc_by(ctl(s, key));
    }
    let drops = counter(
        &reg,
        "userspace_drops_total",
        "Packets the controller did not forward, by reason",
        &["reason"],
    )?;
    for (reason, key) in [
        ("no_destination", "user_drop_no_destination"),
        ("send_error", "user_drop_send_error"),
        ("unknown_port", "user_drop_unknown_port"),
    ] {
        drops.with_label_values(&[reason]).inc_by(ctl(s, key));
    }
    let sess = counter(
        &reg,
        "sessions_total",
        "Session lifecycle events",
        &["event"],
    )?;
    for (ev, key) in [
        ("created", "sessions_created"),
        ("deleted", "sessions_deleted"),
        ("expired_no_media", "sessions_expired_no_media"),
        ("expired_silent", "sessions_expired_silent"),
        ("expired_unanswered", "sessions_expired_unanswered"),
        ("alloc_failed", "session_alloc_failures"),
    ] {
        sess.with_label_values(&[ev]).inc_by(ctl(s, key));
    }
    let errors = counter(
        &reg,
        "controller_errors_total",
        "Controller errors by kind",
        &["kind"],
    )?;
    for (kind, key) in [
        ("kernel_map", "kernel_errors"),
        ("state_write", "state_write_errors"),
        ("port_bind_conflict", "port_bind_conflicts"),
    ] {
        errors.with_label_values(&[kind]).inc_by(ctl(s, key));
    }

    let sip = counter(
        &reg,
        "sip_relay_events_total",
        "Seed 003's SIP relay interface: messages received (rx_*), responses sent (tx_*), \
         sessions created/deleted, retransmissions answered from cache, errors (err_*)",
        &["event"],
    )?;
    for (name, v) in &s.controller {
        if let Some(ev) = name.strip_prefix("sip_") {
            sip.with_label_values(&[ev]).inc_by(*v);
        }
    }

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

    crate::ng::metrics::register(&reg, s)?;
    Ok(TextEncoder::new().encode_to_string(&reg.gather())?)
}
