//! The endpoints. Shapes follow seed 003 where it has one.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, small_body};
use crate::engine::run_id;
use crate::queue::CleanupTask;
use crate::resource::{Priority, Resource};
use crate::runs::Trigger;
use crate::scheduler::TaskState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 once the config is loaded and every worker started; lists each backend's state. A
/// backend that is down does not make the janitor unready (it would take a sidecar's pod
/// out of service for a cache hiccup); its state says so, and so does `audit_log` when the
/// audit log cannot be written (every sweep fails closed until it can).
pub async fn readyz(Extract(api): Extract<Api>) -> Response {
    let started = api.ctx.started.load(Ordering::SeqCst);
    let backends: serde_json::Map<String, Value> = api
        .ctx
        .snapshot
        .all()
        .iter()
        .filter(|(r, _)| r.is_measured())
        .map(|(r, s)| {
            (
                r.api_key().to_string(),
                json!({ "status": s.status, "error": s.error }),
            )
        })
        .collect();
    let status = if started {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "ready": started,
        "config": "loaded",
        "workers_started": started,
        "backends": backends,
    });
    body["role"] = json!(api.ctx.leader.role());
    // without a trail nothing is deleted: every sweep fails closed until a write succeeds
    body["audit_log"] = match api.ctx.audit.last_error() {
        None => json!({ "status": "ok" }),
        Some(e) => json!({ "status": "error", "error": e }),
    };
    if let Some(dedup) = &api.ctx.dedup {
        // registers need the unique index: say so when it is missing or blocked
        body["dedup_index"] = json!(dedup.status());
    }
    (status, Json(body)).into_response()
}

pub async fn prometheus(Extract(api): Extract<Api>) -> Response {
    let ctx = &api.ctx;
    ctx.metrics.record_workers(&ctx.workers.snapshot());
    ctx.metrics.set_leader(ctx.leader.may_sweep());
    if let Some(drift) = ctx.drift.get() {
        ctx.metrics.record_drift(&drift);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.encode(),
    )
        .into_response()
}

/// Seed 003's shape: per store, `total_items`, `size_mb`, `usage_percentage`,
/// `cleanup_priority`, `oldest_age_hours`; plus `status`, `error` and `measured_at`.
pub async fn metrics(Extract(api): Extract<Api>) -> Json<Value> {
    let mut out = serde_json::Map::new();
    for (resource, s) in api.ctx.snapshot.all().iter() {
        if !resource.is_measured() {
            continue;
        }
        let u = s.usage.as_ref();
        out.insert(
            resource.api_key().to_string(),
            json!({
                "total_items": u.map(|u| u.total_items),
                "size_mb": u.and_then(|u| u.size_bytes).map(|b| round2(b as f64 / 1_048_576.0)),
                "usage_percentage": u.map(|u| round2(u.usage_fraction * 100.0)),
                "cleanup_priority": s.priority,
                "oldest_age_hours": u.and_then(|u| u.oldest_age_hours).map(round2),
                "status": s.status,
                "error": s.error,
                "measured_at": s.measured_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            }),
        );
    }
    // drift between the stores, once a document or S3 pass measured it
    if let Some(drift) = api.ctx.drift.get() {
        out.insert("drift".into(), json!(drift));
    }
    Json(Value::Object(out))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The seed's `queue_size` and `tasks`; `tasks` lists the running tasks too (`state`), and
/// `queue_size` counts the pending ones (`running` the others).
pub async fn queue(Extract(api): Extract<Api>) -> Json<Value> {
    let tasks = api.ctx.scheduler.snapshot();
    let running = tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .count();
    Json(json!({
        "queue_size": tasks.len() - running,
        "running": running,
        "tasks": tasks,
    }))
}

pub async fn runs(Extract(api): Extract<Api>) -> Json<Value> {
    Json(json!({ "runs": api.ctx.runs.list() }))
}

pub async fn workers(Extract(api): Extract<Api>) -> Json<Value> {
    Json(json!({ "role": api.ctx.leader.role(), "workers": api.ctx.workers.snapshot() }))
}

pub async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

#[derive(Deserialize)]
pub struct CleanupQuery {
    #[serde(default)]
    wait: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupBody {
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    priority: Option<String>,
}

/// `POST /api/resources/cleanup`: queues a task per requested store. 202 with the task ids
/// (each is its run's id), or with `?wait=true` 200 with the results (seed shape: success,
/// deleted_counts, message). A run whose task ended without a record (it panicked) counts
/// as failed.
pub async fn cleanup(
    Extract(api): Extract<Api>,
    Query(query): Query<CleanupQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ctx = &api.ctx;
    let body = small_body(body)?;
    let request: CleanupBody = if body.iter().all(u8::is_ascii_whitespace) {
        CleanupBody {
            resource_type: None,
            dry_run: false,
            priority: None,
        }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
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
    if !request.dry_run && !ctx.leader.may_sweep() {
        return Err(ApiError::Standby(format!(
            "this replica is on standby: {} holds the leader lease and sweeps (dry runs are allowed here)",
            ctx.leader.holder().as_deref().unwrap_or("no replica yet")
        )));
    }
    api.cleanup_limiter
        .try_acquire()
        .map_err(|wait| ApiError::RateLimited(wait.as_secs_f64().ceil() as u64))?;

    let now = SystemTime::now();
    let mut waits = Vec::new();
    let mut run_ids = Vec::new();
    for resource in resources {
        let mode = if request.dry_run {
            "dry run"
        } else {
            "cleanup"
        };
        let task = CleanupTask::new(
            run_id(resource, now),
            priority,
            resource,
            Trigger::Api,
            now,
            format!("manual {mode} via API"),
        )
        .dry_run(request.dry_run);
        let submitted = ctx.scheduler.submit(task, query.wait);
        let Some(id) = submitted.pushed.id() else {
            return Err(ApiError::Unavailable(
                "the cleanup queue is full of more urgent tasks: nothing queued".into(),
            ));
        };
        run_ids.push(id.to_string());
        waits.push((resource, submitted.done));
    }
    if !query.wait {
        let body = json!({ "accepted": true, "run_ids": run_ids, "message": "cleanup queued" });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let (mut records, mut lost) = (Vec::new(), Vec::new());
    for (resource, done) in waits {
        match done {
            Some(done) => match done.await {
                Ok(Ok(record)) => records.push(record),
                Ok(Err(why)) => lost.push(format!("{resource}: {why}")),
                Err(_) => lost.push(format!("{resource}: its run ended without a result")),
            },
            None => lost.push(format!("{resource}: not queued")),
        }
    }
    let deleted: serde_json::Map<String, Value> = records
        .iter()
        .map(|r| (r.resource.api_key().to_string(), json!(r.deleted)))
        .collect();
    let total: u64 = records.iter().map(|r| r.deleted).sum();
    let success = lost.is_empty() && records.iter().all(|r| r.outcome.is_success());
    let mut message = format!("Cleanup completed. Total items deleted: {total}");
    if !lost.is_empty() {
        message = format!("{message}; failed: {}", lost.join("; "));
    }
    let body = json!({
        "success": success,
        "deleted_counts": deleted,
        "message": message,
        "runs": records,
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}
