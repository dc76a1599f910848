//! The controller's event counters, typed: every front end (HTTP, ng, the SIP relay
//! interface) and the session controller count through [`Event`], as XDP counts through
//! `relay_common::Counter`. One table says each event's name (its key in `/v1/stats`'
//! `controller` object) and where it shows in `/metrics` (a family and a label value), so a
//! new event is one line here and cannot be misspelt at a call site.

/// A Prometheus counter family that controller events are exported under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Latch,
    UserDrops,
    Sessions,
    Errors,
    SipRelay,
    NgRequests,
    NgErrors,
    NgEvents,
    NgUnknownFlags,
    NgUnknownKeys,
    NextHop,
}

impl Family {
    /// Metric name (without the `media_relay_` namespace), help text, label name (`None`:
    /// a family of one unlabelled counter).
    pub fn describe(self) -> (&'static str, &'static str, Option<&'static str>) {
        match self {
            Family::Latch => (
                "latch_events_total",
                "Latching: first latches, re-latches (handover), and refused sources",
                Some("event"),
            ),
            Family::UserDrops => (
                "userspace_drops_total",
                "Packets the controller did not forward, by reason",
                Some("reason"),
            ),
            Family::Sessions => ("sessions_total", "Session lifecycle events", Some("event")),
            Family::Errors => (
                "controller_errors_total",
                "Controller errors by kind",
                Some("kind"),
            ),
            Family::SipRelay => (
                "sip_relay_events_total",
                "Seed 003's SIP relay interface: messages received (rx_*), responses sent \
                 (tx_*), sessions created/deleted, retransmissions answered from cache, \
                 errors (err_*)",
                Some("event"),
            ),
            Family::NgRequests => (
                "ng_requests_total",
                "ng control protocol requests handled (retransmissions not included), by command",
                Some("command"),
            ),
            Family::NgErrors => (
                "ng_errors_total",
                "ng requests answered with result=error, by reason",
                Some("reason"),
            ),
            Family::NgEvents => (
                "ng_events_total",
                "ng listener events: bad frames, retransmissions answered from the cache, \
                 re-offers",
                Some("event"),
            ),
            Family::NgUnknownFlags => (
                "ng_unknown_flags_total",
                "Flags, replace items and option values the ng listener ignored (never fatal)",
                None,
            ),
            Family::NgUnknownKeys => (
                "ng_unknown_keys_total",
                "Request keys the ng listener ignored",
                None,
            ),
            Family::NextHop => (
                "nexthop_events_total",
                "The XDP next-hop cache's upkeep: generation bumps on netlink events, and \
                 netlink errors (each also bumps)",
                Some("event"),
            ),
        }
    }
}

macro_rules! events {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal $(=> $family:ident ( $label:literal ))?, )*) => {
        /// A controller event. `name()` is its key in `/v1/stats`; `metric()` its place in
        /// `/metrics`, if it has one of its own.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(usize)]
        pub enum Event {
            $( $(#[$doc])* $variant, )*
        }

        impl Event {
            /// Every event, in declaration order (the order of the counters array).
            pub const ALL: &'static [Event] = &[$(Event::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Event::$variant => $name,)* }
            }

            /// The family and label value under which `/metrics` exports this event.
            pub fn metric(self) -> Option<(Family, &'static str)> {
                match self { $(Event::$variant => events!(@metric $($family, $label)?),)* }
            }
        }
    };
    (@metric) => { None };
    (@metric $family:ident, $label:literal) => { Some((Family::$family, $label)) };
}

