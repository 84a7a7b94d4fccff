//! The OpenAPI 3.1 document served at `/api/openapi.json`.
//!
//! Written by hand (a dozen routes do not need a generator); a test checks it covers exactly
//! [`super::ROUTES`], and the integration tests check the routes answer as documented.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_ok(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": {} } })
}

/// The document as served. Without an admin token nothing asks for one: no route is marked
/// bearer-secured and none answers 401 (the mutating ones answer 403, as documented).
pub fn served(token_configured: bool) -> Value {
    let mut doc = document();
    if !token_configured {
        if let Some(components) = doc["components"].as_object_mut() {
            components.remove("securitySchemes");
        }
        let operations = doc["paths"]
            .as_object_mut()
            .into_iter()
            .flat_map(|paths| paths.values_mut())
            .filter_map(Value::as_object_mut)
            .flat_map(|ops| ops.values_mut())
            .filter_map(Value::as_object_mut);
        for op in operations {
            op.remove("security");
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                responses.remove("401");
            }
        }
    }
    doc
}

/// The document, for a daemon with an admin token.
pub fn document() -> Value {
    let secured = json!([{ "bearer": [] }]);
    let unauthorized = error_response("Missing or invalid bearer token");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "resource-janitor admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Metrics, manual cleanup, queue, runs and worker state of the janitor."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "success": { "const": false },
                        "request_id": { "type": "string", "description": "Also in the x-request-id header and the log line" },
                        "error": { "type": "object", "properties": {
                            "code": { "type": "string" }, "message": { "type": "string" } } } }
                },
                "CleanupRequest": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "resource_type": { "enum": [null, "redis_cache", "qdrant_vectors", "minio_files", "documents"] },
                        "dry_run": { "type": "boolean", "default": false },
                        "priority": { "enum": [null, "LOW", "MEDIUM", "HIGH", "CRITICAL"], "description": "null or absent: MEDIUM" },
                        "reason": { "type": ["string", "null"], "description": "Kept in the task, the run record and the audit log" }
                    },
                    "example": { "resource_type": "redis_cache" }
                },
                "CleanupResult": {
                    "type": "object",
                    "required": ["success", "deleted_counts", "message"],
                    "properties": {
                        "success": { "type": "boolean" },
                        "deleted_counts": { "type": "object", "required": ["redis", "qdrant", "minio"],
                            "additionalProperties": { "type": "integer" } },
                        "expired_counts": { "type": "object", "additionalProperties": { "type": "integer" } },
                        "bytes_freed": { "type": "integer", "minimum": 0,
                            "description": "Measured: S3 object sizes from the listing, Redis MEMORY USAGE of each key as it was unlinked; Qdrant points are not counted" },
                        "message": { "type": "string" },
                        "runs": { "type": "array" }
                    },
                    "example": { "success": true, "deleted_counts": { "redis": 45, "qdrant": 0, "minio": 0 },
                        "message": "Cleanup completed. Total items deleted: 45" }
                }
            }
        },
        "paths": {
            "/healthz": { "get": { "summary": "Liveness", "responses": { "200": json_ok("Alive") } } },
            "/readyz": { "get": { "summary": "Readiness: config loaded, workers started, per-backend state",
                "responses": { "200": json_ok("Ready"), "503": json_ok("Starting") } } },
            "/metrics": { "get": { "summary": "Prometheus metrics (OpenMetrics text)",
                "responses": { "200": { "description": "Metrics", "content": { "application/openmetrics-text": {} } } } } },
            "/api/resources/metrics": { "get": { "summary": "Last measurement of every store",
                "security": secured, "responses": { "200": json_ok("Per store: total_items, size_mb, usage_percentage, cleanup_priority, oldest_age_hours"), "401": unauthorized } } },
            "/api/resources/cleanup": { "post": {
                "summary": "Queue a cleanup of each store (all configured stores when resource_type is null) and wait for the runs",
                "security": secured,
                "parameters": [{ "name": "async", "in": "query", "schema": { "type": "boolean" },
                    "description": "Answer 202 with the task ids at once instead of waiting" },
                    { "name": "wait", "in": "query", "schema": { "type": "boolean" },
                    "description": "false: the same as async=true" }],
                "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CleanupRequest" } } } },
                "responses": {
                    "200": { "description": "Runs finished: the seed's success, deleted_counts (redis, qdrant, minio always), message; plus expired_counts and runs",
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/CleanupResult" } } } },
                    "202": json_ok("Tasks queued: run_ids (each task's id is its run's id)"),
                    "400": error_response("Invalid JSON"),
                    "415": error_response("A Content-Type other than application/json"),
                    "401": unauthorized,
                    "403": error_response("No admin token configured"),
                    "409": error_response("Standby replica: another one holds the leader lease (dry runs allowed)"),
                    "413": error_response("Body over 64 KiB"),
                    "422": error_response("Unknown or unconfigured resource_type, unknown priority"),
                    "429": error_response("Rate limit exceeded; see Retry-After"),
                    "503": error_response("Queue full of more urgent tasks: nothing queued")
                } } },
            "/api/resources/emergency": { "post": {
                "summary": "Queue a CRITICAL cleanup of every enabled store (pressure TTLs; documents never)",
                "security": secured,
                "requestBody": { "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false,
                    "properties": { "reason": { "type": ["string", "null"] } }, "example": { "reason": "Memory usage critical" } } } } },
                "responses": {
                    "202": json_ok("Queued: success, accepted, run_ids, message"),
                    "400": error_response("Invalid JSON"),
                    "415": error_response("A Content-Type other than application/json"),
                    "401": unauthorized,
                    "403": error_response("No admin token configured"),
                    "409": error_response("Standby replica: another one holds the leader lease"),
                    "422": error_response("No store configured"),
                    "429": error_response("Rate limit exceeded (shared with cleanup); see Retry-After"),
                    "503": error_response("Queue full of more urgent tasks")
                } } },
            "/api/resources/queue": { "get": { "summary": "Cleanup tasks: running ones first, then pending ones in the order they will start", "security": secured,
                "responses": { "200": json_ok("queue_size (pending), running, tasks[id, priority, resource_type, target_id, created_at, reason, source, dry_run, state, started_at]"), "401": unauthorized } } },
            "/": { "get": { "summary": "The status page (HTML; its data comes from the endpoints below)",
                "responses": { "200": { "description": "The page", "content": { "text/html": {} } } } } },
            "/api/session": { "post": {
                "summary": "The status page's sign-in: sets an HttpOnly, SameSite=Strict cookie accepted on GET routes only",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object",
                    "additionalProperties": false, "required": ["token"],
                    "properties": { "token": { "type": "string", "minLength": 1 } } } } } },
                "responses": {
                    "204": { "description": "Signed in (Set-Cookie)" },
                    "400": error_response("Invalid JSON"),
                    "415": error_response("A Content-Type other than application/json"),
                    "401": error_response("Wrong token"),
                    "403": error_response("No admin token configured: no sign-in needed"),
                    "429": error_response("More than 10 tries a minute")
                } } },
            "/api/resources/runs": { "get": { "summary": "Runs from the history, newest first", "security": secured,
                "parameters": [
                    { "name": "resource", "in": "query", "schema": { "enum": ["redis", "redis_cache", "qdrant", "qdrant_vectors", "minio", "s3", "minio_files", "mongodb", "documents"] } },
                    { "name": "outcome", "in": "query", "schema": { "enum": ["succeeded", "dry_run", "aborted_cap", "failed_closed", "failed", "cancelled", "disabled", "not_leader"] } },
                    { "name": "since", "in": "query", "schema": { "type": "string", "format": "date-time" } },
                    { "name": "until", "in": "query", "schema": { "type": "string", "format": "date-time" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 } },
                    { "name": "offset", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": 1000000000, "default": 0 } }],
                "responses": { "200": json_ok("runs, total, limit, offset"), "400": error_response("Malformed parameter"),
                    "401": unauthorized, "422": error_response("Unknown resource or outcome, bad time, limit out of range"),
                    "503": error_response("The history cannot be read") } } },
            "/api/resources/runs/{id}": { "get": { "summary": "One run from the history", "security": secured,
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": { "200": json_ok("The run record"), "401": unauthorized, "404": error_response("No such run"),
                    "503": error_response("The history cannot be read") } } },
            "/api/resources/history": { "get": { "summary": "A store's usage and deletions over a period (at most 288 points each)", "security": secured,
                "parameters": [
                    { "name": "resource", "in": "query", "required": true, "schema": { "enum": ["redis", "redis_cache", "qdrant", "qdrant_vectors", "minio", "s3", "minio_files", "mongodb", "documents"] } },
                    { "name": "period", "in": "query", "schema": { "type": "string", "default": "24h", "pattern": "^[0-9]+(m|min|h|d|w)$" }, "description": "24h, 7d, 30d or any duration from 1 minute to 1 year" }],
                "responses": { "200": json_ok("resource, period, step_secs, usage[at, usage_percentage, total_items, size_mb], deletions[at, deleted, expired, bytes_freed, runs]"),
                    "400": error_response("Missing parameter"), "401": unauthorized, "422": error_response("Unknown resource or period"),
                    "503": error_response("The history cannot be read") } } },
            "/api/resources/report": { "get": { "summary": "The report of a period ending now: figures per store, issues detected, recommendations", "security": secured,
                "parameters": [
                    { "name": "period", "in": "query", "schema": { "type": "string", "default": "24h", "pattern": "^[0-9]+(m|min|h|d|w)$" } },
                    { "name": "format", "in": "query", "schema": { "enum": ["json", "md"], "default": "json" } }],
                "responses": { "200": { "description": "period, since, until, generated_at, stores{usage_now, usage_min, usage_max, priority_now, deleted, expired, bytes_freed, runs, failures, emergencies, alerts}, drift, issues[severity, resource, code, message], recommendations",
                        "content": { "application/json": {}, "text/markdown": {} } },
                    "400": error_response("Malformed parameter"), "401": unauthorized, "422": error_response("Unknown period or format"),
                    "503": error_response("The history cannot be read") } } },
            "/api/resources/breakdown": { "get": {
                "summary": "What uses a store: Redis keys and S3 objects by key prefix, Qdrant points by collection (walked at most every 5 minutes, cached)",
                "security": secured,
                "parameters": [
                    { "name": "resource", "in": "query", "required": true,
                        "schema": { "enum": ["redis", "redis_cache", "minio", "s3", "minio_files", "qdrant", "qdrant_vectors"] } },
                    { "name": "depth", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 8, "default": 1 },
                        "description": "Segments per prefix (split on ':' for Redis, '/' for S3)" },
                    { "name": "top", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 20 },
                        "description": "Groups listed, largest by bytes first; the rest are summed in `other`" },
                    { "name": "refresh", "in": "query", "schema": { "type": "boolean", "default": false },
                        "description": "Walk the store again even if the cached breakdown is recent" }],
                "responses": {
                    "200": json_ok("resource, generated_at, duration_secs, depth, items, bytes, bytes_source, groups[prefix, items, bytes, without_ttl (Redis), bytes_older_than_ttl (S3), ages (histogram), oldest_age_hours and timestamp_indexed (Qdrant)], other, notes"),
                    "202": json_ok("The walk is still running after 25 s: ask again"),
                    "400": error_response("Missing or malformed parameter"),
                    "401": unauthorized,
                    "422": error_response("Unknown or unconfigured store, depth or top out of range"),
                    "503": error_response("The store failed during the walk")
                } } },
            "/api/dedup/check": { "post": {
                "summary": "SHA-256 of the streamed body, and the user's document holding it",
                "security": secured,
                "parameters": [{ "name": "user_id", "in": "query", "required": true, "schema": { "type": "string", "minLength": 1 } }],
                "requestBody": { "content": { "application/octet-stream": {} } },
                "responses": {
                    "200": json_ok("sha256, size, duplicate, document_id"),
                    "400": error_response("Missing user_id"),
                    "401": unauthorized,
                    "413": error_response("Body over JANITOR_DEDUP_MAX_BYTES (not read to the end)"),
                    "503": error_response("MongoDB unavailable: duplicate status unknown")
                } } },
            "/api/dedup/lookup": { "post": {
                "summary": "The user's document holding a SHA-256, without an upload",
                "security": secured,
                "requestBody": { "content": { "application/json": { "schema": { "type": "object",
                    "required": ["user_id", "sha256"],
                    "properties": { "user_id": { "type": "string", "minLength": 1 }, "sha256": { "type": "string", "pattern": "^[0-9a-fA-F]{64}$" } } } } } },
                "responses": {
                    "200": json_ok("sha256, duplicate, document_id"),
                    "400": error_response("Missing user_id, sha256 not 64 hex digits, invalid JSON"),
                    "415": error_response("A Content-Type other than application/json"),
                    "401": unauthorized,
                    "503": error_response("MongoDB unavailable")
                } } },
            "/api/dedup/register": { "post": {
                "summary": "Record that a document holds a SHA-256 (the unique index decides races)",
                "security": secured,
                "requestBody": { "content": { "application/json": { "schema": { "type": "object",
                    "required": ["user_id", "sha256", "document_id"],
                    "properties": { "user_id": { "type": "string", "minLength": 1 }, "sha256": { "type": "string" },
                        "document_id": { "type": "string" }, "object_key": { "type": "string" } } } } } },
                "responses": {
                    "201": json_ok("Recorded"),
                    "200": json_ok("Already recorded for this document"),
                    "400": error_response("Missing field, sha256 not 64 hex digits, invalid JSON"),
                    "415": error_response("A Content-Type other than application/json"),
                    "401": unauthorized,
                    "403": error_response("No admin token configured"),
                    "404": error_response("No such document of this user (register mode document)"),
                    "409": json_ok("Another document holds the hash: its document_id"),
                    "503": error_response("MongoDB unavailable, or the unique index is missing")
                } } },
            "/api/workers": { "get": { "summary": "Each worker's state", "security": secured,
                "responses": { "200": json_ok("role (leader or standby), workers"), "401": unauthorized } } },
            "/api/openapi.json": { "get": { "summary": "This document", "security": secured,
                "responses": { "200": json_ok("OpenAPI document"), "401": unauthorized } } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::ROUTES;

    #[test]
    fn without_a_token_no_route_asks_for_one() {
        let with = super::served(true);
        assert_eq!(with, super::document());
        let text = with.to_string();
        assert!(text.contains("\"security\"") && text.contains("\"401\""));
        let without = super::served(false).to_string();
        assert!(!without.contains("\"security\""), "{without}");
        assert!(!without.contains("\"401\"") && !without.contains("securitySchemes"));
        assert!(without.contains("No admin token configured"), "403s stay");
    }

    #[test]
    fn documents_exactly_the_routes() {
        let doc = super::document();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(p, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.to_uppercase(), p.clone()))
            })
            .collect();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        routes.sort();
        assert_eq!(documented, routes);
    }
}
