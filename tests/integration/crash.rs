//! The janitor killed with SIGKILL in the middle of applied sweeps, again and again: the
//! write-ahead audit log still accounts for every deletion exactly once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::require_services;
use crate::support::{self, Namespace, daemon};

/// Intents in the audit log so far.
fn intents(audit: &std::path::Path) -> usize {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(r#""kind":"intent""#))
        .count()
}

/// Starts `janitor sweep --once --resource <resource>`, waits for its first intent, and
/// SIGKILLs it at a random point up to `max_delay_ms` later; whether the kill landed (the run
/// may have ended first).
async fn kill_one_run(
    env: &[(String, String)],
    audit: &std::path::Path,
    resource: &str,
    max_delay_ms: u64,
) -> bool {
    let before = intents(audit);
    let out = daemon::tempdir();
    let mut child = daemon::janitor(env, &out)
        .args(["sweep", "--once", "--resource", resource])
        .spawn()
        .unwrap();
    let started = Instant::now();
    while intents(audit) == before && started.elapsed() < Duration::from_secs(20) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..max_delay_ms))).await;
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    killed
}

/// Checks the audit log after crashes: every intent has exactly one outcome, and every item
/// audited as deleted is so once, its count agreeing; returns those items and how many
/// batches were recovered after a kill.
fn audited_deletions(audit: &std::path::Path) -> (BTreeSet<String>, usize) {
    let records: Vec<Value> = std::fs::read_to_string(audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("whole JSON lines only"))
        .collect();
    let key = |r: &Value| format!("{}#{}", r["run_id"], r["batch_seq"]);
    let intents: Vec<String> = records
        .iter()
        .filter(|r| r["kind"] == "intent")
        .map(key)
        .collect();
    let outcomes: Vec<String> = records
        .iter()
        .filter(|r| r["kind"] == "applied")
        .map(key)
        .collect();
    let mut sorted = outcomes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        outcomes.len(),
        "one outcome per intent at most"
    );
    assert_eq!(
        intents.iter().collect::<BTreeSet<_>>(),
        outcomes.iter().collect::<BTreeSet<_>>(),
        "every intent has its outcome"
    );
    let batches = support::applied_batches(audit);
    let mut deleted = BTreeSet::new();
    let mut counted = 0u64;
    for b in &batches {
        let not = |k: &str| -> BTreeSet<String> {
            b[k].as_array()
                .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        let left: BTreeSet<String> = [not("failed"), not("skipped"), not("not_applied")]
            .into_iter()
            .flatten()
            .collect();
        for item in b["items"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            if !left.contains(id) {
                assert!(
                    deleted.insert(id.to_string()),
                    "{id} audited as deleted twice"
                );
            }
        }
        counted += b["deleted"].as_u64().unwrap();
    }
    assert_eq!(deleted.len() as u64, counted, "items and counts agree");
    let recovered = batches.iter().filter(|b| b["recovered"] == true).count();
    (deleted, recovered)
}

