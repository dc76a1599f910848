//! HTTP routes of the daemon's API: translate requests into [`Control`] calls and results into
//! JSON. Every error, including axum's own rejections (bad JSON, wrong method, unknown path,
//! body too large), is an [`ApiError`] body with the matching status, so clients decode one
//! error shape.
use std::{future::Future, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::de::DeserializeOwned;

use super::{ApiError, Control, CreateSession, PortsView, SessionView, StatsView, UpdateSession};

/// Request bodies are small JSON documents; anything larger is a client bug or abuse.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Prometheus text exposition format 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

type Ctl = Arc<dyn Control>;

/// The API's routes over `ctl`.
pub fn router(ctl: Arc<dyn Control>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/sessions", get(list_sessions).post(create_session))
        .route(
            "/v1/sessions/{id}",
            get(get_session).post(update_session).delete(delete_session),
        )
        .route("/v1/stats", get(stats))
        .route("/v1/ports", get(ports))
        // Must come after the routes: it is applied to the method routers registered so far.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctl)
}

/// Serve the API on `listener` until `shutdown` completes, then finish in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctl: Arc<dyn Control>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    log::info!("HTTP API listening on http://{addr}");
    axum::serve(listener, router(ctl))
        .with_graceful_shutdown(shutdown)
        .await?;
    log::info!("HTTP API on {addr} stopped");
    Ok(())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A Control returning a nonsense status is a bug on our side, not the client's.
        let status = StatusCode::from_u16(self.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            log::warn!("API error {}: {}", status.as_u16(), self.error);
        }
        let body = ApiError::new(status.as_u16(), self.error);
        (status, Json(body)).into_response()
    }
}

/// A JSON request body whose every rejection is an [`ApiError`] (axum's `Json` answers in
/// plain text, with 422 for type errors; we want 400 and serde's message).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE.as_u16(),
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let body = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    413,
                    format!("request body larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(r.status().as_u16(), r.body_text())
            }
        })?;
        serde_json::from_slice(&body)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
    }
}

/// `application/json` or any `application/*+json`, parameters (charset) ignored.
fn is_json(ct: Option<&header::HeaderValue>) -> bool {
    let Some(ct) = ct.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The `{id}` path segment (percent-decoded), rejecting with an [`ApiError`].
pub struct CallId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CallId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| CallId(id))
            .map_err(|r| ApiError::new(r.status().as_u16(), r.body_text()))
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(ctl): State<Ctl>) -> Result<Response, ApiError> {
    let text = ctl.metrics()?;
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

async fn list_sessions(State(ctl): State<Ctl>) -> Json<Vec<SessionView>> {
    Json(ctl.sessions())
}

async fn create_session(
    State(ctl): State<Ctl>,
    ApiJson(req): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    Ok((StatusCode::CREATED, Json(ctl.create_session(req)?)))
}

async fn get_session(
    State(ctl): State<Ctl>,
    CallId(id): CallId,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(ctl.session(&id)?))
}

async fn update_session(
    State(ctl): State<Ctl>,
    CallId(id): CallId,
    ApiJson(req): ApiJson<UpdateSession>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(ctl.update_session(&id, req)?))
}

async fn delete_session(
    State(ctl): State<Ctl>,
    CallId(id): CallId,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(ctl.delete_session(&id)?))
}

async fn stats(State(ctl): State<Ctl>) -> Result<Json<StatsView>, ApiError> {
    Ok(Json(ctl.stats()?))
}

