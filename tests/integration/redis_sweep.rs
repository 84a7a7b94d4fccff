//! The Redis sweeper against a real redis-server.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use resource_janitor::app::Janitor;
use resource_janitor::backend::sweep::Sweeper;
use resource_janitor::config::{Settings, Sources, load};
use resource_janitor::resource::Resource;
use resource_janitor::runs::Outcome;

use crate::require_services;
use crate::support::{self, Namespace, process};

const POLICIES: &str =
    "doc_segments:*=expire:1h;chunk:*=delete_idle:1h;session:*=delete_idle:24h;tmp:*=delete";

fn settings(redis_url: &str, audit: &std::path::Path, extra: &[(&str, &str)]) -> Arc<Settings> {
    let mut environment: Vec<(String, String)> = vec![
        ("REDIS_URL".into(), redis_url.into()),
        ("JANITOR_REDIS_POLICIES".into(), POLICIES.into()),
        ("JANITOR_REDIS_PROTECT".into(), "chunk:protected:*".into()),
        ("JANITOR_MAX_DELETE_FRACTION".into(), "1".into()),
        ("JANITOR_REDIS_SCAN_COUNT".into(), "3".into()),
        ("JANITOR_AUDIT_LOG".into(), audit.display().to_string()),
    ];
    environment.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Arc::new(
        load(&Sources {
            environment,
            ..Sources::default()
        })
        .unwrap(),
    )
}

/// `SET key value`.
async fn set(
    con: &mut MultiplexedConnection,
    key: impl redis::ToRedisArgs + Send + Sync,
    value: impl redis::ToRedisArgs + Send + Sync,
) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(con)
        .await
        .unwrap();
}

async fn connect(url: &str) -> MultiplexedConnection {
    crate::support::redis_con(url).await
}

/// Writes `key` with the value of `source` (any type) and an idle time of `idle` seconds.
async fn restore_idle(con: &mut MultiplexedConnection, source: &[u8], key: &[u8], idle: u64) {
    let dump: Vec<u8> = redis::cmd("DUMP")
        .arg(source)
        .query_async(con)
        .await
        .unwrap();
    redis::cmd("RESTORE")
        .arg(key)
        .arg(0)
        .arg(dump)
        .arg("REPLACE")
        .arg("IDLETIME")
        .arg(idle)
        .query_async::<()>(con)
        .await
        .unwrap();
}

/// The mixed data set; returns (expected expired, expected unlinked, expected untouched).
async fn seed(
    con: &mut MultiplexedConnection,
) -> (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) {
    redis::cmd("FLUSHDB").query_async::<()>(con).await.unwrap();
    redis::cmd("SET")
        .arg("doc_segments:ttl")
        .arg("v")
        .arg("EX")
        .arg(3600)
        .query_async::<()>(con)
        .await
        .unwrap();
    set(con, "doc_segments:nottl", "v").await;
    set(con, "chunk:fresh", "v").await;
    set(con, "chunk:counter", "7").await; // a shared integer
    set(con, "tmp:x", "v").await;
    set(con, "unrelated", "v").await;
    // sources of every type, then idle copies under policy patterns
    redis::pipe()
        .cmd("SET")
        .arg("src:string")
        .arg("hello")
        .ignore()
        .cmd("RPUSH")
        .arg("src:list")
        .arg("a")
        .arg("b")
        .ignore()
        .cmd("SADD")
        .arg("src:set")
        .arg("a")
        .ignore()
        .cmd("ZADD")
        .arg("src:zset")
        .arg(1)
        .arg("a")
        .ignore()
        .cmd("HSET")
        .arg("src:hash")
        .arg("f")
        .arg("v")
        .ignore()
        .cmd("XADD")
        .arg("src:stream")
        .arg("*")
        .arg("f")
        .arg("v")
        .ignore()
        .query_async::<()>(con)
        .await
        .unwrap();
    let mut unlinked = BTreeSet::new();
    for t in ["string", "list", "set", "zset", "hash", "stream"] {
        let key = format!("chunk:idle:{t}").into_bytes();
        restore_idle(con, format!("src:{t}").as_bytes(), &key, 7200).await;
        unlinked.insert(key);
    }
    let binary = b"chunk:\xff\x00bin key".to_vec();
    restore_idle(con, b"src:string", &binary, 7200).await;
    unlinked.insert(binary);
    unlinked.insert(b"tmp:x".to_vec());
    restore_idle(con, b"src:string", b"chunk:protected:1", 7200).await;
    restore_idle(con, b"src:string", b"session:old", 7200).await; // idle 2 h < 24 h
    let expired: BTreeSet<Vec<u8>> = [b"doc_segments:nottl".to_vec()].into();
    let mut untouched: BTreeSet<Vec<u8>> = [
        "doc_segments:ttl",
        "chunk:fresh",
        "chunk:counter",
        "unrelated",
        "chunk:protected:1",
        "session:old",
    ]
    .iter()
    .map(|k| k.as_bytes().to_vec())
    .collect();
    untouched.extend(
        ["string", "list", "set", "zset", "hash", "stream"]
            .iter()
            .map(|t| format!("src:{t}").into_bytes()),
    );
    (expired, unlinked, untouched)
}

