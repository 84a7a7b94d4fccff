//! The S3 sweep through a fault-injecting proxy in front of the real Garage
//! (`tests/support/s3_fault_proxy.py`): 503 SlowDown, SlowDown in a 200, per-key errors
//! inside a DeleteObjects answer (the withheld keys really stay in Garage), slow answers past
//! the timeout and dropped connections. Under each, the sweep ends (within the few runs its
//! timer would make) with exactly the unreferenced old objects gone, each deletion in the
//! audit log once, nothing live touched, the concurrency backing off; and it grows again once
//! the faults stop.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use mongodb::bson::doc;
use resource_janitor::app::Janitor;
use resource_janitor::resource::Resource;
use resource_janitor::runs::Outcome;
use serde_json::{Value, json};

use crate::require_services;
use crate::smoke::s3_client;
use crate::support::{self, Namespace, Services};

/// The proxy, stopped when dropped.
pub(crate) struct Proxy {
    child: Child,
    pub(crate) url: String,
}

impl Proxy {
    pub(crate) fn start(svc: &Services) -> Proxy {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/s3_fault_proxy.py"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--upstream", svc.get("S3_ENDPOINT")])
            .args(["--access-key", svc.get("AWS_ACCESS_KEY_ID")])
            .args(["--secret-key", svc.get("AWS_SECRET_ACCESS_KEY")])
            .args(["--region", svc.get("AWS_REGION"), "--seed", "7"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .expect("the proxy's first line");
        Proxy {
            child,
            url: format!("http://{addr}"),
        }
    }

    pub(crate) async fn faults(&self, settings: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/__faults", self.url))
            .json(&settings)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// The counters since the last call (they are reset).
    async fn stats(&self) -> Value {
        let r = reqwest::Client::new()
            .delete(format!("{}/__stats", self.url))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Scene {
    s3: aws_sdk_s3::Client,
    bucket: String,
    docs: mongodb::Collection<mongodb::bson::Document>,
    prefix: String,
}

impl Scene {
    /// Garage directly (not through the proxy) and the namespace's reference collection.
    async fn new(svc: &Services, ns: &Namespace) -> Scene {
        Scene {
            s3: s3_client(
                svc.get("S3_ENDPOINT"),
                svc.get("AWS_ACCESS_KEY_ID"),
                svc.get("AWS_SECRET_ACCESS_KEY"),
            ),
            bucket: svc.get("S3_BUCKET").to_string(),
            docs: mongodb::Client::with_uri_str(svc.get("MONGODB_URI"))
                .await
                .unwrap()
                .database(&ns.mongo_db())
                .collection("documents"),
            prefix: ns.s3_prefix(),
        }
    }

    /// `orphans` unreferenced objects and 10 referenced ones under `tag`, old enough once
    /// this returns; (the orphans, the referenced).
    async fn seed(&self, tag: &str, orphans: usize) -> (BTreeSet<String>, BTreeSet<String>) {
        let key = |kind: &str, i: usize| format!("{}{tag}/{kind}-{i:05}.pdf", self.prefix);
        let gone: BTreeSet<String> = (0..orphans).map(|i| key("orphan", i)).collect();
        let live: BTreeSet<String> = (0..10).map(|i| key("live", i)).collect();
        futures::stream::iter(gone.iter().chain(&live))
            .for_each_concurrent(32, |k| async move {
                self.s3
                    .put_object()
                    .bucket(&self.bucket)
                    .key(k)
                    .body(ByteStream::from_static(b"pdf"))
                    .send()
                    .await
                    .unwrap();
            })
            .await;
        let refs: Vec<_> = live.iter().map(|k| doc! { "minio_key": k }).collect();
        self.docs.insert_many(refs).await.unwrap();
        // past the 0.9 s TTL and the 0.4 s grace
        tokio::time::sleep(Duration::from_millis(1500)).await;
        (gone, live)
    }

    async fn present(&self, tag: &str) -> BTreeSet<String> {
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}{tag}/", self.prefix))
            .into_paginator()
            .send();
        let mut keys = BTreeSet::new();
        while let Some(page) = pages.next().await {
            for o in page.unwrap().contents() {
                keys.insert(o.key().unwrap().to_string());
            }
        }
        keys
    }
}

/// Up to four runs (as the timer would make them, backing off between failures) until one
/// succeeds; each run's outcome and message, and the last run's notes.
async fn sweep_until_done(janitor: &Janitor) -> (Vec<(Outcome, String)>, Vec<String>) {
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let r = support::run_once(janitor, support::cli_request(Resource::S3, false)).await;
        let message = r.record.message.clone().unwrap_or_default();
        outcomes.push((r.record.outcome, message));
        if r.record.outcome == Outcome::Succeeded {
            return (outcomes, r.record.notes);
        }
    }
    panic!("no run succeeded: {outcomes:?}");
}

/// 3,000 orphans swept through the proxy with clean (but slowed) answers: one run, exactly
/// the orphans gone, requests overlapping, no throttle; the orphans.
async fn clean_sweep(
    scene: &Scene,
    proxy: &Proxy,
    janitor: &Janitor,
    tag: &str,
) -> BTreeSet<String> {
    let (gone, live) = scene.seed(tag, 3000).await;
    proxy.faults(json!({ "latency_ms": 200 })).await;
    proxy.stats().await;
    let (outcomes, notes) = sweep_until_done(janitor).await;
    let stats = proxy.stats().await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(scene.present(tag).await, live, "exactly the orphans went");
    assert!(
        stats["delete_objects_max_in_flight"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert!(
        notes.iter().any(|n| n.contains("0 throttle signals")),
        "{notes:?}"
    );
    gone
}

fn deleted_in_audit(audit: &std::path::Path) -> u64 {
    support::applied_batches(audit)
        .iter()
        .map(|b| b["deleted"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn every_fault_ends_with_exactly_the_orphans_gone_each_audited_once() {
    let svc = require_services!();
    let ns = Namespace::new("s3-faults");
    let proxy = Proxy::start(svc);
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let (prefix, db) = (ns.s3_prefix(), ns.mongo_db());
    let pairs = [
        ("S3_ENDPOINT", proxy.url.as_str()),
        ("S3_BUCKET", svc.get("S3_BUCKET")),
        ("AWS_ACCESS_KEY_ID", svc.get("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", svc.get("AWS_SECRET_ACCESS_KEY")),
        ("AWS_REGION", svc.get("AWS_REGION")),
        ("MONGODB_URI", svc.get("MONGODB_URI")),
        ("MONGODB_DATABASE", db.as_str()),
        ("JANITOR_S3_PREFIXES", prefix.as_str()),
        ("JANITOR_ALLOW_SHORT_TTL", "true"),
        ("FILES_TTL_DAYS", "0.00001"),
        ("JANITOR_S3_GRACE_HOURS", "0.0001"),
        ("JANITOR_MAX_DELETE_FRACTION", "1"),
        ("JANITOR_S3_MAX_INFLIGHT", "4"),
        ("JANITOR_BACKEND_TIMEOUT_SECONDS", "3"),
    ];
    let settings = support::settings(&pairs, &audit, &[]);
    let janitor = Janitor::new(settings).await.unwrap();
    let scene = Scene::new(svc, &ns).await;

    // clean answers: the concurrency grows (1, then 2 in flight over 3 requests)
    let gone = clean_sweep(&scene, &proxy, &janitor, "clean").await;
    let mut audited = deleted_in_audit(&audit);
    assert_eq!(audited, gone.len() as u64);

    // each fault hits the first requests (`limit`), then the proxy passes them through
    let faults = [
        (
            "per-key",
            json!({ "per_key_error": 1.0, "per_key_fraction": 0.4, "limit": 3 }),
        ),
        ("slowdown-503", json!({ "slowdown_503": 1.0, "limit": 2 })),
        ("error-200", json!({ "error_200": 1.0, "limit": 2 })),
        ("dropped", json!({ "drop": 1.0, "limit": 2 })),
        (
            "timeout",
            json!({ "slow": 1.0, "slow_ms": 4000, "limit": 1 }),
        ),
    ];
    for (tag, fault) in faults {
        let (gone, live) = scene.seed(tag, 2000).await;
        proxy.faults(fault.clone()).await;
        proxy.stats().await;
        let (outcomes, notes) = sweep_until_done(&janitor).await;
        let stats = proxy.stats().await;
        proxy.faults(json!({})).await;
        assert_eq!(
            scene.present(tag).await,
            live,
            "{tag}: exactly the orphans went ({outcomes:?})"
        );
        let throttles: u64 = notes
            .iter()
            .find_map(|n| {
                let n = n.strip_suffix(" throttle signals")?;
                n.rsplit(' ').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("{tag}: {notes:?}"));
        let injected = stats["faults_total"].as_u64().unwrap();
        assert!(injected > 0, "{tag}: {stats}");
        assert!(
            throttles > 0 || outcomes.len() > 1,
            "{tag}: the faults were seen ({outcomes:?}, {notes:?})"
        );
        let now = deleted_in_audit(&audit);
        assert_eq!(
            now - audited,
            gone.len() as u64,
            "{tag}: every deletion in the audit log, once ({outcomes:?})"
        );
        audited = now;
    }

    // the faults stopped: the sweep is clean and grows again
    clean_sweep(&scene, &proxy, &janitor, "after").await;
}

/// Two runs deleting from one bucket at once (the S3 sweep and the document cascade), each
/// with an adaptive window of up to 8, through the proxy with slowed answers: together they
/// never have more DeleteObjects in flight than the bucket's cap; without it they do.
#[tokio::test]
async fn runs_deleting_from_one_bucket_share_its_inflight_cap() {
    use resource_janitor::backend::s3::{S3, delete};
    let svc = require_services!();
    let ns = Namespace::new("s3-shared-cap");
    let proxy = Proxy::start(svc);
    let scene = Scene::new(svc, &ns).await;
    let conn = resource_janitor::config::S3Conn {
        endpoint: proxy.url.clone(),
        bucket: scene.bucket.clone(),
        region: svc.get("AWS_REGION").to_string(),
        access_key_id: svc.get("AWS_ACCESS_KEY_ID").to_string(),
        secret_access_key: resource_janitor::secret::Secret::new(svc.get("AWS_SECRET_ACCESS_KEY")),
    };
    // two runs of 1,000 keys each, 100 keys a request, 150 ms an answer; the most in flight
    let both = |s3: S3, tag: &'static str| {
        let scene = &scene;
        let proxy = &proxy;
        async move {
            let (a, _) = scene.seed(&format!("{tag}-a"), 1000).await;
            let (b, _) = scene.seed(&format!("{tag}-b"), 1000).await;
            proxy.faults(json!({ "latency_ms": 150 })).await;
            proxy.stats().await;
            let run = |keys: BTreeSet<String>| {
                let s3 = s3.clone();
                async move {
                    let mut throttle = delete::Throttle::new(8, 0);
                    let keep = |chunk: Vec<String>| async move { Ok::<_, ()>((chunk, Vec::new())) };
                    let keys = keys.into_iter().collect();
                    let (done, _) = delete::delete_all(&s3, keys, 100, &mut throttle, None, keep)
                        .await
                        .unwrap();
                    (done.deleted.len(), throttle.peak())
                }
            };
            let ((da, pa), (db, pb)) = tokio::join!(run(a), run(b));
            assert_eq!((da, db), (1000, 1000), "{tag}: every key deleted");
            assert_eq!((pa, pb), (8, 8), "{tag}: each run's own window grew to 8");
            let stats = proxy.stats().await;
            stats["delete_objects_max_in_flight"].as_u64().unwrap()
        }
    };
    let capped = both(
        S3::connect(&conn, Duration::from_secs(10)).with_delete_inflight(3),
        "capped",
    )
    .await;
    assert!(
        capped <= 3,
        "at most the bucket's 3 in flight, saw {capped}"
    );
    let uncapped = both(S3::connect(&conn, Duration::from_secs(10)), "uncapped").await;
    assert!(
        uncapped > 3,
        "without the cap the two windows add up, saw {uncapped}"
    );
}
