//! Replies in rtpengine's shapes (docs/ng.md lists what we fill and what we cannot).
use std::net::SocketAddr;

use super::bencode::{DictBuilder, Value, int};
use crate::{
    api::{LegView, SessionView, StatsView},
    clock::unix_now,
    events::Event,
};

pub fn error(reason: &str) -> Value {
    DictBuilder::new()
        .str("result", "error")
        .str("error-reason", reason)
        .build()
}

/// What the ng layer knows about a call beyond the controller's view.
pub struct CallMeta<'a> {
    pub tags: &'a [String; 2],
    pub created: u64,
    pub last_signal: u64,
    pub media: &'a [(String, String)],
    pub streams: &'a [Option<usize>],
}

fn endpoint(a: SocketAddr) -> Value {
    DictBuilder::new()
        .str("family", if a.is_ipv4() { "IPv4" } else { "IPv6" })
        .str("address", a.ip().to_string())
        .put("port", int(u64::from(a.port())))
        .build()
}

fn stats(packets: u64, bytes: u64) -> Value {
    DictBuilder::new()
        .put("packets", int(packets))
        .put("bytes", int(bytes))
        .int("errors", 0)
        .build()
}

/// One leg as an rtpengine "stream": the RTP component (our counters include RTCP).
fn stream(leg: &LegView, now: u64) -> Value {
    let mut d = DictBuilder::new().put("local port", int(u64::from(leg.relay.port())));
    d = d.put("local address", Value::str(leg.relay.ip().to_string()));
    if let Some(e) = leg.latched.or(leg.signalled) {
        d = d.put("endpoint", endpoint(e));
    }
    if let Some(e) = leg.signalled {
        d = d.put("advertised endpoint", endpoint(e));
    }
    let mut flags = vec![Value::str("RTP")];
    if leg.latched.is_some() {
        flags.push(Value::str("filled"));
        flags.push(Value::str("confirmed"));
    }
    if leg.kernel {
        flags.push(Value::str("kernelized"));
    }
    d = d.put("flags", Value::List(flags));
    if let Some(idle) = leg.idle_secs {
        d = d.put("last packet", int(now.saturating_sub(idle)));
    }
    d.put(
        "stats",
        stats(
            leg.packets_kernel + leg.packets_user,
            leg.bytes_kernel + leg.bytes_user,
        ),
    )
    // Ours: who forwarded (XDP in the kernel, or the controller while latching).
    .put("packets kernel", int(leg.packets_kernel))
    .put("packets user", int(leg.packets_user))
    .build()
}

/// `query` and `delete`: the call with a tag (monologue) per side, its media and totals.
pub fn call_info(v: &SessionView, meta: Option<CallMeta<'_>>) -> Value {
    let now = unix_now();
    let default_tags = [String::from("a"), String::from("b")];
    let tags = meta.as_ref().map_or(&default_tags, |m| m.tags);
    let mut tag_dict: Vec<(Vec<u8>, Value)> = vec![];
    for side in 0..2 {
        let mut medias = vec![];
        for (si, s) in v.streams.iter().enumerate() {
            let Some(leg) = s.legs.get(side) else {
                continue;
            };
            // The m= index (1-based) and protocol, if the ng layer knows them.
            let (index, proto) = meta
                .as_ref()
                .and_then(|m| {
                    let mi = m.streams.iter().position(|x| *x == Some(si))?;
                    Some((mi + 1, m.media.get(mi)?.1.clone()))
                })
                .unwrap_or((si + 1, "RTP/AVP".to_owned()));
            medias.push(
                DictBuilder::new()
                    .put("index", int(index as u64))
                    .str("type", &s.media)
                    .str("protocol", proto)
                    .put("streams", Value::List(vec![stream(leg, now)]))
                    .put("flags", Value::List(vec![Value::str("initialized")]))
                    .build(),
            );
        }
        let tag = &tags[side];
        let other = &tags[1 - side];
        tag_dict.push((
            tag.as_bytes().to_vec(),
            DictBuilder::new()
                .str("tag", tag)
                .put(
                    "created",
                    int(meta.as_ref().map_or(v.created_unix, |m| m.created)),
                )
                .str("in dialogue with", other)
                .put("medias", Value::List(medias))
                .build(),
        ));
    }
    let packets: u64 = v.packets_kernel + v.packets_user;
    let bytes: u64 = v.bytes_kernel + v.bytes_user;
    DictBuilder::new()
        .str("result", "ok")
        .put("created", int(v.created_unix))
        .put(
            "last signal",
            int(meta.as_ref().map_or(v.created_unix, |m| m.last_signal)),
        )
        .put("tags", Value::Dict(tag_dict))
        .put(
            "totals",
            DictBuilder::new()
                .put("RTP", stats(packets, bytes))
                .put("RTCP", stats(0, 0))
                .build(),
        )
        // Ours: the controller's view of the call's state and who forwarded its packets.
        .str("state", v.state.as_str())
        .put("packets kernel", int(v.packets_kernel))
        .put("packets user", int(v.packets_user))
        .build()
}

/// `statistics`: rtpengine's current/total/control sections from our counters.
pub fn statistics(s: &StatsView) -> Value {
    let own = s.sessions_offered + s.sessions_answered;
    let current = DictBuilder::new()
        .put("sessionsown", int(own))
        .int("sessionsforeign", 0)
        .put("sessionstotal", int(own))
        .int("transcodedmedia", 0)
        .build();
    let timeouts = s.event(Event::ExpiredNoMedia)
        + s.event(Event::ExpiredSilent)
        + s.event(Event::ExpiredUnanswered);
    let total = DictBuilder::new()
        .put("uptime", int(s.uptime_secs))
        .put("managedsessions", int(s.event(Event::SessionsCreated)))
        .put(
            "rejectedsessions",
            int(s.event(Event::SessionAllocFailures)),
        )
        .put("timeoutsessions", int(timeouts))
        .put("silenttimeoutsessions", int(s.event(Event::ExpiredSilent)))
        .put(
            "offertimeoutsessions",
            int(s.event(Event::ExpiredUnanswered)),
        )
        .put(
            "regularterminatedsessions",
            int(s.event(Event::SessionsDeleted)),
        )
        .put(
            "relayedpackets",
            int(s.forwarded_kernel_packets + s.forwarded_user_packets),
        )
        .put(
            "relayedbytes",
            int(s.forwarded_kernel_bytes + s.forwarded_user_bytes),
        )
        .build();
    let control = DictBuilder::new()
        .put("totalpingcount", int(s.event(Event::NgCmdPing)))
        .put("totaloffercount", int(s.event(Event::NgCmdOffer)))
        .put("totalanswercount", int(s.event(Event::NgCmdAnswer)))
        .put("totaldeletecount", int(s.event(Event::NgCmdDelete)))
        .put("totalquerycount", int(s.event(Event::NgCmdQuery)))
        .put("totallistcount", int(s.event(Event::NgCmdList)))
        .put("totalstatisticscount", int(s.event(Event::NgCmdStatistics)))
        .put("totalerrorcount", int(s.event(Event::NgErrors)))
        .build();
    DictBuilder::new()
        .str("result", "ok")
        .put(
            "statistics",
            DictBuilder::new()
                .put("currentstatistics", current)
                .put("totalstatistics", total)
                .put("controlstatistics", control)
                .build(),
        )
        .build()
}
