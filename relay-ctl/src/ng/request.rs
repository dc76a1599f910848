//! Reading an ng request dictionary: the keys and flags Kamailio's and OpenSIPS' rtpengine
//! modules (and rtpengine-utils' ng client) send. Keys and flags are compared normalized
//! (lower case, ' ' and '_' as '-'), as rtpengine itself accepts "trust address",
//! "trust-address" and "trust_address" alike.
use std::net::IpAddr;

use super::bencode::Value;

/// Flags we act on or whose meaning is already our behaviour; anything else is ignored and
/// counted (`ng_unknown_flags`), never an error.
const KNOWN_FLAGS: &[&str] = &[
    // SDP addresses are used as signalled: our default.
    "trust-address",
    // Use the SIP message's source address (`received-from`) instead of the SDP's.
    "sip-source-address",
    // Latching on the first packets, re-latching on a new source: our default.
    "symmetric",
    "port-latching",
    "media-handover",
    // Only accept media from the signalled address: the strict latching policy.
    "strict-source",
    // No a=rtcp in the rewritten SDP.
    "no-rtcp-attribute",
    // Asymmetric peers still get latched; accepted so Kamailio's NAT presets work.
    "asymmetric",
    // Kamailio adds these from its own options; they change nothing for a relay without
    // transcoding or recording.
    "loop-protect",
    "reset",
    "force",
];

/// Keys every command may carry that we read or knowingly ignore (the rest are counted).
const KNOWN_KEYS: &[&str] = &[
    "command",
    "call-id",
    "from-tag",
    "to-tag",
    "via-branch",
    "sdp",
    "flags",
    "replace",
    "direction",
    "ice",
    "received-from",
    "transport-protocol",
    "limit",
    "supports",
    "delete-delay",
    "address-family",
    "rtcp-mux",
    "sdes",
    "dtls",
    "record-call",
    "metadata",
    "label",
];

pub fn normalize(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| match c {
            ' ' | '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// What an offer or answer asks for, beyond the call's identity and SDP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub sip_source_address: bool,
    pub strict_source: bool,
    pub no_rtcp_attribute: bool,
    pub replace_origin: bool,
    pub replace_session_connection: bool,
    pub ice_remove: bool,
    /// The two `direction` entries (interface names or addresses), first for the offerer.
    pub direction: Option<[String; 2]>,
    /// `received-from: [family, address]`: where the SIP message came from.
    pub received_from: Option<IpAddr>,
    pub transport_protocol: Option<String>,
    /// Normalized flags, replace items and option values we did not recognise.
    pub unknown_flags: Vec<String>,
    /// Dictionary keys we did not recognise.
    pub unknown_keys: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        // Some clients send a single space-separated string.
        Some(Value::Bytes(_)) => v
            .and_then(Value::as_str)
            .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// Look a key up by its normalized name ("transport protocol" == "transport-protocol").
pub fn get<'a>(req: &'a Value, key: &str) -> Option<&'a Value> {
    match req {
        Value::Dict(items) => items
            .iter()
            .find(|(k, _)| std::str::from_utf8(k).is_ok_and(|k| normalize(k) == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

pub fn get_str<'a>(req: &'a Value, key: &str) -> Option<&'a str> {
    get(req, key).and_then(Value::as_str)
}

impl Options {
    pub fn parse(req: &Value) -> Options {
        let mut o = Options::default();
        if let Value::Dict(items) = req {
            for (k, _) in items {
                let k = normalize(&String::from_utf8_lossy(k));
                if !KNOWN_KEYS.contains(&k.as_str()) {
                    o.unknown_keys.push(k);
                }
            }
        }
        for f in strings(get(req, "flags")) {
            let f = normalize(&f);
            match f.as_str() {
                "sip-source-address" => o.sip_source_address = true,
                "strict-source" => o.strict_source = true,
                "no-rtcp-attribute" => o.no_rtcp_attribute = true,
                // Old clients put these in flags rather than in `replace`.
                "replace-origin" => o.replace_origin = true,
                "replace-session-connection" => o.replace_session_connection = true,
                f if KNOWN_FLAGS.contains(&f) => {}
                _ => o.unknown_flags.push(f),
            }
        }
        for r in strings(get(req, "replace")) {
            match normalize(&r).as_str() {
                "origin" => o.replace_origin = true,
                "session-connection" => o.replace_session_connection = true,
                other => o.unknown_flags.push(format!("replace-{other}")),
            }
        }
        if let Some(ice) = get_str(req, "ice") {
            match normalize(ice).as_str() {
                "remove" => o.ice_remove = true,
                // We take no part in ICE; without "remove" the candidates pass unchanged.
                "default" => {}
                other => o.unknown_flags.push(format!("ice-{other}")),
            }
        }
        let dir = strings(get(req, "direction"));
        if let [a, b] = dir.as_slice() {
            o.direction = Some([a.clone(), b.clone()]);
        } else if !dir.is_empty() {
            o.unknown_flags.push("direction".to_owned());
        }
        let from = strings(get(req, "received-from"));
        if let [_family, addr] = from.as_slice() {
            o.received_from = addr.parse().ok();
        }
        o.transport_protocol = get_str(req, "transport-protocol").map(str::to_owned);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ng::bencode::{DictBuilder, Value};

    fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(Value::str).collect())
    }

    #[test]
    fn kamailio_style_offer() {
        let req = DictBuilder::new()
            .str("command", "offer")
            .put(
                "flags",
                list(&["trust-address", "SIP-source-address", "no such flag"]),
            )
            .put("replace", list(&["origin", "session-connection"]))
            .str("ICE", "remove")
            .put("direction", list(&["pub", "priv"]))
            .put("received-from", list(&["IP4", "198.18.1.2"]))
            .str("transport protocol", "RTP/AVP")
            .str("x-custom", "1")
            .build();
        let o = Options::parse(&req);
        assert!(o.sip_source_address && o.replace_origin && o.replace_session_connection);
        assert!(o.ice_remove);
        assert_eq!(o.direction, Some(["pub".to_owned(), "priv".to_owned()]));
        assert_eq!(o.received_from, Some("198.18.1.2".parse().unwrap()));
        assert_eq!(o.transport_protocol.as_deref(), Some("RTP/AVP"));
        assert_eq!(o.unknown_flags, ["no-such-flag"]);
        assert_eq!(o.unknown_keys, ["x-custom"]);
    }

    #[test]
    fn odd_shapes_are_ignored_not_fatal() {
        let req = DictBuilder::new()
            .int("flags", 3)
            .str("replace", "origin zero-address")
            .str("ICE", "force")
            .put("direction", list(&["one"]))
            .put("received-from", list(&["IP4", "not-an-ip"]))
            .build();
        let o = Options::parse(&req);
        assert!(o.replace_origin);
        assert_eq!(
            o.unknown_flags,
            ["replace-zero-address", "ice-force", "direction"]
        );
        assert_eq!(o.received_from, None);
        assert_eq!(Options::parse(&Value::Int(1)), Options::default());
    }
}
