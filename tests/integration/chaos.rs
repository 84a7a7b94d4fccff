//! Chaos: one daemon against private Garage, MongoDB and Qdrant servers, each killed and
//! restarted in turn while the daemon sweeps every second. Each time the store's worker
//! fails and says why in `/api/workers`, `/readyz` stays 200 and reports the store as
//! failing, the other stores keep working, and everything recovers once the server is back.
//! (Redis killed and restarted under the daemon: `daemon_runs`.)

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::require_services;
use crate::support::daemon::{self, Daemon};
use crate::support::process::{self, Server};
use crate::support::{Namespace, Services};

fn worker(workers: &Value, name: &str) -> Value {
    workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no worker {name}: {workers}"))
}

/// Polls until `ok(workers, readyz)` holds (20 s at most).
async fn until(d: &Daemon, what: &str, ok: impl Fn(&Value, &Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let workers = d.get_json("/api/workers").await;
        let ready = reqwest::get(d.url("/readyz")).await.unwrap();
        assert_eq!(
            ready.status(),
            200,
            "{what}: readiness never drops for a store"
        );
        let ready: Value = ready.json().await.unwrap();
        if ok(&workers, &ready) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened\nworkers: {workers:#}\nreadyz: {ready:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn start(
    svc: &Services,
    ns: &Namespace,
    garage: &Server,
    mongo: &Server,
    qdrant: &Server,
) -> Daemon {
    let dir = daemon::tempdir();
    let mut env = daemon::env_for(svc, ns, dir.path());
    env.retain(|(k, _)| {
        !["QDRANT_URL", "S3_", "AWS_", "MONGODB_URI"]
            .iter()
            .any(|p| k.starts_with(p))
    });
    let vars = [
        ("S3_ENDPOINT", garage.info["endpoint"].as_str()),
        ("S3_BUCKET", garage.info["bucket"].as_str()),
        ("AWS_ACCESS_KEY_ID", garage.info["access_key"].as_str()),
        ("AWS_SECRET_ACCESS_KEY", garage.info["secret_key"].as_str()),
        ("AWS_REGION", "garage"),
        ("MONGODB_URI", mongo.info["uri"].as_str()),
        ("QDRANT_URL", qdrant.info["url"].as_str()),
        ("REDIS_CLEANUP_INTERVAL_SECONDS", "1"),
        ("QDRANT_CLEANUP_INTERVAL_SECONDS", "1"),
        ("MINIO_CLEANUP_INTERVAL_SECONDS", "1"),
        ("JANITOR_BACKEND_TIMEOUT_SECONDS", "1"),
        ("JANITOR_BACKOFF_MAX_SECONDS", "2"),
        ("JANITOR_QUEUE_TASKS_PER_CYCLE", "10"),
        // the monitor lists the bucket itself every cycle (no listing reused)
        ("JANITOR_S3_MEASURE_CACHE_SECONDS", "0"),
    ];
    env.extend(vars.map(|(k, v)| (k.to_string(), v.to_string())));
    Daemon::start(env, dir).await
}

#[tokio::test]
async fn each_store_killed_and_restarted_degrades_its_loop_only_and_recovers() {
    let svc = require_services!();
    let ns = Namespace::new("chaos");
    ns.fresh_redis(svc).await;
    let mut garage = process::garage_with_clock(svc);
    let mut mongo = process::mongo(svc);
    let mut qdrant = process::qdrant(svc, None);
    let d = start(svc, &ns, &garage, &mongo, &qdrant).await;
    let healthy = |w: &Value, name: &str| {
        let w = worker(w, name);
        w["runs"].as_u64() >= Some(1) && w["consecutive_failures"] == 0
    };
    until(&d, "every loop ran", |w, _| {
        ["redis", "qdrant", "s3"].iter().all(|n| healthy(w, n))
    })
    .await;

    // (server, the worker that needs it, its name in /readyz, what its error mentions)
    let cases: [(&mut Server, &str, &str, &str); 3] = [
        (&mut garage, "s3", "minio", "s3"),
        (&mut mongo, "s3", "mongodb", "reference"),
        (&mut qdrant, "qdrant", "qdrant", "qdrant"),
    ];
    for (server, name, backend, says) in cases {
        server.kill();
        until(&d, &format!("{backend} down: {name} fails"), |w, ready| {
            let w = worker(w, name);
            w["consecutive_failures"].as_u64() >= Some(1)
                && w["last_error"]
                    .as_str()
                    .is_some_and(|e| e.to_lowercase().contains(says))
                && ready["backends"][backend]["status"] == "error"
        })
        .await;
        // the other loops go on
        let others: Vec<&str> = ["redis", "qdrant", "s3"]
            .into_iter()
            .filter(|n| *n != name)
            .collect();
        until(
            &d,
            &format!("{backend} down: the others keep working"),
            |w, _| others.iter().all(|n| healthy(w, n)),
        )
        .await;
        assert_eq!(reqwest::get(d.url("/healthz")).await.unwrap().status(), 200);

        server.start();
        until(
            &d,
            &format!("{backend} back: {name} recovers"),
            |w, ready| healthy(w, name) && ready["backends"][backend]["status"] == "ok",
        )
        .await;
    }
}
