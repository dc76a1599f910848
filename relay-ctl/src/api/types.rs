//! The HTTP API's JSON: requests the daemon accepts and views it returns. The CLI decodes
//! the same types, so the two cannot drift apart.
use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
};

use serde::{Deserialize, Serialize};

/// How a leg learns the address its media really comes from (docs/design.md section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LatchPolicy {
    /// The first packet latches the leg; later sources re-latch (handover), rate limited.
    #[default]
    Immediate,
    /// Only packets from the signalled IP address latch the leg (the port is learned).
    Strict,
    /// Seed 003: one shared relay port per stream; unknown sources are written alternately
    /// into channel 1 and channel 2.
    Alternate,
}

impl LatchPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LatchPolicy::Immediate => "immediate",
            LatchPolicy::Strict => "strict",
            LatchPolicy::Alternate => "alternate",
        }
    }
}

impl fmt::Display for LatchPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which front end asked for a change. A session belongs to the front end that created it:
/// ng and the SIP relay interface may change or end only their own sessions (a SIP request
/// cannot touch a call a proxy set up over ng); the HTTP API is the operator's and may touch
/// any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontEnd {
    Api,
    Ng,
    Sip,
}

impl FrontEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            FrontEnd::Api => "api",
            FrontEnd::Ng => "ng",
            FrontEnd::Sip => "sip",
        }
    }
}

/// `offered` until the second party has answered; only answered sessions time out for lack
/// of media (an unanswered call may ring for a long time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Offered,
    Answered,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Offered => "offered",
            SessionState::Answered => "answered",
        }
    }
}

/// `POST /v1/sessions`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Session id (the call id); unique among live sessions.
    pub call_id: String,
    /// Latching policy; the daemon's default when absent.
    #[serde(default)]
    pub policy: Option<LatchPolicy>,
    /// Mark the session answered now. Default: answered when every stream names both peers.
    #[serde(default)]
    pub answered: Option<bool>,
    /// One entry per media stream (audio, video, ...), at least one.
    pub streams: Vec<StreamRequest>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    /// Label, e.g. "audio" or "video" (default "audio").
    #[serde(default)]
    pub media: Option<String>,
    /// Side A (the offerer, seed 003's channel 1).
    #[serde(default)]
    pub a: SideRequest,
    /// Side B (the answerer, channel 2).
    #[serde(default)]
    pub b: SideRequest,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideRequest {
    /// The peer's RTP address as signalled (SDP c= and m=), if known.
    #[serde(default)]
    pub peer: Option<SocketAddr>,
    /// The peer's RTCP address as signalled (a=rtcp); default the RTP address's port + 1.
    #[serde(default)]
    pub rtcp_peer: Option<SocketAddr>,
    /// Which of the relay's addresses this side talks to; default the first one.
    #[serde(default)]
    pub relay_addr: Option<IpAddr>,
}

/// `POST /v1/sessions/{id}`: the answer, or new signalled addresses (re-INVITE).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    /// Index-aligned with the session's streams; may be shorter; `null` leaves a stream alone.
    #[serde(default)]
    pub streams: Vec<Option<StreamUpdate>>,
    /// Mark the session answered (default true: an update is normally the answer).
    #[serde(default)]
    pub answered: Option<bool>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamUpdate {
    #[serde(default)]
    pub a: Option<PeerUpdate>,
    #[serde(default)]
    pub b: Option<PeerUpdate>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerUpdate {
    pub peer: Option<SocketAddr>,
    #[serde(default)]
    pub rtcp_peer: Option<SocketAddr>,
}

/// One session as `GET /v1/sessions[/{id}]` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SessionView {
    pub call_id: String,
    pub policy: LatchPolicy,
    pub state: SessionState,
    /// Seconds since the session was created (wall clock, Unix epoch).
    pub created_unix: u64,
    pub age_secs: u64,
    /// Seconds since the last packet from either side (None: no media yet).
    pub idle_secs: Option<u64>,
    pub streams: Vec<StreamView>,
    /// Totals over all legs.
    pub packets_kernel: u64,
    pub bytes_kernel: u64,
    pub packets_user: u64,
    pub bytes_user: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StreamView {
    pub index: u32,
    pub media: String,
    /// Both sides use one relay port (the alternate policy).
    pub shared_port: bool,
    /// Side A then side B.
    pub legs: Vec<LegView>,
}

/// One side of a stream: what the peer on that side sends to, and what the relay learned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LegView {
    /// "a" or "b".
    pub side: String,
    /// The relay's RTP address:port for this side (RTCP is port + 1).
    pub relay: SocketAddr,
    pub signalled: Option<SocketAddr>,
    /// The RTP source this leg is latched to.
    pub latched: Option<SocketAddr>,
    pub rtcp_latched: Option<SocketAddr>,
    /// True when XDP forwards this side's RTP (installed in the kernel leg table).
    pub kernel: bool,
    /// Packets and UDP payload bytes received from this side's peer (RTP + RTCP), split by
    /// who forwarded them.
    pub packets_kernel: u64,
    pub bytes_kernel: u64,
    pub packets_user: u64,
    pub bytes_user: u64,
    /// Seconds since the last packet from this side's peer.
    pub idle_secs: Option<u64>,
    /// Times the latched source changed after the first latch (media handover).
    pub relatches: u64,
}

