//! The admin HTTP API (axum).
//!
//! Read endpoints serve the last snapshot and never wait on a backend. Everything except
//! `/healthz`, `/readyz` and `/metrics` needs the bearer token when one is configured
//! (compared in constant time); without a token every mutating endpoint answers 403 (one
//! layer, `require_admin`), so a daemon that was never given one cannot be made to delete
//! or write by anyone who reaches its port. Every error is JSON with a request id:
//! `{"success": false, "error": {"code": ..., "message": ...}, "request_id": ...}`.
//!
//! The API holds an [`ApiContext`]: the handles it needs (the scheduler, the snapshot, the
//! run log, ...), not the daemon.

mod breakdown;
mod cleanup;
mod dedup;
mod handlers;
mod history;
pub mod openapi;
mod page;
mod ratelimit;
pub mod request_id;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::AuditLog;
use crate::breakdown::cache::BreakdownCache;
use crate::config::Admin;
use crate::dedup::DedupIndex;
use crate::drift::DriftBoard;
use crate::history::History;
use crate::leader::LeaderHandle;
use crate::metrics::Metrics;
use crate::report::ReportSource;
use crate::resource::PerResource;
use crate::scheduler::Scheduler;
use crate::snapshot::Snapshot;
use crate::worker::Registry;
pub use ratelimit::RateLimiter;

/// Largest request body, bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A small request body: 413 over [`MAX_BODY`], 400 when it cannot be read.
pub(super) fn small_body(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(MAX_BODY as u64)
        } else {
            ApiError::BadRequest(r.body_text())
        }
    })?;
    if body.len() > MAX_BODY {
        return Err(ApiError::TooLarge(MAX_BODY as u64));
    }
    Ok(body)
}

/// A JSON object body as `T` (400 otherwise: serde would read an array as a struct).
pub(super) fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let bad = |e: String| ApiError::BadRequest(format!("invalid JSON body: {e}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        return Err(bad("expected a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// An API error, answered as JSON with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 401.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("no such endpoint")]
    NotFound,
    /// 404 for a named thing that does not exist.
    #[error("{0}")]
    Missing(String),
    /// 413, with the limit. The rest of the body is not read: the connection is closed.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// 422.
    #[error("{0}")]
    Unprocessable(String),
    /// 503: a backend the answer depends on is unavailable (never answered as a "no").
    #[error("{0}")]
    Unavailable(String),
    /// 409: this replica is on standby; another one holds the leader lease and sweeps.
    #[error("{0}")]
    Standby(String),
    /// 429, with the seconds to wait.
    #[error("rate limit exceeded: retry in {0} s")]
    RateLimited(u64),
    /// 415: a body that is not JSON by its Content-Type.
    #[error("Content-Type {0:?}: this endpoint takes application/json")]
    NotJson(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Missing(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Standby(_) => (StatusCode::CONFLICT, "standby"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::NotJson(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({ "error": { "code": code, "message": self.to_string() } });
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited(secs) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// What the API works with: narrow handles, nothing else.
pub struct ApiContext {
    /// Listen address, token, cleanup rate.
    pub admin: Admin,
    /// Where cleanup tasks go, and what is queued and running.
    pub scheduler: Arc<Scheduler>,
    /// The latest measurements.
    pub snapshot: Arc<Snapshot>,
    /// Worker states.
    pub workers: Registry,
    /// Prometheus.
    pub metrics: Metrics,
    /// Whether this replica sweeps.
    pub leader: LeaderHandle,
    /// The SHA-256 dedup index (needs MongoDB).
    pub dedup: Option<Arc<DedupIndex>>,
    /// The audit log (readiness says when it cannot be written).
    pub audit: Arc<AuditLog>,
    /// Drift between the stores.
    pub drift: DriftBoard,
    /// The stores a cleanup can be asked for.
    pub swept: PerResource<bool>,
    /// Set once every worker is started.
    pub started: Arc<AtomicBool>,
    /// When the daemon started (readiness waits a bounded time for the first measurement).
    pub started_at: std::time::Instant,
    /// What uses each store, walked on demand and cached.
    pub breakdown: Arc<BreakdownCache>,
    /// Runs and measurements across restarts.
    pub history: History,
    /// The report's inputs besides the history.
    pub report: ReportSource,
}

/// The router's state: the context, plus the cleanup rate limiter.
#[derive(Clone)]
pub struct Api {
    ctx: Arc<ApiContext>,
    cleanup_limiter: Arc<RateLimiter>,
    session_limiter: Arc<RateLimiter>,
}

/// Every route: (method, path). The router and the OpenAPI document are checked against it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("POST", "/api/session"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/resources/metrics"),
    ("POST", "/api/resources/cleanup"),
    ("POST", "/api/resources/emergency"),
    ("GET", "/api/resources/queue"),
    ("GET", "/api/resources/runs"),
    ("GET", "/api/resources/runs/{id}"),
    ("GET", "/api/resources/history"),
    ("GET", "/api/resources/report"),
    ("GET", "/api/resources/breakdown"),
    ("GET", "/api/workers"),
    ("GET", "/api/openapi.json"),
    ("POST", "/api/dedup/check"),
    ("POST", "/api/dedup/lookup"),
    ("POST", "/api/dedup/register"),
];

/// The router.
pub fn router(ctx: ApiContext) -> Router {
    let per_minute = ctx.admin.cleanup_per_minute;
    let api = Api {
        ctx: Arc::new(ctx),
        cleanup_limiter: Arc::new(RateLimiter::per_minute(per_minute)),
        session_limiter: Arc::new(RateLimiter::per_minute(10)),
    };
    // routes that delete or write: refused outright while no admin token is configured
    let mutating = Router::new()
        .route(
            "/api/resources/cleanup",
            post(cleanup::cleanup)
                .layer(DefaultBodyLimit::max(MAX_BODY))
                .layer(middleware::from_fn(require_json)),
        )
        .route(
            "/api/resources/emergency",
            post(cleanup::emergency)
                .layer(DefaultBodyLimit::max(MAX_BODY))
                .layer(middleware::from_fn(require_json)),
        )
        .route(
            "/api/dedup/register",
            post(dedup::register)
                .layer(DefaultBodyLimit::max(MAX_BODY))
                .layer(middleware::from_fn(require_json)),
        )
        .route_layer(middleware::from_fn_with_state(api.clone(), require_admin));
    let protected = Router::new()
        .route("/api/resources/metrics", get(handlers::metrics))
        .route("/api/resources/queue", get(handlers::queue))
        .route("/api/resources/runs", get(history::runs))
        .route("/api/resources/runs/{id}", get(history::run))
        .route("/api/resources/history", get(history::history))
        .route("/api/resources/report", get(history::report))
        .route("/api/resources/breakdown", get(breakdown::breakdown))
        .route("/api/workers", get(handlers::workers))
        .route("/api/openapi.json", get(handlers::openapi))
        // streamed and limited by JANITOR_DEDUP_MAX_BYTES in the handler
        .route(
            "/api/dedup/check",
            post(dedup::check).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/dedup/lookup",
            post(dedup::lookup)
                .layer(DefaultBodyLimit::max(MAX_BODY))
                .layer(middleware::from_fn(require_json)),
        )
        .merge(mutating)
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token));
    Router::new()
        .route("/", get(page::page))
        .route(
            "/api/session",
            post(page::sign_in)
                .layer(DefaultBodyLimit::max(MAX_BODY))
                .layer(middleware::from_fn(require_json)),
        )
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::prometheus))
        .merge(protected)
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(request_id::layer))
        .with_state(api)
}

