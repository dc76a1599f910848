//! The daemon's HTTP API (default 127.0.0.1:9901): JSON for the CLI and scripts,
//! Prometheus text for monitoring.
pub mod router;
pub mod server;
pub mod types;

pub use types::*;

use crate::{error::Error, events::Event};

/// What the front ends (HTTP, ng, the SIP relay interface) need from the daemon. The session
/// controller implements it; each front end translates its protocol to these calls, and
/// results and [`Error`]s back (HTTP: `router.rs`).
pub trait Control: Send + Sync + 'static {
    fn sessions(&self) -> Vec<SessionView>;
    fn session(&self, call_id: &str) -> Result<SessionView, Error>;
    /// Create a session owned by `by`.
    fn create_session(&self, req: CreateSession, by: FrontEnd) -> Result<SessionView, Error>;
    /// Change a session; refused as not found unless `by` owns it (or is the HTTP API).
    fn update_session(
        &self,
        call_id: &str,
        req: UpdateSession,
        by: FrontEnd,
    ) -> Result<SessionView, Error>;
    /// Remove a session (kernel legs first, then sockets; ports go to quarantine).
    /// Ownership as for `update_session`.
    fn delete_session(&self, call_id: &str, by: FrontEnd) -> Result<SessionView, Error>;
    fn stats(&self) -> Result<StatsView, Error>;
    fn ports(&self) -> PortsView;
    /// Prometheus text exposition (format 0.0.4).
    fn metrics(&self) -> Result<String, Error>;
    /// Count an event of a signalling front end (SIP relay interface, ...) among the
    /// controller's counters, so it shows in /v1/stats and /metrics.
    fn count(&self, event: Event);
    /// `POST /v1/reflector/tickets`: `req` is the decoded body or why it did not decode, so
    /// the refusal is counted either way. Daemons without a reflector say so.
    fn issue_ticket(&self, req: Result<TicketRequest, Error>) -> Result<TicketView, Error> {
        let _ = req;
        Err(Error::not_found("this daemon has no reflector"))
    }
    /// `GET /v1/turn/allocations`. Daemons without a TURN server say so.
    fn turn_allocations(&self) -> Result<crate::turn::view::TurnView, Error> {
        Err(Error::not_found(
            "this daemon has no TURN server (--turn-port)",
        ))
    }
}
