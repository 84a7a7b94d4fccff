//! The history's endpoints: `GET /api/resources/runs` (filtered, paginated),
//! `GET /api/resources/runs/{id}`, `GET /api/resources/history` (usage and deletion series)
//! and `GET /api/resources/report` (JSON or Markdown).

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State as Extract};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Api, ApiError};
use crate::history::RunQuery;
use crate::report::{Report, markdown, parse_period};
use crate::resource::Resource;

/// Largest page of runs.
const MAX_LIMIT: u64 = 1000;
/// Largest offset into the runs.
const MAX_OFFSET: u64 = 1_000_000_000;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn resource(name: &str) -> Result<Resource, ApiError> {
    name.parse()
        .map_err(|e: crate::resource::UnknownResource| ApiError::Unprocessable(e.to_string()))
}

/// An RFC 3339 time, any offset (`Z`, `+02:00`, `-05:00`).
fn instant(name: &str, text: &str) -> Result<SystemTime, ApiError> {
    text.parse::<jiff::Timestamp>()
        .map(SystemTime::from)
        .map_err(|_| {
            ApiError::Unprocessable(format!(
                "{name}: expected an RFC 3339 time such as 2026-11-30T02:00:00Z or 2026-11-30T03:00:00+01:00"
            ))
        })
}

fn unavailable(e: rusqlite::Error) -> ApiError {
    ApiError::Unavailable(format!("the history cannot be read: {e}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    offset: Option<u64>,
}

/// Runs from the history, newest first: `?resource=&outcome=&since=&until=` (RFC 3339),
/// `?limit=` (1 to 1000, default 100) and `?offset=`; `total` counts every match.
pub async fn runs(
    Extract(api): Extract<Api>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100);
    let offset = q.offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) || offset > MAX_OFFSET {
        return Err(ApiError::Unprocessable(format!(
            "limit must be 1 to {MAX_LIMIT}, offset 0 to {MAX_OFFSET}"
        )));
    }
    const OUTCOMES: [&str; 8] = [
        "succeeded",
        "dry_run",
        "aborted_cap",
        "failed_closed",
        "failed",
        "cancelled",
        "disabled",
        "not_leader",
    ];
    if let Some(o) = q.outcome.as_deref().filter(|o| !OUTCOMES.contains(o)) {
        return Err(ApiError::Unprocessable(format!(
            "unknown outcome {o:?}: one of {}",
            OUTCOMES.join(", ")
        )));
    }
    let run_query = RunQuery {
        resource: q.resource.as_deref().map(resource).transpose()?,
        outcome: q.outcome,
        since: q
            .since
            .as_deref()
            .map(|t| instant("since", t))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|t| instant("until", t))
            .transpose()?,
        limit,
        offset,
    };
    let page = api.ctx.history.runs(run_query).await.map_err(unavailable)?;
    Ok(Json(page).into_response())
}

/// One run by id (404 when the history has none).
pub async fn run(
    Extract(api): Extract<Api>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    match api.ctx.history.run(id.clone()).await.map_err(unavailable)? {
        Some(run) => Ok(Json(run).into_response()),
        None => Err(ApiError::Missing(format!("no run {id:?} in the history"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    resource: String,
    #[serde(default)]
    period: Option<String>,
}

/// `?resource=` and `?period=24h|7d|30d` (default 24h): the usage series and the deletions
/// per step, at most 288 points each.
pub async fn history(
    Extract(api): Extract<Api>,
    q: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let r = resource(&q.resource)?;
    let label = q.period.unwrap_or_else(|| "24h".into());
    let period = period(&label)?;
    let until = SystemTime::now();
    let since = until.checked_sub(period).unwrap_or(SystemTime::UNIX_EPOCH);
    let history = &api.ctx.history;
    let (step, usage) = history
        .usage_series(r, since, until)
        .await
        .map_err(unavailable)?;
    let deletions = history
        .deletion_series(r, since, until)
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({
        "resource": r.api_key(),
        "period": label,
        "step_secs": step,
        "usage": usage,
        "deletions": deletions,
    }))
    .into_response())
}

fn period(label: &str) -> Result<Duration, ApiError> {
    parse_period(label).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "period {label:?}: expected a duration such as 24h, 7d or 30d (1 minute to 1 year)"
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// `?period=` (default 24h) and `?format=json|md`: the report of the period ending now.
pub async fn report(
    Extract(api): Extract<Api>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let label = q.period.unwrap_or_else(|| "24h".into());
    let period = period(&label)?;
    let md = match q.format.as_deref() {
        None | Some("json") => false,
        Some("md" | "markdown") => true,
        Some(f) => {
            return Err(ApiError::Unprocessable(format!("format {f:?}: json or md")));
        }
    };
    let inputs = api.ctx.report.inputs(false).await;
    let report = Report::build(&api.ctx.history, &inputs, &label, period, SystemTime::now())
        .await
        .map_err(unavailable)?;
    if md {
        let headers = [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")];
        return Ok((headers, markdown(&report)).into_response());
    }
    Ok(Json(report).into_response())
}