events! {
    // Sessions (the controller itself).
    SessionsCreated = "sessions_created" => Sessions("created"),
    SessionsDeleted = "sessions_deleted" => Sessions("deleted"),
    ExpiredNoMedia = "sessions_expired_no_media" => Sessions("expired_no_media"),
    ExpiredSilent = "sessions_expired_silent" => Sessions("expired_silent"),
    ExpiredUnanswered = "sessions_expired_unanswered" => Sessions("expired_unanswered"),
    /// A session request refused for lack of a resource (ports, leg slots).
    SessionAllocFailures = "session_alloc_failures" => Sessions("alloc_failed"),
    /// A session request refused as invalid or conflicting.
    SessionBadRequests = "session_bad_requests" => Sessions("bad_request"),
    /// A front end asked to change or end a session another front end created.
    SessionForeignRefused = "session_foreign_refused" => Sessions("foreign_refused"),
    // Latching.
    Latch = "latch_total" => Latch("latch"),
    Relatch = "relatch_total" => Latch("relatch"),
    LatchRejectedStrict = "latch_rejected_strict" => Latch("rejected_strict"),
    LatchRejectedHoldoff = "latch_rejected_holdoff" => Latch("rejected_holdoff"),
    // The controller's own forwarding while latching (exported as forwarded_*_total).
    UserForwardedPackets = "user_forwarded_packets",
    UserForwardedBytes = "user_forwarded_bytes",
    UserDropNoDestination = "user_drop_no_destination" => UserDrops("no_destination"),
    UserDropSendError = "user_drop_send_error" => UserDrops("send_error"),
    UserDropUnknownPort = "user_drop_unknown_port" => UserDrops("unknown_port"),
    // Errors.
    KernelErrors = "kernel_errors" => Errors("kernel_map"),
    StateWriteErrors = "state_write_errors" => Errors("state_write"),
    /// From the port allocator's own count (read at snapshot time, not counted here).
    PortBindConflicts = "port_bind_conflicts" => Errors("port_bind_conflict"),
    /// From the port allocator's own count (exported as port_allocation_failures_total).
    PortAllocExhausted = "port_alloc_exhausted",
    /// Adopted legs no session owned, removed at restart.
    OrphanLegsRemoved = "orphan_legs_removed" => Errors("orphan_leg_removed"),
    // The next-hop cache's watcher (`nexthop.rs`).
    /// The cache's generation was bumped: a route, rule, address, link or nexthop event, or a
    /// neighbour whose MAC or usability changed.
    NextHopBumps = "nexthop_generation_bumps" => NextHop("generation_bump"),
    /// The netlink socket failed or overran (events may be lost): bumped, and re-opened.
    NextHopNetlinkErrors = "nexthop_netlink_errors" => NextHop("netlink_error"),
    // ng control protocol.
    NgCmdPing = "ng_cmd_ping" => NgRequests("ping"),
    NgCmdOffer = "ng_cmd_offer" => NgRequests("offer"),
    NgCmdAnswer = "ng_cmd_answer" => NgRequests("answer"),
    NgCmdDelete = "ng_cmd_delete" => NgRequests("delete"),
    NgCmdQuery = "ng_cmd_query" => NgRequests("query"),
    NgCmdList = "ng_cmd_list" => NgRequests("list"),
    NgCmdStatistics = "ng_cmd_statistics" => NgRequests("statistics"),
    NgCmdOther = "ng_cmd_other" => NgRequests("other"),
    /// Every ng error reply (the sum of the reasons below).
    NgErrors = "ng_errors",
    NgErrorMissingKey = "ng_error_missing_key" => NgErrors("missing_key"),
    NgErrorUnknownCommand = "ng_error_unknown_command" => NgErrors("unknown_command"),
    NgErrorUnknownCall = "ng_error_unknown_call" => NgErrors("unknown_call"),
    NgErrorSdp = "ng_error_sdp" => NgErrors("sdp"),
    NgErrorUnsupported = "ng_error_unsupported" => NgErrors("unsupported"),
    NgErrorResources = "ng_error_resources" => NgErrors("resources"),
    NgErrorRejected = "ng_error_rejected" => NgErrors("rejected"),
    NgErrorInternal = "ng_error_internal" => NgErrors("internal"),
    NgBadFrames = "ng_bad_frames" => NgEvents("bad_frames"),
    NgRetransmits = "ng_retransmits" => NgEvents("retransmits"),
    NgReofferSamePorts = "ng_reoffer_same_ports" => NgEvents("reoffer_same_ports"),
    NgReofferNewMedia = "ng_reoffer_new_media" => NgEvents("reoffer_new_media"),
    NgUnknownDirection = "ng_unknown_direction" => NgEvents("unknown_direction"),
    NgTagMismatch = "ng_tag_mismatch" => NgEvents("tag_mismatch"),
    NgAdoptedCalls = "ng_adopted_calls" => NgEvents("adopted_calls"),
    NgUnknownFlags = "ng_unknown_flags" => NgUnknownFlags(""),
    NgUnknownKeys = "ng_unknown_keys" => NgUnknownKeys(""),
    // Seed 003's SIP relay interface.
    SipRxInvite = "sip_rx_invite" => SipRelay("rx_invite"),
    SipRxBye = "sip_rx_bye" => SipRelay("rx_bye"),
    SipRxAck = "sip_rx_ack" => SipRelay("rx_ack"),
    SipRxOptions = "sip_rx_options" => SipRelay("rx_options"),
    SipRxOk = "sip_rx_ok" => SipRelay("rx_ok"),
    SipRxOtherResponse = "sip_rx_other_response" => SipRelay("rx_other_response"),
    SipTx2xx = "sip_tx_2xx" => SipRelay("tx_2xx"),
    SipTx3xx = "sip_tx_3xx" => SipRelay("tx_3xx"),
    SipTx4xx = "sip_tx_4xx" => SipRelay("tx_4xx"),
    SipTx5xx = "sip_tx_5xx" => SipRelay("tx_5xx"),
    SipSessionsCreated = "sip_sessions_created" => SipRelay("sessions_created"),
    SipSessionsDeleted = "sip_sessions_deleted" => SipRelay("sessions_deleted"),
    SipReinvites = "sip_reinvites" => SipRelay("reinvites"),
    SipRetransmissions = "sip_retransmissions" => SipRelay("retransmissions"),
    SipErrMethod = "sip_err_method" => SipRelay("err_method"),
    SipErrUnparsable = "sip_err_unparsable" => SipRelay("err_unparsable"),
    SipErrMissingHeader = "sip_err_missing_header" => SipRelay("err_missing_header"),
    SipErrBadCseq = "sip_err_bad_cseq" => SipRelay("err_bad_cseq"),
    SipErrNoSdp = "sip_err_no_sdp" => SipRelay("err_no_sdp"),
    SipErrBadSdp = "sip_err_bad_sdp" => SipRelay("err_bad_sdp"),
    SipErrNoMedia = "sip_err_no_media" => SipRelay("err_no_media"),
    SipErrNoResource = "sip_err_no_resource" => SipRelay("err_no_resource"),
    SipErrRejected = "sip_err_rejected" => SipRelay("err_rejected"),
    SipErrUnknownSession = "sip_err_unknown_session" => SipRelay("err_unknown_session"),
    /// A request from a source outside `--sip-allow`, dropped unread.
    SipErrNotAllowed = "sip_err_not_allowed" => SipRelay("err_not_allowed"),
    /// A request over its source's `--sip-rate`, dropped unread.
    SipErrRateLimited = "sip_err_rate_limited" => SipRelay("err_rate_limited"),
}