async fn pttl(con: &mut MultiplexedConnection, key: &[u8]) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(con).await.unwrap()
}

/// One run of the engine as of now; its record.
async fn run(state: &Janitor, dry_run: bool) -> resource_janitor::runs::RunRecord {
    support::run_once(state, support::cli_request(Resource::Redis, dry_run))
        .await
        .record
}

#[tokio::test]
async fn mixed_data_set_exact_outcome_and_dry_run_matches() {
    let svc = require_services!();
    let ns = Namespace::new("redis-mixed");
    let url = ns.fresh_redis(svc).await;
    let mut con = connect(&url).await;
    let (expired, unlinked, untouched) = seed(&mut con).await;
    let dir = tempfile::tempdir().unwrap();
    let state = Janitor::new(settings(&url, &dir.path().join("audit.jsonl"), &[]))
        .await
        .unwrap();

    let dry = support::run_once(&state, support::cli_request(Resource::Redis, true)).await;
    assert_eq!(
        dry.record.outcome,
        Outcome::DryRun,
        "{:?}",
        dry.record.message
    );
    for key in untouched.iter().chain(&unlinked).chain(&expired) {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(exists, "dry run changed {}", String::from_utf8_lossy(key));
    }
    assert_eq!(
        pttl(&mut con, b"doc_segments:nottl").await,
        -1,
        "dry run set no TTL"
    );
    let planned: BTreeSet<String> = dry
        .plan
        .unwrap()
        .items()
        .unwrap()
        .into_iter()
        .map(|i| i.id.clone())
        .collect();

    let real = support::run_once(&state, support::cli_request(Resource::Redis, false)).await;
    let r = &real.record;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.message);
    let applied: BTreeSet<String> = real
        .plan
        .unwrap()
        .items()
        .unwrap()
        .into_iter()
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(planned, applied, "the dry run's plan is the real run's");
    assert_eq!(
        (r.deleted, r.expired, r.skipped, r.failed),
        (unlinked.len() as u64, 1, 0, 0)
    );

    for key in &unlinked {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(
            !exists,
            "{} should be unlinked",
            String::from_utf8_lossy(key)
        );
    }
    let ttl = pttl(&mut con, b"doc_segments:nottl").await;
    assert!(
        (3_590_000..=3_600_000).contains(&ttl),
        "expired with 1h: {ttl}"
    );
    for key in &untouched {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(exists, "{} must survive", String::from_utf8_lossy(key));
    }
    assert_eq!(
        pttl(&mut con, b"chunk:fresh").await,
        -1,
        "untouched keys keep no TTL"
    );
    assert!(
        pttl(&mut con, b"doc_segments:ttl").await > 3_000_000,
        "existing TTLs are left alone"
    );
    // the audit log has the unlinked binary key, escaped
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains(r#"chunk:\\xff\\x00bin key"#), "{audit}");
    // a second run finds nothing more to delete (idempotent)
    let again = run(&state, false).await;
    assert_eq!(
        (again.outcome, again.deleted, again.expired),
        (Outcome::Succeeded, 0, 0)
    );
}

