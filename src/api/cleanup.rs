//! `POST /api/resources/cleanup` and `POST /api/resources/emergency`: the API as a source of
//! cleanup tasks. Seed-compatible by default: a cleanup waits for its runs and answers the
//! seed's `{success, deleted_counts: {redis, qdrant, minio}, message}`.

use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Api, ApiContext, ApiError, small_body};
use crate::engine::run_id;
use crate::queue::CleanupTask;
use crate::resource::{Priority, Resource};
use crate::runs::{RunRecord, Trigger};
use crate::scheduler::TaskResult;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupQuery {
    /// `?async=true`: answer 202 with the task ids at once.
    #[serde(default, rename = "async")]
    run_async: bool,
    /// `?wait=false` means the same (`?wait=true`, the default, is accepted).
    #[serde(default)]
    wait: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CleanupBody {
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EmergencyBody {
    #[serde(default)]
    reason: Option<String>,
}

/// A JSON body, empty allowed (then `T::default()`).
fn parse<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = small_body(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    super::json_object(&body)
}

/// 409 on a standby replica (unless `dry_run`), 429 over the rate limit.
fn admit(api: &Api, dry_run: bool) -> Result<(), ApiError> {
    if !dry_run && !api.ctx.leader.may_sweep() {
        return Err(ApiError::Standby(format!(
            "this replica is on standby: {} holds the leader lease and sweeps (dry runs are allowed here)",
            api.ctx
                .leader
                .holder()
                .as_deref()
                .unwrap_or("no replica yet")
        )));
    }
    api.cleanup_limiter
        .try_acquire()
        .map_err(|wait| ApiError::RateLimited(wait.as_secs_f64().ceil() as u64))
}

/// A queued task: its store, its id, and how it ends when waited for.
type Queued = (
    Resource,
    String,
    Option<tokio::sync::oneshot::Receiver<TaskResult>>,
);

/// Queues one task per store; the ids and, when waited for, how each ends.
fn submit(ctx: &ApiContext, tasks: Vec<CleanupTask>, wait: bool) -> Result<Vec<Queued>, ApiError> {
    let mut queued = Vec::new();
    for task in tasks {
        let resource = task.resource;
        let submitted = ctx.scheduler.submit(task, wait);
        let Some(id) = submitted.pushed.id() else {
            return Err(ApiError::Unavailable(
                "the cleanup queue is full of more urgent tasks: nothing queued".into(),
            ));
        };
        queued.push((resource, id.to_string(), submitted.done));
    }
    Ok(queued)
}

/// `POST /api/resources/cleanup`: queues a task per requested store and waits for their
/// runs (200, the seed's shape), or with `?async=true` answers 202 with the task ids (each
/// is its run's id, for `/api/resources/queue` and `/api/resources/runs`). A run whose
/// task ended without a record (it panicked) counts as failed.
pub async fn cleanup(
    Extract(api): Extract<Api>,
    query: Result<Query<CleanupQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let wait = !query.run_async && query.wait.unwrap_or(true);
    let ctx = &api.ctx;
    let request: CleanupBody = parse(body)?;
    let resources: Vec<Resource> = match request.resource_type.as_deref() {
        None => Resource::SWEPT
            .into_iter()
            .filter(|r| ctx.swept[*r])
            .collect(),
        Some(t) => {
            let r = Resource::from_resource_type(t).ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "unknown resource_type {t:?}: expected null, \"redis_cache\", \"qdrant_vectors\", \"minio_files\" or \"documents\""
                ))
            })?;
            if !ctx.swept[r] {
                return Err(ApiError::Unprocessable(format!(
                    "{t} is not configured on this janitor"
                )));
            }
            vec![r]
        }
    };
    let priority = match request.priority.as_deref() {
        None => Priority::Medium,
        Some(p) => serde_json::from_value::<Priority>(json!(p)).map_err(|_| {
            ApiError::Unprocessable(format!(
                "unknown priority {p:?}: expected LOW, MEDIUM, HIGH or CRITICAL"
            ))
        })?,
    };
    if resources.is_empty() {
        return Err(ApiError::Unprocessable(
            "no sweepable backend is configured".into(),
        ));
    }
    admit(&api, request.dry_run)?;
    let now = SystemTime::now();
    let mode = if request.dry_run {
        "dry run"
    } else {
        "cleanup"
    };
    let reason = match &request.reason {
        Some(r) => format!("manual {mode} via API: {r}"),
        None => format!("manual {mode} via API"),
    };
    let tasks = resources
        .iter()
        .map(|&r| {
            CleanupTask::new(
                run_id(r, now),
                priority,
                r,
                Trigger::Api,
                now,
                reason.clone(),
            )
            .dry_run(request.dry_run)
        })
        .collect();
    let queued = submit(ctx, tasks, wait)?;
    let run_ids: Vec<&str> = queued.iter().map(|(_, id, _)| id.as_str()).collect();
    if !wait {
        let body = json!({ "accepted": true, "run_ids": run_ids, "message": "cleanup queued" });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let (mut records, mut lost) = (Vec::new(), Vec::new());
    for (resource, _, done) in queued {
        match done {
            Some(done) => match done.await {
                Ok(Ok(record)) => records.push(record),
                Ok(Err(why)) => lost.push(format!("{resource}: {why}")),
                Err(_) => lost.push(format!("{resource}: its run ended without a result")),
            },
            None => lost.push(format!("{resource}: not queued")),
        }
    }
    Ok((StatusCode::OK, Json(results(&records, &lost))).into_response())
}