/// Event counts, one slot per [`Event`]: no allocation or string compare per count.
#[derive(Clone, Debug)]
pub struct Counts([u64; Event::ALL.len()]);

impl Default for Counts {
    fn default() -> Counts {
        Counts([0; Event::ALL.len()])
    }
}

impl Counts {
    pub fn add(&mut self, e: Event, n: u64) {
        self.0[e as usize] = self.0[e as usize].saturating_add(n);
    }
    pub fn set(&mut self, e: Event, n: u64) {
        self.0[e as usize] = n;
    }
    pub fn get(&self, e: Event) -> u64 {
        self.0[e as usize]
    }
    /// The events that happened, by name (the `/v1/stats` `controller` object).
    pub fn nonzero(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        Event::ALL
            .iter()
            .map(|e| (*e, self.get(*e)))
            .filter(|(_, v)| *v != 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_and_labels_are_unique_and_indexes_match() {
        let mut names = HashSet::new();
        let mut labels = HashSet::new();
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "{e:?}");
            assert!(names.insert(e.name()), "duplicate name {}", e.name());
            if let Some(m) = e.metric() {
                assert!(labels.insert(m), "duplicate metric {m:?}");
            }
        }
    }

    #[test]
    fn families_with_a_label_name_their_values() {
        for e in Event::ALL {
            if let Some((f, v)) = e.metric() {
                let (_, _, label) = f.describe();
                assert_eq!(label.is_some(), !v.is_empty(), "{e:?}");
            }
        }
    }

    #[test]
    fn counts_add_and_list_only_what_happened() {
        let mut c = Counts::default();
        c.add(Event::NgCmdOffer, 2);
        c.add(Event::NgCmdOffer, 1);
        c.set(Event::PortBindConflicts, 4);
        let seen: Vec<_> = c.nonzero().map(|(e, v)| (e.name(), v)).collect();
        assert_eq!(seen, [("port_bind_conflicts", 4), ("ng_cmd_offer", 3)]);
    }
}
