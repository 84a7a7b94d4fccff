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
use crate::engine::{RunRequest, run_id};
use crate::resource::{Priority, Resource};
use crate::runs::Trigger;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 once the config is loaded and every worker started; lists each backend's state. A
/// backend that is down does not make the janitor unready (it would take a sidecar's pod
/// out of service for a cache hiccup); its state says so.
pub async fn readyz(Extract(api): Extract<Api>) -> Response {
    let started = api.state.started.load(Ordering::SeqCst);
    let backends: serde_json::Map<String, Value> = api
        .state
        .snapshot
        .all()
        .into_iter()
        .map(|(k, s)| {
            (
                k.to_string(),
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
    body["role"] = json!(api.state.role());
    if let Some(dedup) = &api.state.dedup {
        // registers need the unique index: say so when it is missing or blocked
        body["dedup_index"] = json!(dedup.status());
    }
    (status, Json(body)).into_response()
}

pub async fn prometheus(Extract(api): Extract<Api>) -> Response {
    api.state
        .metrics
        .record_workers(&api.state.workers.snapshot());
    api.state
        .metrics
        .set_queue_size(api.state.lock_queue().len());
    api.state.metrics.set_leader(api.state.may_sweep());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.state.metrics.encode(),
    )
        .into_response()
}

/// Seed 003's shape: per store, `total_items`, `size_mb`, `usage_percentage`,
/// `cleanup_priority`, `oldest_age_hours`; plus `status`, `error` and `measured_at`.
pub async fn metrics(Extract(api): Extract<Api>) -> Json<Value> {
    let mut out = serde_json::Map::new();
    for (key, s) in api.state.snapshot.all() {
        let u = s.usage.as_ref();
        out.insert(
            key.to_string(),
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
    Json(Value::Object(out))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub async fn queue(Extract(api): Extract<Api>) -> Json<Value> {
    let tasks = api.state.lock_queue().snapshot();
    Json(json!({ "queue_size": tasks.len(), "tasks": tasks }))
}

pub async fn runs(Extract(api): Extract<Api>) -> Json<Value> {
    Json(json!({ "runs": api.state.engine.runs().list() }))
}

pub async fn workers(Extract(api): Extract<Api>) -> Json<Value> {
    Json(json!({ "role": api.state.role(), "workers": api.state.workers.snapshot() }))
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

/// `POST /api/resources/cleanup`: starts a run per requested resource. 202 with the run ids,
/// or with `?wait=true` 200 with the results (seed shape: success, deleted_counts, message).
pub async fn cleanup(
    Extract(api): Extract<Api>,
    Query(query): Query<CleanupQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if api.state.settings.admin.token.is_none() {
        return Err(ApiError::Forbidden(
            "no admin token configured (JANITOR_ADMIN_TOKEN or JANITOR_ADMIN_TOKEN_FILE): \
             cleanups cannot be triggered over HTTP"
                .into(),
        ));
    }
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
    let resources = match request.resource_type.as_deref() {
        None => Resource::ALL
            .into_iter()
            .filter(|r| api.state.engine.enabled(*r))
            .collect(),
        Some(t) => {
            let r = Resource::from_resource_type(t).ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "unknown resource_type {t:?}: expected null, \"redis_cache\", \"qdrant_vectors\" or \"minio_files\""
                ))
            })?;
            if !api.state.engine.enabled(r) {
                return Err(ApiError::Unprocessable(format!(
                    "{t} is not configured on this janitor"
                )));
            }
            vec![r]
        }
    };
    let priority = match request.priority.as_deref() {
        None => None,
        Some(p) => Some(serde_json::from_value::<Priority>(json!(p)).map_err(|_| {
            ApiError::Unprocessable(format!(
                "unknown priority {p:?}: expected LOW, MEDIUM, HIGH or CRITICAL"
            ))
        })?),
    };
    if resources.is_empty() {
        return Err(ApiError::Unprocessable(
            "no sweepable backend is configured".into(),
        ));
    }
    if !request.dry_run
        && let Some(lease) = api.state.leadership.as_ref().filter(|l| !l.is_leader())
    {
        return Err(ApiError::Standby(format!(
            "this replica is on standby: {} holds the leader lease and sweeps (dry runs are allowed here)",
            lease.holder().as_deref().unwrap_or("no replica yet")
        )));
    }
    api.cleanup_limiter
        .try_acquire()
        .map_err(|wait| ApiError::RateLimited(wait.as_secs_f64().ceil() as u64))?;

    let now = SystemTime::now();
    let mut handles = Vec::new();
    let mut run_ids = Vec::new();
    for resource in resources {
        let id = run_id(resource, now);
        run_ids.push(id.clone());
        let state = api.state.clone();
        let req = RunRequest {
            id: Some(id),
            resource,
            trigger: Trigger::Api,
            dry_run: request.dry_run,
            priority,
        };
        handles.push(
            api.state
                .tracker
                .spawn(async move { state.engine.run(req, SystemTime::now()).await }),
        );
    }
    if !query.wait {
        let body = json!({ "accepted": true, "run_ids": run_ids, "message": "cleanup started" });
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let mut records = Vec::new();
    for h in handles {
        if let Ok(result) = h.await {
            records.push(result.record);
        }
    }
    let deleted: serde_json::Map<String, Value> = records
        .iter()
        .map(|r| (r.resource.metrics_key().to_string(), json!(r.deleted)))
        .collect();
    let total: u64 = records.iter().map(|r| r.deleted).sum();
    let success = records.iter().all(|r| r.outcome.is_success());
    let body = json!({
        "success": success,
        "deleted_counts": deleted,
        "message": format!("Cleanup completed. Total items deleted: {total}"),
        "runs": records,
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}