#[tokio::test]
async fn a_key_changed_between_scan_and_action_survives() {
    let svc = require_services!();
    let ns = Namespace::new("redis-race");
    let url = ns.fresh_redis(svc).await;
    let mut con = connect(&url).await;
    seed(&mut con).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&url, &dir.path().join("audit.jsonl"), &[]);
    let redis = resource_janitor::backend::redis::Redis::new(
        settings.redis.as_ref().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    let sweeper = resource_janitor::backend::redis::sweep::RedisSweeper::new(
        redis,
        settings.redis_sweep.clone(),
        None,
    );
    let ctx = crate::support::sweep_ctx(Duration::from_secs(3600), dir.path());
    let (mut plan, planned) = sweeper.plan(&ctx).await.unwrap();
    let items = plan.items().unwrap();
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    assert!(
        ids.contains(&"chunk:idle:hash")
            && ids.contains(&"chunk:idle:list")
            && ids.contains(&"tmp:x")
    );
    // between plan and apply: one key gets a TTL, one is read (no longer idle), one gets a TTL by the app
    redis::cmd("EXPIRE")
        .arg("chunk:idle:hash")
        .arg(600)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    redis::cmd("LRANGE")
        .arg("chunk:idle:list")
        .arg(0)
        .arg(-1)
        .query_async::<Vec<String>>(&mut con)
        .await
        .unwrap();
    redis::cmd("EXPIRE")
        .arg("tmp:x")
        .arg(600)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    redis::cmd("EXPIRE")
        .arg("doc_segments:nottl")
        .arg(30)
        .query_async::<()>(&mut con)
        .await
        .unwrap();
    let mut skipped = 0;
    for batch in plan.batches().unwrap() {
        let batch = &batch.unwrap();
        skipped += planned.apply(batch, &ctx).await.unwrap().skipped.len();
    }
    assert_eq!(skipped, 4);
    for key in ["chunk:idle:hash", "chunk:idle:list", "tmp:x"] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(exists, "{key} changed after planning and must survive");
    }
    assert!(
        pttl(&mut con, b"doc_segments:nottl").await <= 30_000,
        "EXPIRE NX kept the app's TTL"
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg("chunk:idle:zset")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(!exists, "unchanged idle keys still go");
}

#[tokio::test]
async fn lfu_policy_falls_back_to_expire() {
    let svc = require_services!();
    let server = process::redis(svc, &["--maxmemory-policy", "allkeys-lfu"]);
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let mut con = connect(&url).await;
    set(&mut con, "chunk:a", "v").await;
    set(&mut con, "chunk:b", "v").await;
    let dir = tempfile::tempdir().unwrap();
    let state = Janitor::new(settings(&url, &dir.path().join("audit.jsonl"), &[]))
        .await
        .unwrap();
    let r = run(&state, false).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.message);
    assert_eq!(
        (r.deleted, r.expired),
        (0, 2),
        "idle unknown under LFU: expire, never delete"
    );
    assert!(r.notes.iter().any(|n| n.contains("LFU")), "{:?}", r.notes);
    assert!(pttl(&mut con, b"chunk:a").await > 0);
}

