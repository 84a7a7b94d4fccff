//! `GET /api/resources/breakdown`: what uses a store, by key prefix or collection, from
//! [`BreakdownCache`](crate::breakdown::cache::BreakdownCache) (one walk per store and
//! depth every few minutes, shared by the requests that arrive together).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Api, ApiError};
use crate::breakdown::{BreakdownError, MAX_DEPTH, MAX_TOP, Options};
use crate::resource::Resource;

/// How long a request waits for a walk before answering 202 (the walk goes on).
const WAIT: Duration = Duration::from_secs(25);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakdownQuery {
    resource: String,
    #[serde(default)]
    depth: Option<usize>,
    #[serde(default)]
    top: Option<usize>,
    #[serde(default)]
    refresh: bool,
}

/// The breakdown of `?resource=` (`redis`, `minio`/`s3`, `qdrant`, or their
/// `resource_type`), grouped to `?depth=` segments (1 to 8, default 1), the `?top=`
/// largest groups (1 to 1000, default 20) and the rest summed; `?refresh=true` walks again
/// even if the cached one is recent. 202 while a walk is still running.
pub async fn breakdown(
    Extract(api): Extract<Api>,
    query: Result<Query<BreakdownQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let resource: Resource =
        q.resource
            .parse()
            .map_err(|e: crate::resource::UnknownResource| {
                ApiError::Unprocessable(format!("{e}; a breakdown is of redis, minio or qdrant"))
            })?;
    let defaults = Options::default();
    let opts = Options {
        depth: q.depth.unwrap_or(defaults.depth),
        top: q.top.unwrap_or(defaults.top),
    };
    if !(1..=MAX_DEPTH).contains(&opts.depth) || !(1..=MAX_TOP).contains(&opts.top) {
        return Err(ApiError::Unprocessable(format!(
            "depth must be 1 to {MAX_DEPTH} and top 1 to {MAX_TOP}"
        )));
    }
    let cache = &api.ctx.breakdown;
    let Some(walked) = cache.get(resource, opts, q.refresh, WAIT).await else {
        let body = json!({
            "success": true,
            "status": "running",
            "message": format!("the {resource} breakdown is still being computed: ask again in a while"),
        });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    };
    match walked {
        Ok(b) => Ok(Json(&*b).into_response()),
        Err(e) => Err(match &*e {
            BreakdownError::NotConfigured(_) | BreakdownError::Unsupported(_) => {
                ApiError::Unprocessable(e.to_string())
            }
            BreakdownError::Backend(_) | BreakdownError::Cancelled | BreakdownError::Lost => {
                ApiError::Unavailable(e.to_string())
            }
        }),
    }
}
