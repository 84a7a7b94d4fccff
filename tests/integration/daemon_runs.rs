//! The daemon running sweeps: manual cleanup (the seed's 200, 202 with ?async=true, 429), graceful shutdown during a
//! long sweep, and a worker that backs off and recovers when its server dies.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::require_services;
use crate::support::daemon::{self, Daemon, TOKEN};
use crate::support::{Namespace, fill_redis, process};

async fn cleanup(d: &Daemon, query: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(d.url(&format!("/api/resources/cleanup{query}")))
        .bearer_auth(TOKEN)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn manual_cleanup_accepted_waited_and_rate_limited() {
    let svc = require_services!();
    let ns = Namespace::new("daemon-cleanup");
    let url = ns.fresh_redis(svc).await;
    let dir = daemon::tempdir();
    let mut env = daemon::env_for(svc, &ns, dir.path());
    env.push(("JANITOR_REDIS_POLICIES".into(), "tmp:*=delete".into()));
    let d = Daemon::start(env, dir).await;
    // the Redis loop sweeps once at start: seed after that pass
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.get_json("/api/resources/runs").await["runs"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the loop never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fill_redis(&url, "tmp:", 10).await;
    fill_redis(&url, "keep:", 90).await;

    let r = cleanup(
        &d,
        "?async=true",
        r#"{"resource_type": "redis_cache", "dry_run": true}"#,
    )
    .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    let run_id = body["run_ids"][0].as_str().unwrap().to_string();
    assert!(run_id.starts_with("redis-"));

    // a client written against the seed: no query, the seed's body, the seed's answer
    let r = cleanup(&d, "", r#"{"resource_type": "redis_cache"}"#).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], true, "{body:#}");
    assert_eq!(
        body["deleted_counts"],
        serde_json::json!({"redis": 10, "qdrant": 0, "minio": 0}),
        "every store of the seed, as integers"
    );
    assert_eq!(
        body["message"],
        "Cleanup completed. Total items deleted: 10"
    );
    // MEMORY USAGE of each key as it was unlinked: a key costs at least its name and value
    let freed = body["bytes_freed"]
        .as_u64()
        .expect("bytes_freed is a count");
    assert!((10 * 16..10 * 4096).contains(&freed), "{freed}");
    // the OpenAPI document's example and schema agree with the real answer
    let doc = d.get_json("/api/openapi.json").await;
    let schema = &doc["components"]["schemas"]["CleanupResult"];
    for key in schema["required"].as_array().unwrap() {
        assert!(
            body.get(key.as_str().unwrap()).is_some(),
            "{key} missing: {body:#}"
        );
    }
    let example = &schema["example"];
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&example["deleted_counts"]),
        keys(&body["deleted_counts"])
    );
    for key in keys(example) {
        assert_eq!(
            std::mem::discriminant(&example[&key]),
            std::mem::discriminant(&body[&key]),
            "{key}: the example's type is the answer's"
        );
    }

    let runs = d.get_json("/api/resources/runs").await;
    let runs = runs["runs"].as_array().unwrap();
    let dry = runs
        .iter()
        .find(|r| r["id"] == run_id.as_str())
        .expect("the 202 run is listed");
    assert_eq!(
        (dry["outcome"].as_str(), dry["planned_deletions"].as_u64()),
        (Some("dry_run"), Some(10))
    );
    assert!(
        runs.iter()
            .any(|r| r["outcome"] == "succeeded" && r["deleted"] == 10 && r["trigger"] == "api")
    );

    // 6 per minute: two used above, four more pass, the seventh is refused
    for _ in 0..4 {
        let query = "?async=true";
        assert_eq!(
            cleanup(&d, query, r#"{"dry_run": true}"#).await.status(),
            202
        );
    }
    let r = cleanup(&d, "?async=true", r#"{"dry_run": true}"#).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "Retry-After {retry}");
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        (&body["success"], body["request_id"].as_str()),
        (&Value::Bool(false), Some(id.as_str()))
    );
    assert!(
        d.output().contains(&id),
        "the refusal is logged with its request id"
    );
}

#[tokio::test]
async fn sigterm_during_a_long_sweep_exits_in_time_with_the_audit_log_flushed() {
    let svc = require_services!();
    let ns = Namespace::new("daemon-sigterm");
    let url = ns.fresh_redis(svc).await;
    fill_redis(&url, "tmp:", 12_000).await;
    let dir = daemon::tempdir();
    let mut env = daemon::env_for(svc, &ns, dir.path());
    env.extend([
        (
            "JANITOR_REDIS_POLICIES".to_string(),
            "tmp:*=delete".to_string(),
        ),
        ("JANITOR_MAX_DELETE_FRACTION".to_string(), "1".to_string()),
        ("JANITOR_REDIS_SCAN_COUNT".to_string(), "100".to_string()),
        // slow on purpose: ~3 s of planning, then batches of 5000 keys, ~1.25 s each
        (
            "JANITOR_REDIS_MAX_OPS_PER_SEC".to_string(),
            "4000".to_string(),
        ),
        (
            "REDIS_CLEANUP_INTERVAL_SECONDS".to_string(),
            "3600".to_string(),
        ),
    ]);
    let mut d = Daemon::start(env, dir).await;
    let audit = d.audit_log();
    // wait until the sweep is applying (its first batch is in the audit log)
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .count()
        < 1
    {
        assert!(
            Instant::now() < deadline,
            "sweep never started applying: {}",
            d.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let signalled = Instant::now();
    d.signal("TERM");
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("exited within 10 s");
    let took = signalled.elapsed();
    assert!(status.success(), "exit 0: {status:?}\n{}", d.output());
    let records = crate::support::applied_batches(&audit);
    let count = |r: &Value, k: &str| r[k].as_array().unwrap().len();
    let audited: usize = records
        .iter()
        .map(|r| count(r, "items") - count(r, "skipped") - count(r, "failed"))
        .sum();
    let mut con = crate::support::redis_con(url.as_str()).await;
    let left: usize = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    let summary: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "items={} skipped={}",
                count(r, "items"),
                count(r, "skipped")
            )
        })
        .collect();
    assert_eq!(
        12_000 - left,
        audited,
        "every deleted key is in the audit log, and only those: {summary:?}\n{}",
        d.output()
    );
    assert!(
        left > 0,
        "the sweep was stopped before the end: {summary:?}\n{}",
        d.output()
    );
    let out = d.output();
    assert!(
        out.contains("shutdown: remaining batches not applied"),
        "{out}"
    );
    eprintln!("stopped {took:?} after SIGTERM; {audited} keys deleted and audited, {left} left");
}

#[tokio::test]
async fn worker_backs_off_while_redis_is_down_and_recovers() {
    let svc = require_services!();
    let mut server = process::redis(svc, &[]);
    let ns = Namespace::new("daemon-redis-down");
    let dir = daemon::tempdir();
    let mut env = daemon::env_for(svc, &ns, dir.path());
    env.retain(|(k, _)| k != "REDIS_URL");
    env.extend([
        (
            "REDIS_URL".to_string(),
            format!("redis://127.0.0.1:{}/0", server.port),
        ),
        (
            "REDIS_CLEANUP_INTERVAL_SECONDS".to_string(),
            "1".to_string(),
        ),
        (
            "JANITOR_BACKEND_TIMEOUT_SECONDS".to_string(),
            "1".to_string(),
        ),
        ("JANITOR_BACKOFF_MAX_SECONDS".to_string(), "2".to_string()),
    ]);
    let d = Daemon::start(env, dir).await;
    let redis_worker = |w: &Value| {
        w["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "redis")
            .cloned()
            .unwrap()
    };
    server.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = redis_worker(&d.get_json("/api/workers").await);
        if w["state"] == "failed" && w["consecutive_failures"].as_u64() >= Some(2) {
            assert!(w["last_error"].as_str().unwrap().contains("redis"), "{w}");
            break;
        }
        assert!(Instant::now() < deadline, "worker never failed: {w}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reqwest::get(d.url("/healthz")).await.unwrap().status(),
        200,
        "the daemon stays up"
    );
    server.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = redis_worker(&d.get_json("/api/workers").await);
        if w["consecutive_failures"] == 0 && w["last_error"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "worker never recovered: {w}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn critical_usage_queues_an_emergency_run_with_the_pressure_ttl() {
    let svc = require_services!();
    let ns = Namespace::new("daemon-critical");
    let url = ns.fresh_redis(svc).await;
    fill_redis(&url, "doc_segments:", 20).await;
    let dir = daemon::tempdir();
    let mut env = daemon::env_for(svc, &ns, dir.path());
    env.extend([
        // the server's used_memory (about 1 MB at least) is far above a 0.5 MB budget
        ("MAX_REDIS_MEMORY_MB".to_string(), "0.5".to_string()),
        (
            "REDIS_CLEANUP_INTERVAL_SECONDS".to_string(),
            "3600".to_string(),
        ),
        (
            "JANITOR_REDIS_PRESSURE_TTL_HOURS".to_string(),
            "0.25".to_string(),
        ),
    ]);
    let d = Daemon::start(env, dir).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let run = loop {
        let runs = d.get_json("/api/resources/runs").await;
        if let Some(r) = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["trigger"] == "monitor")
        {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no queued run: {runs:#}\n{}",
            d.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run["priority"], "CRITICAL");
    assert_eq!(run["ttl_secs"], 900.0, "pressure TTL");
    let notes = run["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("freed ")),
        "bytes freed reported: {notes:?}"
    );
    let m = d.get_json("/api/resources/metrics").await;
    assert_eq!(m["redis"]["cleanup_priority"], "CRITICAL");
    assert!(m["redis"]["usage_percentage"].as_f64().unwrap() > 100.0);
    let text = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("janitor_emergency_cleanups_total{resource=\"redis\"}"),
        "{text}"
    );
    // the loop runs back to back at CRITICAL: the worker shows it
    let w = d.get_json("/api/workers").await;
    let redis = w["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "redis")
        .unwrap()
        .clone();
    assert!(
        ["throttled", "busy"].contains(&redis["state"].as_str().unwrap()),
        "{redis}"
    );
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let svc = require_services!();
    // a "server" that accepts connections and never answers: the monitor hangs on it
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hole.incoming() {
            held.push(conn);
        }
    });
    let ns = Namespace::new("daemon-second-signal");
    let dir = daemon::tempdir();
    let mut env = daemon::env_for(svc, &ns, dir.path());
    env.retain(|(k, _)| k != "REDIS_URL" && k != "JANITOR_BACKEND_TIMEOUT_SECONDS");
    env.extend([
        (
            "REDIS_URL".to_string(),
            format!("redis://127.0.0.1:{port}/0"),
        ),
        (
            "JANITOR_BACKEND_TIMEOUT_SECONDS".to_string(),
            "60".to_string(),
        ),
        ("JANITOR_SHUTDOWN_TIMEOUT".to_string(), "60".to_string()),
    ]);
    let mut d = Daemon::start(env, dir).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.signal("TERM");
    assert!(
        d.wait_exit(Duration::from_secs(1)).is_none(),
        "the first signal waits for busy workers"
    );
    let second = Instant::now();
    d.signal("TERM");
    let status = d
        .wait_exit(Duration::from_secs(2))
        .expect("the second signal exits at once");
    assert_eq!(status.code(), Some(130));
    assert!(second.elapsed() < Duration::from_secs(2));
}