/// `GET /v1/stats`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatsView {
    pub instance: String,
    /// True if this daemon adopted a pinned data plane (restart) instead of loading one.
    pub adopted: bool,
    pub uptime_secs: u64,
    pub sessions_offered: u64,
    pub sessions_answered: u64,
    /// Entries in the kernel leg table.
    pub kernel_legs: u64,
    pub forwarded_kernel_packets: u64,
    pub forwarded_kernel_bytes: u64,
    pub forwarded_user_packets: u64,
    pub forwarded_user_bytes: u64,
    /// XDP attachment per interface.
    pub interfaces: Vec<InterfaceView>,
    /// Data-plane counters by name (relay_common::Counter names).
    pub dataplane: BTreeMap<String, u64>,
    /// Controller counters by name (latch events, allocation failures, drops, expiries, ...).
    pub controller: BTreeMap<String, u64>,
}

impl StatsView {
    /// A controller event's count (0 if it never happened).
    pub fn event(&self, e: crate::events::Event) -> u64 {
        self.controller.get(e.name()).copied().unwrap_or(0)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InterfaceView {
    pub name: String,
    pub ifindex: u32,
    /// "native" or "generic".
    pub xdp_mode: String,
    pub addrs: Vec<IpAddr>,
}

/// `GET /v1/ports`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PortsView {
    pub port_min: u16,
    pub port_max: u16,
    pub quarantine_secs: u64,
    /// Allocation requests refused for lack of ports, since start.
    pub exhausted: u64,
    pub pools: Vec<PoolView>,
}

/// Port pairs (RTP even, RTCP = RTP + 1) on one relay address.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PoolView {
    pub addr: IpAddr,
    pub total_pairs: u32,
    pub used_pairs: u32,
    pub free_pairs: u32,
    pub quarantined_pairs: u32,
}

/// Every error response: `{"status": 404, "error": "no session \"x\""}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
        }
    }
    pub fn bad_request(e: impl Into<String>) -> ApiError {
        ApiError::new(400, e)
    }
    pub fn not_found(e: impl Into<String>) -> ApiError {
        ApiError::new(404, e)
    }
    pub fn conflict(e: impl Into<String>) -> ApiError {
        ApiError::new(409, e)
    }
    /// Out of a resource (ports, stats slots, leg table): the caller may retry later.
    pub fn unavailable(e: impl Into<String>) -> ApiError {
        ApiError::new(503, e)
    }
    pub fn internal(e: impl Into<String>) -> ApiError {
        ApiError::new(500, e)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.error, self.status)
    }
}

impl std::error::Error for ApiError {}

/// `POST /v1/reflector/tickets` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// Source the reflected packet will carry: one of this box's allowed addresses, "ip:port".
    pub src: String,
    /// Where the payload goes (typically a peer's NAT mapping), "ip:port".
    pub dst: String,
    /// The sender's address:port as the relay sees it (its NAT mapping): the MAC binds it.
    pub from: String,
    /// Seconds the ticket is valid [default and maximum: ticket-max-ttl-secs].
    #[serde(default)]
    pub ttl: Option<u64>,
}

/// A signed ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    /// The 56-byte header to put in front of the payload, hex.
    pub header_hex: String,
    /// The same bytes, standard base64.
    pub header_base64: String,
    pub key_id: u16,
    /// Unix seconds; the reflector refuses the ticket after this second.
    pub expiry: u64,
    pub ttl: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub from: SocketAddr,
}