async fn ports(State(ctl): State<Ctl>) -> Json<PortsView> {
    Json(ctl.ports())
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no such path: {}", req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED.as_u16(),
        format!(
            "method {} not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        net::SocketAddr,
        sync::Mutex,
        thread::{self, JoinHandle},
    };

    use serde_json::{Value, json};

    use super::*;
    use crate::api::{LatchPolicy, LegView, PoolView, SessionState, StreamView};

    /// Sessions in a map; enough behaviour to tell the routes apart.
    #[derive(Default)]
    struct MemControl {
        sessions: Mutex<BTreeMap<String, SessionView>>,
        fail_stats: bool,
    }

    fn view(call_id: &str, policy: Option<LatchPolicy>, streams: usize) -> SessionView {
        SessionView {
            call_id: call_id.to_owned(),
            policy: policy.unwrap_or_default(),
            state: SessionState::Offered,
            created_unix: 1_700_000_000,
            age_secs: 0,
            idle_secs: None,
            streams: (0..streams)
                .map(|i| StreamView {
                    index: i as u32,
                    media: "audio".into(),
                    shared_port: false,
                    legs: ["a", "b"]
                        .iter()
                        .map(|side| LegView {
                            side: (*side).into(),
                            relay: SocketAddr::from(([192, 0, 2, 1], 30000)),
                            signalled: None,
                            latched: None,
                            rtcp_latched: None,
                            kernel: false,
                            packets_kernel: 0,
                            bytes_kernel: 0,
                            packets_user: 0,
                            bytes_user: 0,
                            idle_secs: None,
                            relatches: 0,
                        })
                        .collect(),
                })
                .collect(),
            packets_kernel: 0,
            bytes_kernel: 0,
            packets_user: 0,
            bytes_user: 0,
        }
    }

    impl Control for MemControl {
        fn sessions(&self) -> Vec<SessionView> {
            self.sessions
                .lock()
                .expect("poisoned")
                .values()
                .cloned()
                .collect()
        }
        fn session(&self, call_id: &str) -> Result<SessionView, ApiError> {
            self.sessions
                .lock()
                .expect("poisoned")
                .get(call_id)
                .cloned()
                .ok_or_else(|| ApiError::not_found(format!("no session {call_id:?}")))
        }
        fn create_session(&self, req: CreateSession) -> Result<SessionView, ApiError> {
            if req.streams.is_empty() {
                return Err(ApiError::bad_request("at least one stream"));
            }
            let mut map = self.sessions.lock().expect("poisoned");
            if map.contains_key(&req.call_id) {
                return Err(ApiError::conflict(format!(
                    "session {:?} exists",
                    req.call_id
                )));
            }
            let v = view(&req.call_id, req.policy, req.streams.len());
            map.insert(req.call_id, v.clone());
            Ok(v)
        }
        fn update_session(
            &self,
            call_id: &str,
            req: UpdateSession,
        ) -> Result<SessionView, ApiError> {
            let mut map = self.sessions.lock().expect("poisoned");
            let v = map
                .get_mut(call_id)
                .ok_or_else(|| ApiError::not_found(format!("no session {call_id:?}")))?;
            if req.answered.unwrap_or(true) {
                v.state = SessionState::Answered;
            }
            Ok(v.clone())
        }
        fn delete_session(&self, call_id: &str) -> Result<SessionView, ApiError> {
            self.sessions
                .lock()
                .expect("poisoned")
                .remove(call_id)
                .ok_or_else(|| ApiError::not_found(format!("no session {call_id:?}")))
        }
        fn stats(&self) -> Result<StatsView, ApiError> {
            if self.fail_stats {
                return Err(ApiError::internal("maps unreadable"));
            }
            Ok(StatsView {
                instance: "test".into(),
                adopted: false,
                uptime_secs: 5,
                sessions_offered: 0,
                sessions_answered: 0,
                kernel_legs: 0,
                forwarded_kernel_packets: 0,
                forwarded_kernel_bytes: 0,
                forwarded_user_packets: 0,
                forwarded_user_bytes: 0,
                interfaces: vec![],
                dataplane: BTreeMap::new(),
                controller: BTreeMap::new(),
            })
        }
        fn ports(&self) -> PortsView {
            PortsView {
                port_min: 30000,
                port_max: 30009,
                quarantine_secs: 60,
                exhausted: 0,
                pools: vec![PoolView {
                    addr: [192, 0, 2, 1].into(),
                    total_pairs: 5,
                    used_pairs: 0,
                    free_pairs: 5,
                    quarantined_pairs: 0,
                }],
            }
        }
        fn metrics(&self) -> Result<String, ApiError> {
            Ok("# TYPE relay_sessions gauge\nrelay_sessions 0\n".into())
        }
    }

    /// A server on its own runtime thread; dropping the sender shuts it down gracefully.
    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<JoinHandle<anyhow::Result<()>>>,
    }

    impl Server {
        fn start(ctl: MemControl) -> Server {
            let std_listener =
                std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            std_listener.set_nonblocking(true).expect("nonblocking");
            let addr = std_listener.local_addr().expect("local_addr");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let thread = thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener)?;
                    serve(listener, Arc::new(ctl), async {
                        let _ = stopped.await;
                    })
                    .await
                })
            });
            Server {
                addr,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn stop(mut self) -> anyhow::Result<()> {
            drop(self.stop.take());
            self.thread
                .take()
                .expect("thread")
                .join()
                .expect("server thread panicked")
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            drop(self.stop.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into()
    }

    struct Reply {
        status: u16,
        content_type: String,
        body: String,
    }

    impl Reply {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
        }
        /// Assert an ApiError body with `status` and return its message.
        fn api_error(&self, status: u16) -> String {
            assert_eq!(self.status, status, "body: {}", self.body);
            assert!(
                self.content_type.starts_with("application/json"),
                "content type {:?}",
                self.content_type
            );
            let e: ApiError = serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not an ApiError ({e}): {:?}", self.body));
            assert_eq!(e.status, status);
            assert!(!e.error.is_empty());
            e.error
        }
    }

    fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut r = r.expect("request failed");
        Reply {
            status: r.status().as_u16(),
            content_type: r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            body: r.body_mut().read_to_string().expect("body"),
        }
    }

    fn get(s: &Server, path: &str) -> Reply {
        reply(agent().get(s.url(path)).call())
    }

    fn post(s: &Server, path: &str, content_type: Option<&str>, body: &str) -> Reply {
        let mut req = agent().post(s.url(path));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        reply(req.send(body))
    }

    const JSON: Option<&str> = Some("application/json");

    fn create(s: &Server, id: &str) -> Reply {
        post(
            s,
            "/v1/sessions",
            JSON,
            &json!({"call_id": id, "streams": [{}]}).to_string(),
        )
    }

    #[test]
    fn healthz_and_metrics() {
        let s = Server::start(MemControl::default());
        let r = get(&s, "/healthz");
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), json!({"status": "ok"}));

        let r = get(&s, "/metrics");
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/plain; version=0.0.4");
        assert!(r.body.contains("relay_sessions 0"));
        s.stop().expect("graceful shutdown");
    }

    #[test]
    fn session_lifecycle() {
        let s = Server::start(MemControl::default());
        assert_eq!(get(&s, "/v1/sessions").json(), json!([]));

        let r = create(&s, "c1@example");
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(r.content_type.starts_with("application/json"));
        let v: SessionView = serde_json::from_str(&r.body).expect("SessionView");
        assert_eq!(v.call_id, "c1@example");
        assert_eq!(v.state, SessionState::Offered);
        // charset parameter and +json are still JSON.
        let r = post(
            &s,
            "/v1/sessions",
            Some("application/json; charset=utf-8"),
            &json!({"call_id": "c2", "policy": "strict", "streams": [{}, {}]}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.json()["policy"], "strict");

        let list: Vec<SessionView> =
            serde_json::from_str(&get(&s, "/v1/sessions").body).expect("list");
        assert_eq!(
            list.iter().map(|v| v.call_id.as_str()).collect::<Vec<_>>(),
            ["c1@example", "c2"]
        );

        let r = get(&s, "/v1/sessions/c1@example");
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["call_id"], "c1@example");

        // Percent-encoded ids are decoded (a '/' in a call id must be encoded by clients).
        let r = create(&s, "x/y z");
        assert_eq!(r.status, 201);
        let r = get(&s, "/v1/sessions/x%2Fy%20z");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["call_id"], "x/y z");

        let r = post(&s, "/v1/sessions/c1@example", JSON, r#"{"streams":[null]}"#);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["state"], "answered");

        let r = reply(agent().delete(s.url("/v1/sessions/c1@example")).call());
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["call_id"], "c1@example");
        let msg = get(&s, "/v1/sessions/c1@example").api_error(404);
        assert!(msg.contains("c1@example"), "{msg}");
        s.stop().expect("graceful shutdown");
    }

    #[test]
    fn stats_and_ports() {
        let s = Server::start(MemControl::default());
        let r = get(&s, "/v1/stats");
        assert_eq!(r.status, 200);
        let v: StatsView = serde_json::from_str(&r.body).expect("StatsView");
        assert_eq!(v.instance, "test");
        let r = get(&s, "/v1/ports");
        assert_eq!(r.status, 200);
        let v: PortsView = serde_json::from_str(&r.body).expect("PortsView");
        assert_eq!(v.pools.len(), 1);

        let s = Server::start(MemControl {
            fail_stats: true,
            ..Default::default()
        });
        assert_eq!(get(&s, "/v1/stats").api_error(500), "maps unreadable");
    }

    #[test]
    fn control_errors_keep_their_status() {
        let s = Server::start(MemControl::default());
        assert_eq!(create(&s, "dup").status, 201);
        let msg = create(&s, "dup").api_error(409);
        assert!(msg.contains("exists"), "{msg}");
        let r = post(
            &s,
            "/v1/sessions",
            JSON,
            r#"{"call_id":"none","streams":[]}"#,
        );
        assert_eq!(r.api_error(400), "at least one stream");
        get(&s, "/v1/sessions/nope").api_error(404);
        post(&s, "/v1/sessions/nope", JSON, "{}").api_error(404);
        reply(agent().delete(s.url("/v1/sessions/nope")).call()).api_error(404);
    }

    #[test]
    fn bad_bodies_are_400_with_serdes_message() {
        let s = Server::start(MemControl::default());
        let cases = [
            ("{", "EOF"),
            ("", "EOF"),
            (r#"{"call_id": 5, "streams": []}"#, "invalid type"),
            (r#"{"streams": []}"#, "missing field `call_id`"),
            (
                r#"{"call_id": "x", "streams": [], "bogus": 1}"#,
                "unknown field `bogus`",
            ),
            (
                r#"{"call_id": "x", "policy": "sometimes", "streams": []}"#,
                "unknown variant `sometimes`",
            ),
            (
                r#"{"call_id": "x", "streams": [{"a": {"peer": "nonsense"}}]}"#,
                "invalid socket address",
            ),
        ];
        for (body, want) in cases {
            let msg = post(&s, "/v1/sessions", JSON, body).api_error(400);
            assert!(msg.contains(want), "{body:?}: {msg:?} lacks {want:?}");
        }
        let msg = post(&s, "/v1/sessions/x", JSON, r#"{"answered": "yes"}"#).api_error(400);
        assert!(msg.contains("invalid type"), "{msg}");
    }

    #[test]
    fn content_type_must_be_json() {
        let s = Server::start(MemControl::default());
        let body = json!({"call_id": "c", "streams": [{}]}).to_string();
        post(&s, "/v1/sessions", None, &body).api_error(415);
        post(&s, "/v1/sessions", Some("text/plain"), &body).api_error(415);
        post(
            &s,
            "/v1/sessions",
            Some("application/x-www-form-urlencoded"),
            &body,
        )
        .api_error(415);
        post(&s, "/v1/sessions/c", Some("text/json"), "{}").api_error(415);
    }

    #[test]
    fn body_over_64k_is_413() {
        let s = Server::start(MemControl::default());
        let big = format!(
            r#"{{"call_id": "{}", "streams": [{{}}]}}"#,
            "x".repeat(MAX_BODY_BYTES)
        );
        post(&s, "/v1/sessions", JSON, &big).api_error(413);
        // Just under the limit is fine.
        let ok = format!(
            r#"{{"call_id": "{}", "streams": [{{}}]}}"#,
            "x".repeat(MAX_BODY_BYTES - 100)
        );
        assert_eq!(post(&s, "/v1/sessions", JSON, &ok).status, 201);
    }

    #[test]
    fn unknown_paths_and_methods() {
        let s = Server::start(MemControl::default());
        for path in ["/", "/v1", "/v1/session", "/v1/sessions/a/b", "/v2/stats"] {
            get(&s, path).api_error(404);
        }
        post(&s, "/nope", JSON, "{}").api_error(404);

        post(&s, "/healthz", JSON, "{}").api_error(405);
        post(&s, "/v1/stats", JSON, "{}").api_error(405);
        post(&s, "/v1/ports", JSON, "{}").api_error(405);
        post(&s, "/metrics", JSON, "{}").api_error(405);
        reply(agent().delete(s.url("/v1/sessions")).call()).api_error(405);
        reply(agent().put(s.url("/v1/sessions/x")).send("{}")).api_error(405);
        reply(agent().patch(s.url("/v1/sessions")).send("{}")).api_error(405);
    }

    #[test]
    fn api_error_status_is_sane() {
        // A Control that invents a non-error status must not produce a 2xx "error".
        let r = ApiError::new(200, "oops").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = ApiError::new(999, "oops").into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = ApiError::unavailable("no ports").into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn is_json_content_types() {
        let h = |s: &'static str| Some(header::HeaderValue::from_static(s));
        assert!(is_json(h("application/json").as_ref()));
        assert!(is_json(h("Application/JSON; charset=utf-8").as_ref()));
        assert!(is_json(h("application/merge-patch+json").as_ref()));
        assert!(!is_json(h("text/json").as_ref()));
        assert!(!is_json(h("application/jsonx").as_ref()));
        assert!(!is_json(None));
    }
}
