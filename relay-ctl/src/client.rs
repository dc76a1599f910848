//! Blocking client of the daemon's HTTP API (ureq, no TLS: the API listens on loopback or an
//! admin network). The operator CLI prints what it returns; the tests, the demo and the
//! benchmark drive the daemon through it. Failures are [`ClientError`]s: the CLI turns them into
//! its exit codes and one stderr line.
use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use serde::{Serialize, de::DeserializeOwned};

use crate::api::{ApiError, CreateSession, PortsView, SessionView, StatsView, UpdateSession};

/// Why a request to the daemon's API failed (the CLI maps each to an exit code and prints
/// it, `cli.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// Nothing answered at the address: connection refused, unreachable, connect timeout.
    Unreachable { addr: SocketAddr, reason: String },
    /// The daemon answered with an error.
    Api(ApiError),
    /// Anything else: an unparsable answer, a timeout mid-request, a bad argument.
    Other(String),
}

/// Blocking client of the daemon's HTTP API.
pub struct ApiClient {
    addr: SocketAddr,
    agent: ureq::Agent,
}

/// Session lists can be large; ureq's default 10 MB read limit is too low for a busy relay.
const MAX_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;

impl ApiClient {
    pub fn new(addr: SocketAddr) -> Self {
        let agent = ureq::Agent::config_builder()
            // Error statuses carry an ApiError body; decode it instead of losing it.
            .http_status_as_error(false)
            // The API is local or on an admin network: never go through $HTTP_PROXY.
            .proxy(None)
            .timeout_connect(Some(Duration::from_secs(3)))
            // A wedged daemon must not hang scripts forever.
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        ApiClient { addr, agent }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET /healthz`: Ok once the daemon serves its API.
    pub fn health(&self) -> Result<(), ClientError> {
        self.get::<serde_json::Value>("/healthz").map(|_| ())
    }

    /// `GET /metrics`: the Prometheus text.
    pub fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url("/metrics");
        let mut resp = self.agent.get(&url).call().map_err(|e| self.error(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| self.error(e))?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(api_error(status, text.as_bytes()))
        }
    }

    pub fn get_sessions(&self) -> Result<Vec<SessionView>, ClientError> {
        self.get("/v1/sessions")
    }

    pub fn get_session(&self, call_id: &str) -> Result<SessionView, ClientError> {
        self.get(&session_path(call_id)?)
    }

    pub fn get_stats(&self) -> Result<StatsView, ClientError> {
        self.get("/v1/stats")
    }

    pub fn get_ports(&self) -> Result<PortsView, ClientError> {
        self.get("/v1/ports")
    }

    /// Remove a session; returns it as it was just before removal.
    pub fn delete_session(&self, call_id: &str) -> Result<SessionView, ClientError> {
        self.delete(&session_path(call_id)?)
    }

    pub fn create_session(&self, req: CreateSession) -> Result<SessionView, ClientError> {
        self.post("/v1/sessions", &req)
    }

    pub fn update_session(
        &self,
        call_id: &str,
        req: UpdateSession,
    ) -> Result<SessionView, ClientError> {
        self.post(&session_path(call_id)?, &req)
    }

    /// `GET path` decoded as `T` (`serde_json::Value` for the raw JSON).
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self.agent.get(self.url(path)).call();
        self.decode(r)
    }

    /// `DELETE path` decoded as `T`.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self.agent.delete(self.url(path)).call();
        self.decode(r)
    }

    /// `POST path` with a JSON body, decoded as `T`.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let r = self.agent.post(self.url(path)).send_json(body);
        self.decode(r)
    }

    fn url(&self, path: &str) -> String {
        // SocketAddr's Display brackets IPv6 addresses, as URLs need.
        format!("http://{}{path}", self.addr)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut resp = r.map_err(|e| self.error(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| self.error(e))?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| {
            ClientError::Other(format!(
                "unexpected answer from the daemon's API at {}: {e}",
                self.addr
            ))
        })
    }

    fn error(&self, e: ureq::Error) -> ClientError {
        use std::io::ErrorKind::*;
        let unreachable = match &e {
            ureq::Error::Io(io) => matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            ),
            ureq::Error::ConnectionFailed => true,
            ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect),
            _ => false,
        };
        if unreachable {
            ClientError::Unreachable {
                addr: self.addr,
                reason: e.to_string(),
            }
        } else {
            ClientError::Other(format!(
                "request to the daemon's API at {} failed: {e}",
                self.addr
            ))
        }
    }
}

/// An error answer: the ApiError body if it is one, else the status and whatever text came.
fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => ClientError::Api(e),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            ClientError::Api(ApiError::new(
                status,
                if text.is_empty() {
                    "no error message".to_owned()
                } else {
                    text.chars().take(200).collect()
                },
            ))
        }
    }
}

/// `/v1/sessions/{id}` with the id percent-encoded (SIP call ids may hold '/', '%', spaces).
pub(crate) fn session_path(call_id: &str) -> Result<String, ClientError> {
    if call_id.is_empty() {
        return Err(ClientError::Other("empty session id".into()));
    }
    let mut p = String::from("/v1/sessions/");
    for b in call_id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            p.push(b as char);
        } else {
            let _ = write!(p, "%{b:02X}");
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::EXIT_UNREACHABLE;

    #[test]
    fn session_paths_are_encoded() {
        assert_eq!(
            session_path("abc-1.x_y~@host").expect("path"),
            "/v1/sessions/abc-1.x_y~@host"
        );
        assert_eq!(
            session_path("a/b c%").expect("path"),
            "/v1/sessions/a%2Fb%20c%25"
        );
        assert_eq!(session_path("é").expect("path"), "/v1/sessions/%C3%A9");
        assert!(session_path("").is_err());
    }

    #[test]
    fn error_bodies() {
        // A proxy or a foreign server answering with text still gives a usable error.
        assert_eq!(
            api_error(502, b"Bad Gateway\n"),
            ClientError::Api(ApiError::new(502, "Bad Gateway"))
        );
    }

    #[test]
    fn unreachable_when_nothing_listens() {
        // Bind then drop: the port is free and nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind");
        let err = ApiClient::new(addr)
            .get_sessions()
            .expect_err("nothing listens");
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
        assert_eq!(err.exit_code(), EXIT_UNREACHABLE);
    }
}
