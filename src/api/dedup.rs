//! The dedup endpoints: hash a streamed upload, look a hash up, register one race-free.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Api, ApiError, small_body};
use crate::dedup::hash::{self, HashError};
use crate::dedup::{DedupError, DedupIndex, Registered};

impl From<DedupError> for ApiError {
    fn from(e: DedupError) -> Self {
        match e {
            DedupError::NotFound(m) => ApiError::Missing(m),
            DedupError::Unavailable(_) | DedupError::IndexMissing(_) => {
                ApiError::Unavailable(e.to_string())
            }
        }
    }
}

fn index(api: &Api) -> Result<&DedupIndex, ApiError> {
    api.ctx.dedup.as_deref().ok_or_else(|| {
        ApiError::Unavailable("MONGODB_URI is not set: there is no dedup index".into())
    })
}

fn user(id: Option<String>) -> Result<String, ApiError> {
    id.map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::BadRequest("user_id is required".into()))
}

fn sha256(text: &str) -> Result<String, ApiError> {
    hash::parse_sha256(text.trim())
        .ok_or_else(|| ApiError::BadRequest("sha256 must be 64 hexadecimal characters".into()))
}

/// A small JSON body: 413 over [`MAX_BODY`], 400 when it does not parse.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    super::json_object(&small_body(body)?)
}

fn answer(sha256: &str, size: Option<u64>, found: Option<String>) -> Response {
    let mut body = json!({
        "sha256": sha256,
        "duplicate": found.is_some(),
        "document_id": found,
    });
    if let Some(size) = size {
        body["size"] = size.into();
    }
    Json(body).into_response()
}

/// `?user_id=` of a check.
#[derive(Debug, Deserialize)]
pub struct CheckQuery {
    user_id: Option<String>,
}

/// `POST /api/dedup/check?user_id=U`: the body is the file, hashed as it streams in.
pub async fn check(
    Extract(api): Extract<Api>,
    Query(query): Query<CheckQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let index = index(&api)?;
    let user = user(query.user_id)?;
    let max = index.max_bytes();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        // refused before reading a byte
        return Err(ApiError::TooLarge(max));
    }
    let digested = hash::digest(body.into_data_stream(), max)
        .await
        .map_err(|e| match e {
            HashError::TooLarge(max) => ApiError::TooLarge(max),
            HashError::Body(m) => ApiError::BadRequest(m),
        })?;
    let found = index.lookup(&user, &digested.sha256).await?;
    api.ctx.metrics.record_dedup(digested.size, found.is_some());
    Ok(answer(&digested.sha256, Some(digested.size), found))
}

/// `POST /api/dedup/lookup` body.
#[derive(Debug, Deserialize)]
struct LookupBody {
    user_id: Option<String>,
    sha256: Option<String>,
}

/// `POST /api/dedup/lookup {"user_id", "sha256"}`: a check without the upload.
pub async fn lookup(
    Extract(api): Extract<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let index = index(&api)?;
    let body: LookupBody = json_body(body)?;
    let user = user(body.user_id)?;
    let sha = sha256(body.sha256.as_deref().unwrap_or_default())?;
    let found = index.lookup(&user, &sha).await?;
    api.ctx.metrics.record_dedup(0, found.is_some());
    Ok(answer(&sha, None, found))
}

/// `POST /api/dedup/register` body.
#[derive(Debug, Deserialize)]
struct RegisterBody {
    user_id: Option<String>,
    sha256: Option<String>,
    document_id: Option<String>,
    object_key: Option<String>,
}

/// `POST /api/dedup/register`: 201 recorded, 200 already recorded for this document, 409
/// with the existing document when another one holds the hash.
pub async fn register(
    Extract(api): Extract<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let index = index(&api)?;
    let body: RegisterBody = json_body(body)?;
    let user = user(body.user_id)?;
    let sha = sha256(body.sha256.as_deref().unwrap_or_default())?;
    let document_id = body
        .document_id
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("document_id is required".into()))?;
    let registered = index
        .register(&user, &sha, &document_id, body.object_key.as_deref())
        .await?;
    let response = |status: StatusCode, v: serde_json::Value| (status, Json(v)).into_response();
    Ok(match registered {
        Registered::Created => response(
            StatusCode::CREATED,
            json!({ "registered": true, "sha256": sha, "document_id": document_id }),
        ),
        Registered::Already => response(
            StatusCode::OK,
            json!({ "registered": true, "already": true, "sha256": sha, "document_id": document_id }),
        ),
        Registered::Conflict { document_id } => response(
            StatusCode::CONFLICT,
            json!({
                "error": { "code": "duplicate", "message": "another document of this user holds this hash" },
                "sha256": sha,
                "document_id": document_id,
            }),
        ),
    })
}