#[tokio::test]
async fn redis_killed_mid_pass_backs_off_and_recovers() {
    let svc = require_services!();
    let mut server = process::redis(svc, &[]);
    let url = format!("redis://127.0.0.1:{}/0", server.port);
    let dir = tempfile::tempdir().unwrap();
    let state = Janitor::new(settings(
        &url,
        &dir.path().join("audit.jsonl"),
        &[("JANITOR_BACKEND_TIMEOUT_SECONDS", "1")],
    ))
    .await
    .unwrap();
    let mut con = connect(&url).await;
    for i in 0..50 {
        set(&mut con, format!("tmp:{i}"), "v").await;
    }
    server.kill();
    let failed = run(&state, false).await;
    assert_eq!(failed.outcome, Outcome::Failed, "{:?}", failed.message);
    assert_eq!(failed.deleted, 0);
    server.start();
    // the connection manager reconnects; the next run works against the new (empty) server
    let mut con = connect(&url).await;
    set(&mut con, "tmp:again", "v").await;
    let mut recovered = None;
    for _ in 0..20 {
        let r = run(&state, false).await;
        if r.outcome == Outcome::Succeeded {
            recovered = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = recovered.expect("the sweep recovers once the server is back");
    assert_eq!(r.deleted, 1);
}

#[tokio::test]
async fn acl_user_and_password_from_the_url() {
    let svc = require_services!();
    let server = process::redis(svc, &[]);
    let admin_url = format!("redis://127.0.0.1:{}/0", server.port);
    let mut admin = connect(&admin_url).await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("janitor")
        .arg("on")
        .arg(">acl-pass-91f0")
        .arg("~*")
        .arg("+@all")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    set(&mut admin, "tmp:a", "v").await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("off")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = format!("redis://janitor:acl-pass-91f0@127.0.0.1:{}/0", server.port);
    let state = Janitor::new(settings(&good, &dir.path().join("audit.jsonl"), &[]))
        .await
        .unwrap();
    let r = run(&state, false).await;
    assert_eq!(
        (r.outcome, r.deleted),
        (Outcome::Succeeded, 1),
        "{:?}",
        r.message
    );

    let bad = format!(
        "redis://janitor:wrong-pass-77aa@127.0.0.1:{}/0",
        server.port
    );
    let state = Janitor::new(settings(&bad, &dir.path().join("audit.jsonl"), &[]))
        .await
        .unwrap();
    let r = run(&state, false).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let message = r.message.unwrap();
    assert!(!message.contains("wrong-pass-77aa"), "{message}");
}

#[tokio::test]
async fn the_unlink_script_checks_each_key_and_counts_a_repeated_key_once() {
    use resource_janitor::backend::redis::sweep::UNLINK_IF_STILL_IDLE;
    let svc = require_services!();
    let ns = Namespace::new("redis-script");
    let url = ns.fresh_redis(svc).await;
    let mut con = connect(&url).await;
    set(&mut con, "gone:a", "v").await;
    set(&mut con, "kept:ttl", "v").await;
    let _: () = redis::cmd("EXPIRE")
        .arg("kept:ttl")
        .arg(600)
        .query_async(&mut con)
        .await
        .unwrap();
    set(&mut con, "gone:b", "v").await;
    // no idle limit (a `delete` policy): keys without TTL go, a key given twice counts once,
    // a missing key is left alone
    let out: Vec<i64> = redis::cmd("EVAL")
        .arg(UNLINK_IF_STILL_IDLE)
        .arg(0)
        .arg(0)
        .arg(&["gone:a", "kept:ttl", "gone:a", "missing", "gone:b"])
        .query_async(&mut con)
        .await
        .unwrap();
    // an unlinked key answers the bytes it held (MEMORY USAGE), one left alone answers 0
    let unlinked: Vec<bool> = out.iter().map(|&bytes| bytes > 0).collect();
    assert_eq!(unlinked, [true, false, false, false, true], "{out:?}");
    assert!(out[0] >= 16 && out[0] == out[4], "{out:?}: same-sized keys");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(left, ["kept:ttl"]);
    // an idle limit: a key just written is not idle and stays
    set(&mut con, "fresh", "v").await;
    let out: Vec<i64> = redis::cmd("EVAL")
        .arg(UNLINK_IF_STILL_IDLE)
        .arg(0)
        .arg(3600)
        .arg("fresh")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(out, [0]);
    assert_eq!(pttl(&mut con, b"fresh").await, -1);
}
