//! HTTP routes of the daemon's API: translate requests into [`Control`] calls and results into
//! JSON. Every error, including axum's own rejections (bad JSON, wrong method, unknown path,
//! body too large), is an [`ApiError`] body with the matching status, so clients decode one
//! error shape.
use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State},
    http::{StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};

use super::{
    ApiError, Control, CreateSession, FrontEnd, PortsView, SessionView, StatsView, UpdateSession,
    server::Limits,
};

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
        .route("/v1/reflector/tickets", post(issue_ticket))
        .route("/v1/turn/allocations", get(turn_allocations))
        // Must come after the routes: it is applied to the method routers registered so far.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(strict_framing))
        .with_state(ctl)
}

/// Requests whose body is ambiguous, unexpected or announced too large are refused before any
/// body is read: both Transfer-Encoding and Content-Length is the request-smuggling shape
/// (RFC 9112 6.3: a server ought to treat it as an error), a GET/HEAD/DELETE with a body
/// would leave it unread, and a Content-Length over the limit need not be waited for. The
/// connection is closed after the answer.
async fn strict_framing(req: Request, next: Next) -> Response {
    let h = req.headers();
    let has_body = h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let bodiless = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::DELETE
    );
    let refusal = if bodiless && has_body {
        // No route reads a body on these methods: one that comes anyway would be left on the
        // connection unread (hyper drops Content-Length when chunked framing is present).
        Some(ApiError::bad_request(format!(
            "{} requests carry no body here",
            req.method()
        )))
    } else if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        Some(ApiError::new(
            400,
            "both Transfer-Encoding and Content-Length: ambiguous framing refused",
        ))
    } else {
        match h
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()))
        {
            Some(None) => Some(ApiError::bad_request("Content-Length is not a number")),
            Some(Some(n)) if n > MAX_BODY_BYTES as u64 => Some(ApiError::new(
                413,
                format!("request body larger than {MAX_BODY_BYTES} bytes"),
            )),
            _ => None,
        }
    };
    match refusal {
        Some(e) => {
            let mut r = e.into_response();
            r.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            r
        }
        None => next.run(req).await,
    }
}

/// The controller's error kinds as HTTP statuses.
impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match e.kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Exhausted => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status.as_u16(), e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A Control returning a nonsense status is a bug on our side, not the client's.
        let status = StatusCode::from_u16(self.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            crate::log_limited!(
                log::Level::Warn,
                "api server error",
                "API error {}: {}",
                status.as_u16(),
                self.error
            );
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
        let ct = req.headers().get(header::CONTENT_TYPE);
        if !is_json(ct.and_then(|v| v.to_str().ok())) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE.as_u16(),
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        // A body that trickles in is not waited for forever (`Limits::body_timeout`).
        let limit = req
            .extensions()
            .get::<Limits>()
            .copied()
            .unwrap_or_default()
            .body_timeout;
        let read = tokio::time::timeout(limit, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    408,
                    format!("request body not received within {} s", limit.as_secs()),
                )
            })?;
        let body = read.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    413,
                    format!("request body larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::new(r.status().as_u16(), r.body_text())
            }
        })?;
        decode_json(&body).map(ApiJson)
    }
}

/// A request body as the API decodes it (also the fuzz target `api_request`'s entry).
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// `application/json` or any `application/*+json`, parameters (charset) ignored.
pub fn is_json(ct: Option<&str>) -> bool {
    let Some(ct) = ct else {
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
    Ok((
        StatusCode::CREATED,
        Json(ctl.create_session(req, FrontEnd::Api)?),
    ))
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
    Ok(Json(ctl.update_session(&id, req, FrontEnd::Api)?))
}

async fn delete_session(
    State(ctl): State<Ctl>,
    CallId(id): CallId,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(ctl.delete_session(&id, FrontEnd::Api)?))
}

async fn stats(State(ctl): State<Ctl>) -> Result<Json<StatsView>, ApiError> {
    Ok(Json(ctl.stats()?))
}

async fn ports(State(ctl): State<Ctl>) -> Json<PortsView> {
    Json(ctl.ports())
}

async fn issue_ticket(
    State(ctl): State<Ctl>,
    body: Result<ApiJson<super::TicketRequest>, ApiError>,
) -> Result<(StatusCode, Json<super::TicketView>), ApiError> {
    // A body that did not decode is the reflector's refusal to count, as invalid.
    let req = body
        .map(|ApiJson(r)| r)
        .map_err(|e| Error::invalid(e.error));
    let t = ctl.issue_ticket(req)?;
    Ok((StatusCode::CREATED, Json(t)))
}

async fn turn_allocations(
    State(ctl): State<Ctl>,
) -> Result<Json<crate::turn::view::TurnView>, ApiError> {
    Ok(Json(ctl.turn_allocations()?))
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
    //! Only what needs private items or no server; the routes over HTTP are tested in
    //! `tests/api_http.rs`.
    use super::*;

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
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(Some("text/json")));
        assert!(!is_json(Some("application/jsonx")));
        assert!(!is_json(None));
    }
}
