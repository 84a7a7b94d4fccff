//! The S3 sweeper's second reference check, just before DeleteObjects, against the shared
//! Garage and secantusd-rs: skipped while the plan's checks are younger than
//! `JANITOR_S3_RECHECK_AFTER_SECONDS` (that keeps MongoDB queries at one per 1000 old
//! objects), made once they are older, and then it saves an object whose document was
//! written after planning.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use mongodb::bson::doc;
use resource_janitor::backend::sweep::Sweeper;
use resource_janitor::backend::{mongo::Mongo, s3::S3, s3::sweep::S3Sweeper};

use crate::require_services;
use crate::smoke::s3_client;
use crate::support::{self, Namespace};

/// Plans and applies one run; returns (deleted, skipped, the run's notes).
async fn sweep(
    sweeper: &S3Sweeper,
    dir: &std::path::Path,
    between: impl AsyncFnOnce(),
) -> (u64, Vec<String>, Vec<String>) {
    let ctx = crate::support::sweep_ctx(Duration::from_millis(500), dir);
    let (mut plan, planned) = sweeper.plan(&ctx).await.unwrap();
    between().await;
    let (mut deleted, mut skipped) = (0, Vec::new());
    for batch in plan.batches().unwrap() {
        let applied = planned.apply(&batch.unwrap(), &ctx).await.unwrap();
        deleted += applied.deleted;
        skipped.extend(applied.skipped);
    }
    (deleted, skipped, planned.finish(&ctx).await)
}

#[tokio::test]
async fn references_are_checked_again_only_once_the_plan_is_older_than_the_window() {
    let svc = require_services!();
    let ns = Namespace::new("s3-recheck");
    let prefix = ns.s3_prefix();
    let db = ns.mongo_db();
    let dir = tempfile::tempdir().unwrap();
    let pairs = [
        ("S3_ENDPOINT", svc.get("S3_ENDPOINT")),
        ("S3_BUCKET", svc.get("S3_BUCKET")),
        ("AWS_ACCESS_KEY_ID", svc.get("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", svc.get("AWS_SECRET_ACCESS_KEY")),
        ("AWS_REGION", svc.get("AWS_REGION")),
        ("MONGODB_URI", svc.get("MONGODB_URI")),
        ("MONGODB_DATABASE", db.as_str()),
        ("JANITOR_S3_PREFIXES", prefix.as_str()),
        ("JANITOR_ALLOW_SHORT_TTL", "true"),
        ("JANITOR_S3_GRACE_HOURS", "0.0001"),
    ];
    let s3 = s3_client(
        svc.get("S3_ENDPOINT"),
        svc.get("AWS_ACCESS_KEY_ID"),
        svc.get("AWS_SECRET_ACCESS_KEY"),
    );
    let docs = mongodb::Client::with_uri_str(svc.get("MONGODB_URI"))
        .await
        .unwrap()
        .database(&db)
        .collection::<mongodb::bson::Document>("documents");
    docs.insert_one(doc! { "minio_key": "elsewhere/unrelated.pdf" })
        .await
        .unwrap();
    let put = async |keys: &[String]| {
        for key in keys {
            s3.put_object()
                .bucket(svc.get("S3_BUCKET"))
                .key(key)
                .body(ByteStream::from_static(b"pdf"))
                .send()
                .await
                .unwrap();
        }
        // older than the run's 0.5 s TTL and the 0.36 s grace floor
        tokio::time::sleep(Duration::from_millis(1500)).await;
    };
    let sweeper = |extra: &[(&str, &str)]| {
        let settings = support::settings(&pairs, &dir.path().join("audit.jsonl"), extra);
        let timeout = Duration::from_secs(5);
        let s3 = S3::connect(settings.s3.as_ref().unwrap(), timeout);
        let mongo = settings.mongo.clone();
        async move {
            let mongo = Mongo::connect(mongo.as_ref().unwrap(), timeout)
                .await
                .unwrap();
            S3Sweeper::new(s3, Some(mongo), settings.s3_sweep.clone(), None)
        }
    };
    let keys =
        |tag: &str| -> Vec<String> { (0..3).map(|i| format!("{prefix}{tag}-{i}.pdf")).collect() };

    // the default window (30 s): a run of seconds needs no second query
    let fresh = keys("fresh");
    put(&fresh).await;
    let s = sweeper(&[]).await;
    let (deleted, skipped, notes) = sweep(&s, dir.path(), async || {}).await;
    assert_eq!((deleted, skipped.len()), (3, 0));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("checked again before 0 of 1 DeleteObjects requests")),
        "{notes:?}"
    );

    // a 1 s window, and a document written 1.2 s after planning: checked again, saved
    let late = keys("late");
    put(&late).await;
    let s = sweeper(&[("JANITOR_S3_RECHECK_AFTER_SECONDS", "1")]).await;
    let saved = late[1].clone();
    let (deleted, skipped, notes) = sweep(&s, dir.path(), async || {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        docs.insert_one(doc! { "minio_key": saved.as_str() })
            .await
            .unwrap();
    })
    .await;
    assert_eq!((deleted, skipped), (2, vec![saved.clone()]));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("checked again before 1 of 1 DeleteObjects requests")),
        "{notes:?}"
    );

    // 0: checked again before every batch, however young the plan
    let strict = keys("strict");
    put(&strict).await;
    let s = sweeper(&[("JANITOR_S3_RECHECK_AFTER_SECONDS", "0")]).await;
    let saved = strict[0].clone();
    let (deleted, skipped, _) = sweep(&s, dir.path(), async || {
        docs.insert_one(doc! { "minio_key": saved.as_str() })
            .await
            .unwrap();
    })
    .await;
    assert_eq!((deleted, skipped), (2, vec![saved]));
}
