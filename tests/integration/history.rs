//! The history across restarts, the report's numbers against the runs, a corrupt history
//! file, and the status page's sign-in, against the real daemon and Redis.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::require_services;
use crate::support::daemon::{self, Daemon, TOKEN};
use crate::support::{self, Namespace, Services};

/// A Redis-only daemon deleting `tmp:*`, its history at `history`.
async fn start(svc: &Services, ns: &Namespace, history: &Path) -> Daemon {
    let dir = daemon::tempdir();
    let mut env = daemon::redis_env(svc, ns, dir.path());
    env.extend(
        [
            ("JANITOR_REDIS_POLICIES", "tmp:*=delete"),
            ("JANITOR_MAX_DELETE_FRACTION", "1"),
            ("JANITOR_HISTORY_PATH", history.to_str().unwrap()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let d = Daemon::start(env, dir).await;
    // the Redis timer sweeps once at start: the test's keys are written after that pass
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let workers = d.get_json("/api/workers").await;
        let swept =
            workers["workers"].as_array().unwrap().iter().any(|w| {
                w["name"] == "redis" && w["runs"].as_u64() >= Some(1) && w["state"] != "busy"
            });
        if swept {
            return d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Redis timer never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cleanup(d: &Daemon) -> Value {
    let r = reqwest::Client::new()
        .post(d.url("/api/resources/cleanup"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"resource_type": "redis_cache", "reason": "history test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn stop(mut d: Daemon) {
    d.signal("TERM");
    assert!(
        d.wait_exit(Duration::from_secs(20)).is_some(),
        "{}",
        d.output()
    );
}

#[tokio::test]
async fn runs_and_measurements_survive_a_restart_and_the_report_adds_them_up() {
    let svc = require_services!();
    let ns = Namespace::new("history-restart");
    let url = ns.fresh_redis(svc).await;
    let keep = daemon::tempdir();
    let history = keep.path().join("history.sqlite");

    let d = start(svc, &ns, &history).await;
    support::fill_redis(&url, "tmp:a:", 30).await;
    let first = cleanup(&d).await;
    assert_eq!(first["deleted_counts"]["redis"], 30, "{first:#}");
    let id = first["runs"][0]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await; // a monitoring cycle or two
    stop(d);

    let d = start(svc, &ns, &history).await;
    support::fill_redis(&url, "tmp:b:", 12).await;
    cleanup(&d).await;
    let (_, runs) = d.get("/api/resources/runs?resource=redis&limit=100").await;
    let listed: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&id.as_str()),
        "the run before the restart: {runs:#}"
    );
    assert_eq!(runs["total"].as_u64().unwrap() as usize, listed.len());
    let (status, one) = d.get(&format!("/api/resources/runs/{id}")).await;
    assert_eq!((status, one["deleted"].as_u64()), (200, Some(30)));
    assert_eq!(one["reason"], "manual cleanup via API: history test");
    let (status, _) = d.get("/api/resources/runs/no-such-run").await;
    assert_eq!(status, 404);

    // any RFC 3339 offset: the same instant in UTC and in Madrid's winter time
    let (_, utc) = d
        .get("/api/resources/runs?since=2000-01-01T00:00:00Z")
        .await;
    let (status, madrid) = d
        .get("/api/resources/runs?since=2000-01-01T01:00:00%2B01:00")
        .await;
    assert_eq!((status, &madrid["total"]), (200, &utc["total"]));

    // pages: one at a time, newest first, nothing twice
    let (_, page) = d
        .get("/api/resources/runs?resource=redis&limit=1&offset=1")
        .await;
    assert_eq!(page["runs"][0]["id"], listed[1]);

    let (status, series) = d
        .get("/api/resources/history?resource=redis&period=24h")
        .await;
    assert_eq!(status, 200, "{series}");
    assert!(
        !series["usage"].as_array().unwrap().is_empty(),
        "measured before and after the restart"
    );
    let charted: u64 = series["deletions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["deleted"].as_u64().unwrap())
        .sum();

    // the report's figures are the runs' sums
    let (status, report) = d.get("/api/resources/report?period=24h").await;
    assert_eq!(status, 200, "{report}");
    let applied: u64 = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dry_run"] == false)
        .map(|r| r["deleted"].as_u64().unwrap())
        .sum();
    let redis = &report["stores"]["redis"];
    assert_eq!(redis["deleted"].as_u64(), Some(applied));
    assert_eq!(charted, applied);
    assert!(applied >= 42, "{applied}");
    let bytes: u64 = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bytes_freed"].as_u64().unwrap())
        .sum();
    assert_eq!(redis["bytes_freed"].as_u64(), Some(bytes));
    assert_eq!(
        redis["runs"]["succeeded"].as_u64().unwrap() as usize,
        listed.len()
    );
    let (status, md) = d.get("/api/resources/report?period=24h&format=md").await;
    assert_eq!(status, 200);
    let md = md.as_str().unwrap();
    assert!(md.starts_with("# Janitor report: 24h"), "{md}");
    assert!(md.contains(&format!("| {applied} |")), "{md}");

    // the command line reads the same file, while the daemon writes it
    let out = daemon::tempdir();
    let env: Vec<(String, String)> = [
        ("REDIS_URL", url.as_str()),
        ("JANITOR_HISTORY_PATH", history.to_str().unwrap()),
        (
            "JANITOR_AUDIT_LOG",
            out.path().join("audit.jsonl").to_str().unwrap(),
        ),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    let status = daemon::janitor(&env, &out)
        .args(["report", "--period", "24h", "--format", "json"])
        .status()
        .unwrap();
    let printed = std::fs::read_to_string(out.path().join("stdout.log")).unwrap();
    assert!(status.success(), "{printed}");
    let cli: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(cli["stores"]["redis"]["deleted"].as_u64(), Some(applied));
    let status = daemon::janitor(&env, &out)
        .args(["report", "--period", "soon"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));

    for bad in [
        "/api/resources/report?period=forever",
        "/api/resources/report?format=pdf",
        "/api/resources/history?resource=nope",
        "/api/resources/runs?limit=0",
        "/api/resources/runs?since=yesterday",
        "/api/resources/runs?outcome=great",
    ] {
        let (status, body) = d.get(bad).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["request_id"].is_string());
    }
}

#[tokio::test]
async fn a_corrupt_history_file_is_moved_aside_and_cleaning_goes_on() {
    let svc = require_services!();
    let ns = Namespace::new("history-corrupt");
    let url = ns.fresh_redis(svc).await;
    let keep = daemon::tempdir();
    let history = keep.path().join("history.sqlite");
    std::fs::write(&history, vec![0xA5u8; 8192]).unwrap();
    let d = start(svc, &ns, &history).await;
    support::fill_redis(&url, "tmp:", 10).await;
    assert_eq!(cleanup(&d).await["deleted_counts"]["redis"], 10);
    let (_, runs) = d.get("/api/resources/runs").await;
    assert!(runs["total"].as_u64().unwrap() >= 1);
    let moved = std::fs::read_dir(keep.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("history.sqlite.corrupt-")
        });
    assert!(moved, "the damaged file is kept aside");
    assert!(d.output().contains("moved aside"), "{}", d.output());
}

#[tokio::test]
async fn the_page_signs_in_with_a_cookie_that_reads_but_never_writes() {
    let svc = require_services!();
    let ns = Namespace::new("page-cookie");
    ns.fresh_redis(svc).await;
    let keep = daemon::tempdir();
    let d = start(svc, &ns, &keep.path().join("h.sqlite")).await;
    let http = reqwest::Client::new();

    let page = http.get(d.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("data-testid"));

    let sign_in = |token: &str| {
        http.post(d.url("/api/session"))
            .json(&serde_json::json!({ "token": token }))
            .send()
    };
    assert_eq!(sign_in("wrong").await.unwrap().status(), 401);
    let ok = sign_in(TOKEN).await.unwrap();
    assert_eq!(ok.status(), 204);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains(TOKEN), "the cookie never holds the token");
    let pair = cookie.split(';').next().unwrap().to_string();

    // the cookie reads ...
    for path in [
        "/api/resources/metrics",
        "/api/resources/runs",
        "/api/resources/report",
    ] {
        let r = http
            .get(d.url(path))
            .header("cookie", &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // ... but never writes: every mutating route still needs the header
    let r = http
        .post(d.url("/api/resources/cleanup"))
        .header("cookie", &pair)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let forged = http
        .get(d.url("/api/resources/metrics"))
        .header("cookie", "janitor_session=0000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // no one guesses the token by trying: ten tries a minute
    let mut limited = false;
    for _ in 0..12 {
        limited |= sign_in("guess").await.unwrap().status() == 429;
    }
    assert!(limited);
    assert!(!d.output().contains(TOKEN), "the token is never logged");
}
