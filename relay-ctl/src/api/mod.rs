//! The daemon's HTTP API (default 127.0.0.1:9901): JSON for the CLI and scripts,
//! Prometheus text for monitoring.
pub mod router;
pub mod types;

pub use types::*;

/// What the HTTP layer needs from the daemon. The session controller implements it; the
/// router only translates HTTP to these calls and results to JSON.
pub trait Control: Send + Sync + 'static {
    fn sessions(&self) -> Vec<SessionView>;
    fn session(&self, call_id: &str) -> Result<SessionView, ApiError>;
    fn create_session(&self, req: CreateSession) -> Result<SessionView, ApiError>;
    fn update_session(&self, call_id: &str, req: UpdateSession) -> Result<SessionView, ApiError>;
    /// Remove a session (kernel legs first, then sockets; ports go to quarantine).
    fn delete_session(&self, call_id: &str) -> Result<SessionView, ApiError>;
    fn stats(&self) -> Result<StatsView, ApiError>;
    fn ports(&self) -> PortsView;
    /// Prometheus text exposition (format 0.0.4).
    fn metrics(&self) -> Result<String, ApiError>;
    /// Count an event of a signalling front end (SIP relay interface, ...) among the
    /// controller's counters, so it shows in /v1/stats and /metrics.
    fn count(&self, event: &'static str);
    /// `POST /v1/reflector/tickets`: `req` is the decoded body or why it did not decode, so
    /// the refusal is counted either way. Daemons without a reflector say so.
    fn issue_ticket(
        &self,
        req: Result<crate::reflector::TicketRequest, ApiError>,
    ) -> Result<crate::reflector::TicketView, ApiError> {
        let _ = req;
        Err(ApiError::not_found("this daemon has no reflector"))
    }
}