/// Refuses a body whose Content-Type says it is not JSON (no Content-Type is read as JSON,
/// so a bare `curl -X POST` with no body still works).
async fn require_json(request: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(kind) = request.headers().get(header::CONTENT_TYPE) {
        let text = kind.to_str().unwrap_or_default();
        let mime = text.split(';').next().unwrap_or_default().trim();
        let json = mime.eq_ignore_ascii_case("application/json")
            || mime.to_ascii_lowercase().ends_with("+json");
        if !json {
            return Err(ApiError::NotJson(text.chars().take(100).collect()));
        }
    }
    Ok(next.run(request).await)
}

/// Refuses a mutating route while no admin token is configured (the token itself is
/// checked by [`require_token`]).
async fn require_admin(
    Extract(api): Extract<Api>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if api.ctx.admin.token.is_none() {
        return Err(ApiError::Forbidden(
            "no admin token configured (JANITOR_ADMIN_TOKEN or JANITOR_ADMIN_TOKEN_FILE): \
             this endpoint changes data and cannot be used over HTTP"
                .into(),
        ));
    }
    Ok(next.run(request).await)
}

/// Checks the bearer token when one is configured; on GET routes (which only read) the
/// status page's session cookie is accepted instead.
async fn require_token(
    Extract(api): Extract<Api>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = &api.ctx.admin.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let by_cookie = || {
            request.method() == axum::http::Method::GET
                && page::session_cookie(&headers).is_some_and(|c| {
                    let want = page::session_value(expected.expose());
                    bool::from(c.as_bytes().ct_eq(want.as_bytes()))
                })
        };
        let ok = match given {
            Some(token) => token_matches(token, expected.expose()),
            None => by_cookie(),
        };
        if !ok {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(next.run(request).await)
}

/// Constant-time comparison of digests: neither content nor length leaks through timing.
fn token_matches(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    !given.is_empty() && bool::from(a.ct_eq(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::token_matches("abc", "abc"));
        assert!(!super::token_matches("abd", "abc"));
        assert!(!super::token_matches("", ""));
        assert!(!super::token_matches("abcabc", "abc"));
    }
}
