//! Operations around the real `janitor` binary: alerts to a local webhook receiver (with a
//! cooldown per key and a retry after a server error), and the systemd notify protocol
//! (READY, STATUS, WATCHDOG, STOPPING) on a socket the test listens on.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use crate::require_services;
use crate::support::daemon::{self, Daemon};
use crate::support::{Namespace, fill_redis};

/// What the receiver got: every request's `text`, and how many requests it failed on purpose.
#[derive(Default)]
struct Received {
    texts: Vec<String>,
    fail_next: u32,
    requests: u32,
}

async fn receive(State(rx): State<Arc<Mutex<Received>>>, Json(body): Json<Value>) -> StatusCode {
    let mut rx = rx.lock().unwrap();
    rx.requests += 1;
    if rx.fail_next > 0 {
        rx.fail_next -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    rx.texts
        .push(body["text"].as_str().unwrap_or_default().to_string());
    StatusCode::OK
}

/// The alert key named in a text: `... (alert usage_critical:redis, instance ...)`.
fn alert_key(text: &str) -> String {
    let rest = text.split("(alert ").nth(1).unwrap_or_default();
    rest.split(',').next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn alerts_reach_the_webhook_once_per_cooldown_after_a_retry() {
    let svc = require_services!();
    let ns = Namespace::new("ops-alerts");
    let url = ns.fresh_redis(svc).await;
    let received = Arc::new(Mutex::new(Received {
        fail_next: 1,
        ..Default::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // ten keys to delete against a cap of five, and a memory budget far below Redis's own
    // footprint: CRITICAL usage, emergency runs aborted by the cap, a failing Redis worker
    fill_redis(&url, "tmp:", 10).await;
    let dir = daemon::tempdir();
    let mut env = daemon::redis_env(svc, &ns, dir.path());
    for (k, v) in [
        ("JANITOR_REDIS_POLICIES", "tmp:*=delete"),
        ("JANITOR_MAX_DELETE_FRACTION", "1"),
        ("JANITOR_MAX_DELETE_COUNT", "5"),
        ("MAX_REDIS_MEMORY_MB", "0.1"),
        ("JANITOR_ALERT_WEBHOOK_URL", hook.as_str()),
        ("JANITOR_ALERT_WORKER_FAILURES", "2"),
    ] {
        env.push((k.into(), v.into()));
    }
    let d = Daemon::start(env, dir).await;

    let keys = [
        "run_aborted_cap:redis",
        "usage_critical:redis",
        "worker_failing:redis",
    ];
    let start = Instant::now();
    loop {
        let got: Vec<String> = received
            .lock()
            .unwrap()
            .texts
            .iter()
            .map(|t| alert_key(t))
            .collect();
        if keys.iter().all(|k| got.iter().any(|g| g == k)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "alerts so far: {got:?}\n{}",
            d.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the conditions go on (CRITICAL every second, a capped run every few seconds): the
    // cooldown (default 5 min) keeps each key to one alert
    tokio::time::sleep(Duration::from_secs(4)).await;
    let runs = d.get_json("/api/resources/runs").await;
    let capped = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "aborted_cap")
        .count();
    assert!(capped >= 2, "{runs:#}");
    let rx = received.lock().unwrap();
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for t in &rx.texts {
        *per_key.entry(alert_key(t)).or_default() += 1;
    }
    assert_eq!(
        per_key,
        keys.iter().map(|k| (k.to_string(), 1)).collect(),
        "{:#?}",
        rx.texts
    );
    // the first delivery got a 500 and was retried
    assert_eq!(rx.requests as usize, rx.texts.len() + 1);
    let critical = rx
        .texts
        .iter()
        .find(|t| alert_key(t) == "usage_critical:redis")
        .unwrap();
    assert!(
        critical.starts_with("[janitor CRITICAL] redis usage"),
        "{critical}"
    );
    assert!(d.output().contains("retrying"), "{}", d.output());
    // the webhook URL is a secret: never logged
    assert!(!d.output().contains(&hook), "{}", d.output());
}

#[tokio::test]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let svc = require_services!();
    let ns = Namespace::new("ops-systemd");
    ns.fresh_redis(svc).await;
    let sockdir = tempfile::tempdir().unwrap();
    let path = sockdir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let dir = daemon::tempdir();
    let mut env = daemon::redis_env(svc, &ns, dir.path());
    env.push(("NOTIFY_SOCKET".into(), path.display().to_string()));
    env.push(("WATCHDOG_USEC".into(), "400000".into()));
    let mut d = Daemon::start(env, dir).await;
    let mut buf = vec![0u8; 4096];
    let mut recv = || {
        let n = socket.recv(&mut buf).expect("a notify message");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    };
    let ready = recv();
    assert!(ready.starts_with("READY=1\nSTATUS=leader; "), "{ready}");
    // pings every 200 ms with a fresh status line
    let started = Instant::now();
    let mut pings = 0;
    while pings < 5 {
        let m = recv();
        assert!(m.starts_with("WATCHDOG=1\nSTATUS=leader; "), "{m}");
        pings += 1;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "5 pings took {took:?}");
    let status = recv();
    assert!(status.contains("redis "), "{status}");
    d.signal("TERM");
    loop {
        let m = recv();
        if m.starts_with("STOPPING=1") {
            break;
        }
        assert!(m.starts_with("WATCHDOG=1"), "{m}");
    }
    assert!(d.wait_exit(Duration::from_secs(10)).unwrap().success());
}
