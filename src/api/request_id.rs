//! Every answer carries a request id (`x-request-id`, the client's own when it sent a sane
//! one), and every error is the same JSON: `{"success": false, "error": {"code", "message"},
//! "request_id"}`, also for the errors axum answers itself (a bad query string, a wrong
//! method), so the matching log line is one grep away.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

/// The header carrying the id.
pub const HEADER: &str = "x-request-id";

/// Largest error body rewritten (ours are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The middleware: assigns the id, logs refused requests with it, puts it in errors.
pub async fn layer(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)));
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = as_json_error(response, &id).await;
        tracing::warn!(request_id = %id, %method, %path, status = status.as_u16(), "request refused");
    } else {
        tracing::debug!(request_id = %id, %method, %path, status = status.as_u16(), "request");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, v);
    }
    response
}

/// The error `response` with `success: false` and `request_id` in its JSON; a body that is
/// not our JSON error (axum's own text) becomes one.
async fn as_json_error(response: Response, id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let mut value = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v.get("error").is_some() => v,
        // a JSON answer of its own (the dedup index's 409 names the holder): ids only
        Ok(Value::Object(v)) => Value::Object(v),
        _ => {
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            let message = if text.is_empty() {
                parts
                    .status
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_string()
            } else {
                text
            };
            json!({ "error": { "code": code(parts.status), "message": message } })
        }
    };
    if value.get("error").is_some() {
        value["success"] = json!(false);
    }
    value["request_id"] = json!(id);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&value).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}

/// The code of an error axum answered itself.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}