#[tokio::test]
async fn sigkill_mid_batch_twenty_times_every_deleted_key_audited_exactly_once() {
    let svc = require_services!();
    let ns = Namespace::new("crash-redis");
    let url = ns.fresh_redis(svc).await;
    let (doomed, live) = (60_000, 2_000);
    support::fill_redis(&url, "tmp:", doomed).await;
    support::fill_redis(&url, "keep:", live).await;
    let dir = daemon::tempdir();
    let mut env = daemon::redis_env(svc, &ns, dir.path());
    env.extend(
        [
            ("JANITOR_REDIS_POLICIES", "tmp:*=delete"),
            ("JANITOR_MAX_DELETE_FRACTION", "1"),
            // batches of 5,000 keys, paced to a few per second
            ("JANITOR_REDIS_MAX_OPS_PER_SEC", "40000"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let audit = dir.path().join("audit.jsonl");
    let (mut kills, mut rounds, mut seeded) = (0, 0, doomed);
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 20 {
        assert!(Instant::now() < deadline, "only {kills} kills in time");
        rounds += 1;
        if kill_one_run(&env, &audit, "redis", 250).await {
            kills += 1;
        }
        if support::count_keys(&url, "tmp:*").await == 0 {
            // every doomed key went: seed more, so that the next kills land mid-sweep too
            support::fill_redis(&url, &format!("tmp:{rounds}:"), 15_000).await;
            seeded += 15_000;
        }
    }
    // a last run without a kill recovers what is open and finishes the job
    let out = daemon::tempdir();
    let status = daemon::janitor(&env, &out)
        .args(["sweep", "--once", "--resource", "redis"])
        .status()
        .unwrap();
    let stdout = std::fs::read_to_string(out.path().join("stdout.log")).unwrap();
    assert!(status.success(), "{stdout}");
    assert_eq!(support::count_keys(&url, "tmp:*").await, 0, "{stdout}");
    assert_eq!(
        support::count_keys(&url, "keep:*").await,
        live,
        "nothing live lost"
    );

    let (deleted, recovered) = audited_deletions(&audit);
    assert!(deleted.iter().all(|k| k.starts_with("tmp:")));
    assert_eq!(
        deleted.len(),
        seeded,
        "every key gone is audited, exactly once"
    );
    eprintln!(
        "{kills} kills in {rounds} rounds; {} keys deleted and audited once each ({seeded} seeded); {recovered} batches recovered after a kill",
        deleted.len()
    );
}

#[tokio::test]
async fn sigkill_mid_s3_batch_every_deleted_object_audited_exactly_once() {
    use aws_sdk_s3::primitives::ByteStream;
    use futures::StreamExt;
    let svc = require_services!();
    let ns = Namespace::new("crash-s3");
    let (prefix, db) = (ns.s3_prefix(), ns.mongo_db());
    // DeleteObjects answers take 300 ms through the proxy: a kill lands mid-batch
    let proxy = crate::s3_faults::Proxy::start(svc);
    proxy.faults(serde_json::json!({ "latency_ms": 300 })).await;
    let s3 = crate::smoke::s3_client(
        svc.get("S3_ENDPOINT"),
        svc.get("AWS_ACCESS_KEY_ID"),
        svc.get("AWS_SECRET_ACCESS_KEY"),
    );
    let bucket = svc.get("S3_BUCKET");
    let orphans: Vec<String> = (0..8000).map(|i| format!("{prefix}o-{i:05}.bin")).collect();
    let live: Vec<String> = (0..50)
        .map(|i| format!("{prefix}live-{i:02}.pdf"))
        .collect();
    futures::stream::iter(orphans.iter().chain(&live))
        .for_each_concurrent(32, |k| {
            let s3 = &s3;
            async move {
                let put = s3.put_object().bucket(bucket).key(k);
                put.body(ByteStream::from_static(b"x"))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .await;
    let docs = mongodb::Client::with_uri_str(svc.get("MONGODB_URI"))
        .await
        .unwrap()
        .database(&db)
        .collection::<mongodb::bson::Document>("documents");
    let refs: Vec<_> = live
        .iter()
        .map(|k| mongodb::bson::doc! { "minio_key": k })
        .collect();
    docs.insert_many(refs).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the short TTL and grace
    let dir = daemon::tempdir();
    let mut env = daemon::env_for(svc, &ns, dir.path());
    env.retain(|(k, _)| k != "S3_ENDPOINT");
    env.extend(
        [
            ("S3_ENDPOINT", proxy.url.as_str()),
            ("JANITOR_S3_PREFIXES", prefix.as_str()),
            ("JANITOR_ALLOW_SHORT_TTL", "true"),
            ("FILES_TTL_DAYS", "0.00001"),
            ("JANITOR_S3_GRACE_HOURS", "0.0001"),
            ("JANITOR_MAX_DELETE_FRACTION", "1"),
            // batches of 2,000 keys (2 requests in flight at most)
            ("JANITOR_S3_MAX_INFLIGHT", "2"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let audit = dir.path().join("audit.jsonl");
    let (mut kills, mut rounds) = (0, 0);
    while kills < 6 && rounds < 30 {
        rounds += 1;
        if kill_one_run(&env, &audit, "s3", 600).await {
            kills += 1;
        }
    }
    let out = daemon::tempdir();
    let status = daemon::janitor(&env, &out)
        .args(["sweep", "--once", "--resource", "s3"])
        .status()
        .unwrap();
    let stdout = std::fs::read_to_string(out.path().join("stdout.log")).unwrap();
    assert!(status.success(), "{stdout}");
    let mut left = BTreeSet::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for o in page.unwrap().contents() {
            left.insert(o.key().unwrap().to_string());
        }
    }
    assert_eq!(
        left,
        live.iter().cloned().collect(),
        "exactly the orphans went"
    );
    let (deleted, recovered) = audited_deletions(&audit);
    let orphans: BTreeSet<String> = orphans.into_iter().collect();
    let unaudited: Vec<&String> = orphans.difference(&deleted).collect();
    if !unaudited.is_empty() {
        for b in support::applied_batches(&audit) {
            let has = b["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["id"] == unaudited[0].as_str());
            if has {
                let mut b = b.clone();
                b["items"] = Value::from(b["items"].as_array().unwrap().len());
                eprintln!("batch holding {}: {b}", unaudited[0]);
            }
        }
    }
    assert!(
        unaudited.is_empty() && deleted.len() == orphans.len(),
        "every object gone is audited, exactly once: {} gone unaudited (first {:?}), {} audited",
        unaudited.len(),
        unaudited.first(),
        deleted.len()
    );
    assert!(kills >= 3, "only {kills} kills landed in {rounds} rounds");
    eprintln!("{kills} kills in {rounds} rounds; {recovered} batches recovered after a kill");
}

/// A tmpfs of `kib` KiB mounted at a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: u32) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs (the tests run as root)");
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_filesystem_under_the_audit_log_deletes_nothing_and_says_why() {
    let svc = require_services!();
    let ns = Namespace::new("audit-full");
    let url = ns.fresh_redis(svc).await;
    support::fill_redis(&url, "tmp:", 1000).await;
    // 16 pages: the plan's spool of 1,000 keys (about 9) fits, its intent (9 more) does not
    let fs = Tmpfs::mount(64);
    let audit = fs.dir.path().join("audit.jsonl");
    let dir = daemon::tempdir();
    let mut env = daemon::redis_env(svc, &ns, dir.path());
    env.retain(|(k, _)| k != "JANITOR_AUDIT_LOG");
    env.extend(
        [
            ("JANITOR_REDIS_POLICIES", "tmp:*=delete"),
            ("JANITOR_MAX_DELETE_FRACTION", "1"),
            ("JANITOR_AUDIT_LOG", audit.to_str().unwrap()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let out = daemon::tempdir();
    // the history goes elsewhere: the tmpfs is sized for the audit log's records alone
    let history = out.path().join("history.sqlite");
    env.push(("JANITOR_HISTORY_PATH".into(), history.display().to_string()));
    let status = daemon::janitor(&env, &out)
        .args(["sweep", "--once", "--resource", "redis"])
        .status()
        .unwrap();
    let stdout = std::fs::read_to_string(out.path().join("stdout.log")).unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failed_closed"), "{stdout}");
    assert!(
        stdout.contains("audit log unwritable, nothing (more) deleted"),
        "{stdout}"
    );
    assert!(stdout.contains("No space left on device"), "{stdout}");
    assert_eq!(
        support::count_keys(&url, "tmp:*").await,
        1000,
        "nothing deleted"
    );
    // no torn line for the next append to be glued to
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
}
