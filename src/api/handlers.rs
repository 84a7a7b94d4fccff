//! The endpoints. Shapes follow seed 003 where it has one.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Api;
use crate::scheduler::TaskState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// How long readiness waits for the first measurement of every store.
const FIRST_MEASUREMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// 200 once the config is loaded, every worker started and every store measured once (or
/// 10 s passed); lists each backend's state. A
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
    // the first measurement of every store is awaited (bounded), so that a ready daemon
    // answers /api/resources/metrics with numbers
    let measured = api
        .ctx
        .snapshot
        .all()
        .iter()
        .all(|(_, s)| s.status != crate::snapshot::Status::Pending);
    let waited_enough = api.ctx.started_at.elapsed() >= FIRST_MEASUREMENT_WAIT;
    let ready = started && (measured || waited_enough);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "ready": ready,
        "config": "loaded",
        "workers_started": started,
        "measured": measured,
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
                "usage_percentage": u.and_then(|u| u.usage_fraction).map(|f| round2(f * 100.0)),
                "cleanup_priority": s.priority,
                "oldest_age_hours": u.and_then(|u| u.oldest_age_hours).map(round2),
                "status": s.status,
                "error": s.error,
                "measured_at": s.measured_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                "size_source": u.and_then(|u| u.size_source),
                "oldest_age_source": u.and_then(|u| u.oldest_source),
                "notes": notes(s),
            }),
        );
    }
    // drift between the stores, once a document or S3 pass measured it
    if let Some(drift) = api.ctx.drift.get() {
        out.insert("drift".into(), json!(drift));
    }
    Json(Value::Object(out))
}

/// Why a figure is null: the measurement's own notes, or why there is none yet.
fn notes(s: &crate::snapshot::ResourceState) -> Vec<String> {
    match (&s.usage, s.status) {
        (Some(u), _) => u.notes.clone(),
        (None, crate::snapshot::Status::Disabled) => vec!["not configured".into()],
        (None, crate::snapshot::Status::Pending) => vec!["not measured yet".into()],
        (None, _) => vec![format!(
            "no measurement succeeded yet: {}",
            s.error.as_deref().unwrap_or("unknown error")
        )],
    }
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

pub async fn workers(Extract(api): Extract<Api>) -> Json<Value> {
    Json(json!({ "role": api.ctx.leader.role(), "workers": api.ctx.workers.snapshot() }))
}

pub async fn openapi(Extract(api): Extract<Api>) -> Json<Value> {
    Json(super::openapi::served(api.ctx.admin.token.is_some()))
}