/// The seed's answer: `success`, `deleted_counts` with `redis`, `qdrant` and `minio` always
/// there (0 when that store did not run), `message`; plus `expired_counts` (keys given a
/// TTL), `bytes_freed` (measured: S3 object sizes, Redis MEMORY USAGE; Qdrant points are
/// not counted) and the run records.
fn results(records: &[RunRecord], lost: &[String]) -> Value {
    let mut deleted = serde_json::Map::new();
    let mut expired = serde_json::Map::new();
    for r in [Resource::Redis, Resource::Qdrant, Resource::S3] {
        deleted.insert(r.api_key().into(), json!(0));
        expired.insert(r.api_key().into(), json!(0));
    }
    for r in records {
        deleted.insert(r.resource.api_key().into(), json!(r.deleted));
        expired.insert(r.resource.api_key().into(), json!(r.expired));
    }
    let total: u64 = records.iter().map(|r| r.deleted).sum();
    let bytes_freed: u64 = records.iter().map(|r| r.bytes_freed).sum();
    let success = lost.is_empty() && records.iter().all(|r| r.outcome.is_success());
    let mut message = format!("Cleanup completed. Total items deleted: {total}");
    if !lost.is_empty() {
        message = format!("{message}; failed: {}", lost.join("; "));
    }
    json!({
        "success": success,
        "deleted_counts": deleted,
        "expired_counts": expired,
        "bytes_freed": bytes_freed,
        "message": message,
        "runs": records,
    })
}

/// `POST /api/resources/emergency {"reason"}` (seed 000's trigger): queues a CRITICAL cleanup
/// of every enabled store with the pressure TTLs; it starts as soon as each store is free.
/// Documents are never part of it: they are the application's data, not a cache under
/// pressure. 202 with the task ids.
pub async fn emergency(
    Extract(api): Extract<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: EmergencyBody = parse(body)?;
    let ctx = &api.ctx;
    let stores: Vec<Resource> = [Resource::Redis, Resource::Qdrant, Resource::S3]
        .into_iter()
        .filter(|r| ctx.swept[*r])
        .collect();
    if stores.is_empty() {
        return Err(ApiError::Unprocessable(
            "no sweepable backend is configured".into(),
        ));
    }
    admit(&api, false)?;
    let now = SystemTime::now();
    let reason = format!(
        "emergency via API: {}",
        request.reason.as_deref().unwrap_or("no reason given")
    );
    tracing::warn!(%reason, "emergency cleanup requested");
    let tasks = stores
        .iter()
        .map(|&r| {
            CleanupTask::new(
                run_id(r, now),
                Priority::Critical,
                r,
                Trigger::Emergency,
                now,
                reason.clone(),
            )
        })
        .collect();
    let queued = submit(ctx, tasks, false)?;
    let ids: Vec<&str> = queued.iter().map(|(_, id, _)| id.as_str()).collect();
    let names: Vec<&str> = stores.iter().map(|r| r.api_key()).collect();
    let body = json!({
        "success": true,
        "accepted": true,
        "run_ids": ids,
        "message": format!("Emergency cleanup queued for {}: {reason}", names.join(", ")),
    });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
