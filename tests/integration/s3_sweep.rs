//! The S3 sweeper against a real Garage (private, under libfaketime for old objects) and a
//! real MongoDB-wire server.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use mongodb::bson::{Document, doc};
use resource_janitor::app::Janitor;
use resource_janitor::backend::sweep::Sweeper;
use resource_janitor::config::Settings;
use resource_janitor::resource::Resource;
use resource_janitor::runs::Outcome;

use crate::require_services;
use crate::smoke::s3_client;
use crate::support;
use crate::support::process::{self, Server};
use crate::support::{Namespace, Services};

/// Orphans old enough to go (relative to uploads/u1/).
const OLD_ORPHANS: [&str; 7] = [
    "old-orphan.pdf",
    "with space.pdf",
    "ünïcode-ß.pdf",
    "plus+sign.pdf",
    "percent%20encoded.pdf",
    "/double-slash.pdf",
    "zero.bin",
];

fn settings(
    garage: &Server,
    mongo_uri: &str,
    db: &str,
    audit: &std::path::Path,
    extra: &[(&str, &str)],
) -> Arc<Settings> {
    let base = [
        ("S3_ENDPOINT", garage.info["endpoint"].as_str()),
        ("S3_BUCKET", garage.info["bucket"].as_str()),
        ("AWS_ACCESS_KEY_ID", garage.info["access_key"].as_str()),
        ("AWS_SECRET_ACCESS_KEY", garage.info["secret_key"].as_str()),
        ("AWS_REGION", "garage"),
        ("MONGODB_URI", mongo_uri),
        ("MONGODB_DATABASE", db),
        ("JANITOR_S3_PREFIXES", "uploads/u1"),
        ("JANITOR_S3_PROTECT", "uploads/u1/keep"),
        ("JANITOR_S3_REF_FIELDS", "minio_key,minio_path"),
        ("JANITOR_MAX_DELETE_FRACTION", "1"),
        ("JANITOR_BACKEND_TIMEOUT_SECONDS", "3"),
    ];
    support::settings(&base, audit, extra)
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, len: usize) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(vec![b'x'; len]))
        .send()
        .await
        .unwrap();
}

