//! The status page (`GET /`, one HTML file built into the binary) and its sign-in
//! (`POST /api/session`).
//!
//! The page is static: it reads the same JSON endpoints as any client. When a token is
//! configured it asks for it once and posts it here; the answer sets an HttpOnly,
//! SameSite=Strict cookie holding a digest of the token (never the token), which the API
//! accepts on GET routes only: every mutating route still needs the Authorization header,
//! so no cross-site request can trigger a cleanup. The Content-Security-Policy allows the
//! page's own script and style only (by hash), nothing from elsewhere.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Api, ApiError, small_body, token_matches};

/// The page.
pub const PAGE: &str = include_str!("../../assets/status.html");

/// The session cookie's name.
pub const COOKIE: &str = "janitor_session";

/// How long a session lasts.
const SESSION_SECS: u64 = 12 * 3600;

/// The cookie's value for `token`: a digest, so the cookie jar never holds the token.
pub fn session_value(token: &str) -> String {
    hex::encode(Sha256::digest(
        format!("janitor-session\0{token}").as_bytes(),
    ))
}

/// The session cookie sent with a request, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// `sha256-...` of the text between `open` and `close` in the page.
fn hash_of(open: &str, close: &str) -> String {
    let start = PAGE.find(open).map_or(0, |i| i + open.len());
    let end = PAGE[start..].find(close).map_or(start, |i| start + i);
    let digest = Sha256::digest(&PAGE.as_bytes()[start..end]);
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
             form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
            hash_of("<script>", "</script>"),
            hash_of("<style>", "</style>")
        )
    })
}

/// `GET /`: the status page (no data in it: the data needs the token or the cookie).
pub async fn page() -> Response {
    let mut response = PAGE.into_response();
    let headers = response.headers_mut();
    let set = |h: &mut HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    if let Ok(v) = HeaderValue::from_str(csp()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// `POST /api/session {"token"}`: 204 with the session cookie; 401 for a wrong token, 403
/// when no token is configured (the API needs no sign-in then), 429 past 10 tries a minute.
pub async fn sign_in(
    Extract(api): Extract<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(expected) = &api.ctx.admin.token else {
        return Err(ApiError::Forbidden(
            "no admin token configured: the API needs no sign-in".into(),
        ));
    };
    api.session_limiter
        .try_acquire()
        .map_err(|wait| ApiError::RateLimited(wait.as_secs_f64().ceil() as u64))?;
    let body = small_body(body)?;
    let SignIn { token } = super::json_object(&body)?;
    if !token_matches(&token, expected.expose()) {
        return Err(ApiError::Unauthorized);
    }
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}",
        session_value(expected.expose())
    );
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_holds_no_token() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; janitor_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        assert!(!session_value("s3cret").contains("s3cret"));
        assert_ne!(session_value("a"), session_value("b"));
    }

    #[test]
    fn the_policy_hashes_the_page_s_own_script_and_style() {
        let policy = csp();
        assert!(policy.contains("script-src 'sha256-") && policy.contains("style-src 'sha256-"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(PAGE.contains("<script>") && PAGE.contains("<style>"));
    }
}
