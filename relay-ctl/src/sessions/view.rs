//! Turning the session table and the kernel's counters into the API's views.
use std::collections::BTreeMap;

use relay_common::Counter;

use super::{
    Controller, Inner, kernel,
    model::{SIDE_NAMES, Session, Stream},
};
use crate::{
    api::{LegView, PoolView, PortsView, SessionState, SessionView, StatsView, StreamView},
    dataplane::DataPlane,
    error::Error,
    events::Event,
    ports::PortAllocator,
};

const NS: u64 = 1_000_000_000;

fn idle(now: u64, last: u64) -> Option<u64> {
    (last > 0).then(|| now.saturating_sub(last) / NS)
}

/// Last packet from each side (RTP or RTCP, kernel or controller), CLOCK_MONOTONIC ns.
pub fn last_seen(dp: &DataPlane, s: &Session) -> [u64; 2] {
    let mut seen = [0u64; 2];
    for stream in &s.streams {
        for comp in &stream.comps {
            for (x, seen) in seen.iter_mut().enumerate() {
                let k = kernel::side_stats(dp, comp, x);
                *seen = (*seen).max(k.last_seen_ns).max(comp.sides[x].user_last_ns);
            }
        }
    }
    seen
}

pub fn session_view(dp: &DataPlane, s: &Session, now: u64) -> SessionView {
    let mut streams = vec![];
    let (mut pk, mut bk, mut pu, mut bu) = (0, 0, 0, 0);
    for (i, stream) in s.streams.iter().enumerate() {
        let mut legs = vec![];
        for (x, side_name) in SIDE_NAMES.iter().enumerate() {
            let [rtp, rtcp] = &stream.comps;
            let (kr, kc) = (
                kernel::side_stats(dp, rtp, x),
                kernel::side_stats(dp, rtcp, x),
            );
            let (sr, sc) = (&rtp.sides[x], &rtcp.sides[x]);
            let last = kr
                .last_seen_ns
                .max(kc.last_seen_ns)
                .max(sr.user_last_ns)
                .max(sc.user_last_ns);
            let leg = LegView {
                side: (*side_name).to_owned(),
                relay: Stream::relay_of(&stream.pairs, x, 0),
                signalled: rtp.latch.channels[x].signalled,
                latched: rtp.latch.channels[x].latched,
                rtcp_latched: rtcp.latch.channels[x].latched,
                kernel: kernel::in_kernel(rtp, x),
                packets_kernel: kr.packets + kc.packets,
                bytes_kernel: kr.bytes + kc.bytes,
                packets_user: sr.user_packets + sc.user_packets,
                bytes_user: sr.user_bytes + sc.user_bytes,
                idle_secs: idle(now, last),
                relatches: rtp.latch.channels[x].relatches + rtcp.latch.channels[x].relatches,
            };
            pk += leg.packets_kernel;
            bk += leg.bytes_kernel;
            pu += leg.packets_user;
            bu += leg.bytes_user;
            legs.push(leg);
        }
        streams.push(StreamView {
            index: i as u32,
            media: stream.media.clone(),
            shared_port: stream.shared,
            legs,
        });
    }
    let seen = last_seen(dp, s);
    SessionView {
        call_id: s.call_id.clone(),
        policy: s.policy,
        state: s.state,
        created_unix: s.created_unix,
        age_secs: now.saturating_sub(s.created_ns) / NS,
        idle_secs: idle(now, seen[0].max(seen[1])),
        streams,
        packets_kernel: pk,
        bytes_kernel: bk,
        packets_user: pu,
        bytes_user: bu,
    }
}

pub fn ports_view(p: &PortAllocator) -> PortsView {
    let r = p.range();
    PortsView {
        port_min: r.min,
        port_max: r.max,
        quarantine_secs: p.quarantine().as_secs(),
        exhausted: p.exhausted(),
        pools: p
            .stats(std::time::Instant::now())
            .into_iter()
            .map(|s| PoolView {
                addr: s.addr,
                total_pairs: s.total_pairs,
                used_pairs: s.used_pairs,
                free_pairs: s.free_pairs,
                quarantined_pairs: s.quarantined_pairs,
            })
            .collect(),
    }
}

pub(super) fn stats_view(ctl: &Controller, inner: &Inner) -> Result<StatsView, Error> {
    let dp_counters = inner
        .dp
        .counters()
        .map_err(|e| Error::internal(format!("reading data-plane counters: {e:#}")))?;
    let get = |c: Counter| {
        dp_counters
            .iter()
            .find(|(k, _)| *k == c)
            .map_or(0, |(_, v)| *v)
    };
    // What the controller installed, not a walk of the kernel map (a million syscalls at
    // scale); restore() makes the two agree at adoption.
    let kernel_legs = inner
        .sessions
        .values()
        .flat_map(|s| &s.streams)
        .flat_map(|st| &st.comps)
        .map(|c| c.installed.len() as u64)
        .sum();
    // The allocator keeps its own two counts; the rest are the controller's events.
    let mut counts = inner.counters.clone();
    counts.set(Event::PortAllocExhausted, inner.ports.exhausted());
    counts.set(Event::PortBindConflicts, inner.ports.bind_conflicts());
    let controller: BTreeMap<String, u64> = counts
        .nonzero()
        .map(|(e, v)| (e.name().to_owned(), v))
        .collect();
    let state_count =
        |st: SessionState| inner.sessions.values().filter(|s| s.state == st).count() as u64;
    Ok(StatsView {
        instance: ctl.cfg.instance.clone(),
        adopted: ctl.cfg.adopted,
        uptime_secs: ctl.started.elapsed().as_secs(),
        sessions_offered: state_count(SessionState::Offered),
        sessions_answered: state_count(SessionState::Answered),
        kernel_legs,
        forwarded_kernel_packets: get(Counter::VerdictTx) + get(Counter::VerdictRedirect),
        forwarded_kernel_bytes: get(Counter::FwdBytes),
        forwarded_user_packets: counts.get(Event::UserForwardedPackets),
        forwarded_user_bytes: counts.get(Event::UserForwardedBytes),
        interfaces: ctl.cfg.interfaces.clone(),
        dataplane: dp_counters
            .iter()
            .map(|(c, v)| (c.name().to_owned(), *v))
            .collect(),
        controller,
    })
}