async fn list(garage: &Server) -> BTreeSet<String> {
    let s3 = client(garage);
    let mut pages = s3
        .list_objects_v2()
        .bucket(&garage.info["bucket"])
        .into_paginator()
        .send();
    let mut keys = BTreeSet::new();
    while let Some(page) = pages.next().await {
        keys.extend(
            page.unwrap()
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys
}

fn client(garage: &Server) -> aws_sdk_s3::Client {
    s3_client(
        &garage.info["endpoint"],
        &garage.info["access_key"],
        &garage.info["secret_key"],
    )
}

/// The matrix: old/new × referenced/unreferenced, sibling and protected prefixes, odd keys.
/// Returns the keys that must be deleted.
async fn seed(garage: &Server, docs: &mongodb::Collection<Document>) -> BTreeSet<String> {
    let bucket = garage.info["bucket"].clone();
    process::set_clock(garage, "-8d");
    let old = client(garage);
    let mut expected = BTreeSet::new();
    for name in OLD_ORPHANS {
        let key = format!("uploads/u1/{name}");
        put(&old, &bucket, &key, if name == "zero.bin" { 0 } else { 10 }).await;
        expected.insert(key);
    }
    put(&old, &bucket, "uploads/u1/old-ref.pdf", 10).await;
    put(&old, &bucket, "uploads/u1/old-ref-in-array.pdf", 10).await;
    put(&old, &bucket, "uploads/u1/old-ref-by-path.pdf", 10).await;
    put(&old, &bucket, "uploads/u10/old-orphan.pdf", 10).await; // sibling prefix
    put(&old, &bucket, "uploads/u1/keep/old-orphan.pdf", 10).await; // protected
    put(&old, &bucket, "other/old-orphan.pdf", 10).await; // outside the prefix
    process::set_clock(garage, "+0");
    let new = client(garage); // the SDK learns clock skew: a fresh client for the new clock
    put(&new, &bucket, "uploads/u1/new-orphan.pdf", 10).await; // in flight: younger than grace
    put(&new, &bucket, "uploads/u1/new-ref.pdf", 10).await;
    docs.insert_many([
        doc! { "minio_key": "uploads/u1/old-ref.pdf" },
        doc! { "minio_path": "uploads/u1/old-ref-by-path.pdf" },
        // an array of keys: MongoDB's $in matches it, so the janitor must read it back
        doc! { "minio_key": ["uploads/u1/old-ref-in-array.pdf", "uploads/u1/old-ref.pdf"] },
        doc! { "minio_key": "uploads/u1/new-ref.pdf" },
        doc! { "minio_key": "uploads/u1/gone.pdf" }, // dangling: never deleted, no object
    ])
    .await
    .unwrap();
    expected
}

/// The daemon's state over [`settings`].
async fn state(
    garage: &Server,
    mongo_uri: &str,
    db: &str,
    audit: &std::path::Path,
    extra: &[(&str, &str)],
) -> Janitor {
    Janitor::new(settings(garage, mongo_uri, db, audit, extra))
        .await
        .unwrap()
}

/// One run of the engine as of now; its record.
async fn run(state: &Janitor, dry_run: bool) -> resource_janitor::runs::RunRecord {
    support::run_once(state, support::cli_request(Resource::S3, dry_run))
        .await
        .record
}

async fn mongo_docs(uri: &str, db: &str) -> mongodb::Collection<Document> {
    mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(db)
        .collection("documents")
}

#[tokio::test]
async fn deletes_exactly_the_old_unreferenced_objects_and_dry_run_matches() {
    let svc: &Services = require_services!();
    let ns = Namespace::new("s3-matrix");
    let garage = process::garage_with_clock(svc);
    let docs = mongo_docs(svc.get("MONGODB_URI"), &ns.mongo_db()).await;
    let expected = seed(&garage, &docs).await;
    let before = list(&garage).await;
    let dir = tempfile::tempdir().unwrap();
    let state = state(
        &garage,
        svc.get("MONGODB_URI"),
        &ns.mongo_db(),
        &dir.path().join("a.jsonl"),
        &[],
    )
    .await;

    let dry = support::run_once(&state, support::cli_request(Resource::S3, true)).await;
    assert_eq!(
        dry.record.outcome,
        Outcome::DryRun,
        "{:?}",
        dry.record.message
    );
    let planned: BTreeSet<String> = dry
        .plan
        .unwrap()
        .items()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(
        planned, expected,
        "the plan is exactly the old orphans under uploads/u1/"
    );
    assert_eq!(list(&garage).await, before, "a dry run deletes nothing");
    assert!(
        dry.record
            .notes
            .iter()
            .any(|n| n.contains("no index on documents.minio_key")),
        "{:?}",
        dry.record.notes
    );

    let real = support::run_once(&state, support::cli_request(Resource::S3, false)).await;
    assert_eq!(
        real.record.outcome,
        Outcome::Succeeded,
        "{:?}",
        real.record.message
    );
    let applied: BTreeSet<String> = real
        .plan
        .unwrap()
        .items()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(
        applied, planned,
        "the real run applies what the dry run showed"
    );
    assert_eq!(real.record.deleted, expected.len() as u64);
    // measured from the listing: 10 bytes each but zero.bin
    let zero = expected.iter().filter(|k| k.ends_with("zero.bin")).count() as u64;
    assert_eq!(real.record.bytes_freed, 10 * (expected.len() as u64 - zero));
    let after = list(&garage).await;
    let gone: BTreeSet<String> = before.difference(&after).cloned().collect();
    assert_eq!(gone, expected);
    for survivor in [
        "uploads/u10/old-orphan.pdf",
        "uploads/u1/keep/old-orphan.pdf",
        "uploads/u1/new-orphan.pdf",
        "uploads/u1/old-ref-by-path.pdf",
        "uploads/u1/old-ref-in-array.pdf",
    ] {
        assert!(after.contains(survivor), "{survivor} must survive");
    }
    let dangling = real
        .record
        .notes
        .iter()
        .find(|n| n.contains("dangling"))
        .expect("dangling reported");
    assert!(
        dangling.starts_with("1 dangling references") && dangling.contains("uploads/u1/gone.pdf"),
        "{dangling}"
    );
    let audit = std::fs::read_to_string(dir.path().join("a.jsonl")).unwrap();
    assert!(
        audit.contains("uploads/u1/ünïcode-ß.pdf")
            && audit.contains("uploads/u1//double-slash.pdf"),
        "{audit}"
    );
}

#[tokio::test]
async fn mongo_down_means_zero_deletions_failed_closed() {
    let svc = require_services!();
    let mut mongo = process::mongo(svc);
    let uri = mongo.info["uri"].clone();
    let garage = process::garage_with_clock(svc);
    let docs = mongo_docs(&uri, "app").await;
    let expected = seed(&garage, &docs).await;
    let before = list(&garage).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(
        &garage,
        &uri,
        "app",
        &dir.path().join("a.jsonl"),
        &[
            ("JANITOR_BACKEND_TIMEOUT_SECONDS", "1"),
            ("JANITOR_S3_RECHECK_AFTER_SECONDS", "0"),
        ],
    );
    let state = Janitor::new(settings.clone()).await.unwrap();

    // stopped between planning and applying: the re-check fails, nothing is deleted
    let timeout = Duration::from_secs(1);
    let s3 = resource_janitor::backend::s3::S3::connect(settings.s3.as_ref().unwrap(), timeout);
    let m =
        resource_janitor::backend::mongo::Mongo::connect(settings.mongo.as_ref().unwrap(), timeout)
            .await
            .unwrap();
    let sweeper = resource_janitor::backend::s3::sweep::S3Sweeper::new(
        s3,
        Some(m),
        settings.s3_sweep.clone(),
        None,
    );
    let ctx = crate::support::sweep_ctx(Duration::from_secs(7 * 86_400), dir.path());
    let (mut plan, planned) = sweeper.plan(&ctx).await.unwrap();
    assert_eq!(plan.deletions(), expected.len() as u64);
    mongo.kill();
    for batch in plan.batches().unwrap() {
        let err = planned.apply(&batch.unwrap(), &ctx).await.unwrap_err();
        assert!(
            matches!(
                err,
                resource_janitor::backend::sweep::SweepError::ReferenceUnavailable(_)
            ),
            "{err}"
        );
    }
    assert_eq!(list(&garage).await, before, "nothing deleted");

    // and a whole run with MongoDB down: failed_closed, zero deletions
    let r = run(&state, false).await;
    assert_eq!(
        (r.outcome, r.deleted),
        (Outcome::FailedClosed, 0),
        "{:?}",
        r.message
    );
    assert!(r.message.unwrap().contains("nothing deleted"));
    assert_eq!(list(&garage).await, before);
}

#[tokio::test]
async fn empty_reference_collection_is_refused_unless_allowed() {
    let svc = require_services!();
    let ns = Namespace::new("s3-empty-refs");
    let garage = process::garage_with_clock(svc);
    process::set_clock(&garage, "-8d");
    put(
        &client(&garage),
        &garage.info["bucket"],
        "uploads/u1/a.pdf",
        1,
    )
    .await;
    process::set_clock(&garage, "+0");
    let dir = tempfile::tempdir().unwrap();
    let uri = svc.get("MONGODB_URI");
    let state = state(
        &garage,
        uri,
        &ns.mongo_db(),
        &dir.path().join("a.jsonl"),
        &[],
    )
    .await;
    let r = run(&state, false).await;
    assert_eq!(r.outcome, Outcome::FailedClosed);
    assert!(r.message.unwrap().contains("empty or missing"));
    assert_eq!(list(&garage).await.len(), 1);

    let allowed = settings(
        &garage,
        uri,
        &ns.mongo_db(),
        &dir.path().join("a.jsonl"),
        &[("JANITOR_S3_ALLOW_EMPTY_REFERENCES", "true")],
    );
    let state = Janitor::new(allowed).await.unwrap();
    let r = run(&state, false).await;
    assert_eq!(
        (r.outcome, r.deleted),
        (Outcome::Succeeded, 1),
        "{:?}",
        r.message
    );
}

#[tokio::test]
async fn more_than_a_page_and_the_cap() {
    let svc = require_services!();
    let ns = Namespace::new("s3-pages");
    let garage = process::garage_with_clock(svc);
    process::set_clock(&garage, "-8d");
    let s3 = client(&garage);
    let bucket = garage.info["bucket"].clone();
    let puts = (0..1100).map(|i| {
        let (s3, bucket) = (s3.clone(), bucket.clone());
        async move { put(&s3, &bucket, &format!("uploads/u1/bulk/{i:05}"), 1).await }
    });
    futures::future::join_all(puts).await;
    process::set_clock(&garage, "+0");
    let docs = mongo_docs(svc.get("MONGODB_URI"), &ns.mongo_db()).await;
    docs.insert_one(doc! { "minio_key": "uploads/u1/bulk/00000" })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let uri = svc.get("MONGODB_URI");
    // the default cap (25 %) refuses 1099 of 1100
    let capped = settings(
        &garage,
        uri,
        &ns.mongo_db(),
        &dir.path().join("a.jsonl"),
        &[("JANITOR_MAX_DELETE_FRACTION", "0.25")],
    );
    let r = run(&Janitor::new(capped).await.unwrap(), false).await;
    assert_eq!(
        (r.outcome, r.deleted, r.planned_deletions),
        (Outcome::AbortedCap, 0, 1099),
        "{:?}",
        r.message
    );
    assert_eq!(list(&garage).await.len(), 1100);

    let state = state(
        &garage,
        uri,
        &ns.mongo_db(),
        &dir.path().join("a.jsonl"),
        &[],
    )
    .await;
    let r = run(&state, false).await;
    assert_eq!(
        (r.outcome, r.store_items, r.deleted),
        (Outcome::Succeeded, 1100, 1099),
        "{:?}",
        r.message
    );
    assert_eq!(
        list(&garage).await,
        BTreeSet::from(["uploads/u1/bulk/00000".to_string()])
    );
}

#[tokio::test]
async fn bucket_measurement_is_cached_between_passes() {
    let svc = require_services!();
    let garage = process::garage_with_clock(svc);
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(
        &garage,
        svc.get("MONGODB_URI"),
        "unused",
        &dir.path().join("a.jsonl"),
        &[],
    );
    let conn = settings.s3.as_ref().unwrap();
    let timeout = Duration::from_secs(3);
    let cached = resource_janitor::backend::s3::S3::connect(conn, timeout)
        .with_measure_cache(Duration::from_secs(900));
    let uncached = resource_janitor::backend::s3::S3::connect(conn, timeout);
    let bucket = garage.info["bucket"].clone();
    put(&client(&garage), &bucket, "a", 100).await;
    let now = SystemTime::now();
    assert_eq!(cached.measure(1 << 30, now).await.unwrap().total_items, 1);
    put(&client(&garage), &bucket, "b", 100).await;
    let again = cached.measure(1 << 30, now).await.unwrap();
    assert_eq!(
        (again.total_items, again.size_bytes),
        (1, Some(100)),
        "served from the cache"
    );
    let fresh = uncached.measure(1 << 30, now).await.unwrap();
    assert_eq!(
        (fresh.total_items, fresh.size_bytes),
        (2, Some(200)),
        "no cache: listed"
    );
}
