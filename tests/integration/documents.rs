//! The document lifecycle against the real servers: expired documents leave with their
//! file, points and cache keys; everything live stays.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, ScrollPointsBuilder, UpsertPointsBuilder,
    VectorParamsBuilder, value::Kind,
};
use resource_janitor::app::Janitor;
use resource_janitor::config::Settings;
use resource_janitor::drift::DriftBoard;
use resource_janitor::metrics::Metrics;
use resource_janitor::resource::Resource;
use resource_janitor::runs::{Outcome, RunRecord};

use crate::require_services;
use crate::smoke::s3_client;
use crate::support::{self, Namespace, Services, process};

const DAY: u64 = 86_400;

/// The world of one test: its database, bucket prefix, Redis database and collection.
struct World {
    ns: Namespace,
    redis: String,
    mongo_uri: String,
    collection: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    qdrant: Qdrant,
}

impl World {
    async fn new(svc: &Services, name: &str, mongo_uri: &str) -> World {
        let ns = Namespace::new(name);
        let redis = ns.fresh_redis(svc).await;
        let s3 = s3_client(
            svc.get("S3_ENDPOINT"),
            svc.get("AWS_ACCESS_KEY_ID"),
            svc.get("AWS_SECRET_ACCESS_KEY"),
        );
        let qdrant = Qdrant::from_url(svc.get("QDRANT_URL"))
            .skip_compatibility_check()
            .build()
            .unwrap();
        let collection = ns.collection("docs");
        qdrant
            .create_collection(
                CreateCollectionBuilder::new(&collection)
                    .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
            )
            .await
            .unwrap();
        World {
            redis,
            mongo_uri: mongo_uri.to_string(),
            collection,
            s3,
            bucket: svc.get("S3_BUCKET").to_string(),
            qdrant,
            ns,
        }
    }

    fn settings(&self, svc: &Services, audit: &std::path::Path) -> Arc<Settings> {
        self.settings_with(svc, audit, &[])
    }

    fn settings_with(
        &self,
        svc: &Services,
        audit: &std::path::Path,
        extra: &[(&str, &str)],
    ) -> Arc<Settings> {
        let db = self.ns.mongo_db();
        let pairs = [
            ("REDIS_URL", self.redis.as_str()),
            ("QDRANT_URL", svc.get("QDRANT_URL")),
            ("S3_ENDPOINT", svc.get("S3_ENDPOINT")),
            ("S3_BUCKET", svc.get("S3_BUCKET")),
            ("AWS_ACCESS_KEY_ID", svc.get("AWS_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY", svc.get("AWS_SECRET_ACCESS_KEY")),
            ("AWS_REGION", svc.get("AWS_REGION")),
            ("MONGODB_URI", self.mongo_uri.as_str()),
            ("MONGODB_DATABASE", db.as_str()),
            ("JANITOR_QDRANT_COLLECTIONS", self.collection.as_str()),
            ("JANITOR_DOCUMENTS_EXPIRE", "true"),
            ("JANITOR_MAX_DELETE_FRACTION", "1"),
            ("JANITOR_BACKEND_TIMEOUT_SECONDS", "3"),
        ];
        support::settings(&pairs, audit, extra)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.ns.s3_prefix())
    }

    async fn db(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.mongo_uri)
            .await
            .unwrap()
            .database(&self.ns.mongo_db())
    }

    /// A document `age` old with `status`, its object `file` (if any), `points` points and
    /// two cache keys.
    async fn document(&self, id: Bson, age: u64, status: &str, file: Option<&str>, points: u64) {
        let created = SystemTime::now() - Duration::from_secs(age);
        let mut d = doc! { "_id": id.clone(), "status": status, "created_at": DateTime::from_system_time(created) };
        if let Some(f) = file {
            d.insert("minio_key", self.key(f));
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(self.key(f))
                .body(b"pdf".to_vec().into())
                .send()
                .await
                .unwrap();
        }
        self.db()
            .await
            .collection::<Document>("documents")
            .insert_one(d)
            .await
            .unwrap();
        let text = text(&id);
        self.points(&text, points).await;
        let mut con = support::redis_con(&self.redis).await;
        for i in 0..2 {
            redis::cmd("SET")
                .arg(format!("doc_segments:{text}:{i}"))
                .arg("v")
                .query_async::<()>(&mut con)
                .await
                .unwrap();
        }
    }

    /// `n` more points of the document `id`.
    async fn points(&self, id: &str, n: u64) {
        let base = fastrand::u64(1..u64::MAX / 2);
        let pts: Vec<PointStruct> = (0..n)
            .map(|i| {
                let payload =
                    qdrant_client::Payload::try_from(serde_json::json!({ "document_id": id }))
                        .unwrap();
                PointStruct::new(base + i, vec![0.1, 0.2, 0.3, 0.4], payload)
            })
            .collect();
        if !pts.is_empty() {
            self.qdrant
                .upsert_points(UpsertPointsBuilder::new(&self.collection, pts).wait(true))
                .await
                .unwrap();
        }
    }

    async fn session(&self, holds: Vec<Bson>, updated_ago: u64) {
        let updated = SystemTime::now() - Duration::from_secs(updated_ago);
        let d =
            doc! { "attached_file_ids": holds, "updated_at": DateTime::from_system_time(updated) };
        self.db()
            .await
            .collection::<Document>("chat_sessions")
            .insert_one(d)
            .await
            .unwrap();
    }

    async fn documents(&self) -> BTreeSet<String> {
        let mut cursor = self
            .db()
            .await
            .collection::<Document>("documents")
            .find(doc! {})
            .await
            .unwrap();
        let mut ids = BTreeSet::new();
        while cursor.advance().await.unwrap() {
            ids.insert(text(
                &cursor
                    .deserialize_current()
                    .unwrap()
                    .get("_id")
                    .unwrap()
                    .clone(),
            ));
        }
        ids
    }

    async fn objects(&self) -> BTreeSet<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.ns.s3_prefix())
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key())
            .map(|k| k.trim_start_matches(&self.ns.s3_prefix()).to_string())
            .collect()
    }

    /// Documents that still have points.
    async fn with_points(&self) -> BTreeSet<String> {
        let r = self
            .qdrant
            .scroll(
                ScrollPointsBuilder::new(&self.collection)
                    .limit(10_000)
                    .with_payload(true),
            )
            .await
            .unwrap();
        r.result
            .iter()
            .filter_map(|p| match p.payload.get("document_id")?.kind.clone()? {
                Kind::StringValue(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Documents that still have cache keys.
    async fn with_keys(&self) -> BTreeSet<String> {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("doc_segments:*")
            .query_async(&mut support::redis_con(&self.redis).await)
            .await
            .unwrap();
        keys.iter()
            .filter_map(|k| k.strip_prefix("doc_segments:")?.rsplit_once(':'))
            .map(|(id, _)| id.to_string())
            .collect()
    }
}

fn text(id: &Bson) -> String {
    match id {
        Bson::ObjectId(o) => o.to_hex(),
        Bson::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn run(
    janitor: &Janitor,
    dry_run: bool,
) -> (RunRecord, Option<resource_janitor::plan::Plan>) {
    let r = support::run_once(janitor, support::cli_request(Resource::Documents, dry_run)).await;
    (r.record, r.plan)
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn expired_documents_leave_with_their_file_points_and_keys_and_nothing_live_goes() {
    let svc = require_services!();
    let w = World::new(svc, "docs-cascade", svc.get("MONGODB_URI")).await;
    let (a, c, d) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    // expired: an ObjectId id, a string id, one held only by a stale session, one whose id
    // holds glob characters, one sharing its object with a live document
    w.document(a.into(), 10 * DAY, "ready", Some("a.pdf"), 3)
        .await;
    w.document("doc-b".into(), 10 * DAY, "failed", Some("b.pdf"), 2)
        .await;
    w.document(d.into(), 10 * DAY, "ready", Some("d.pdf"), 1)
        .await;
    w.document("x*y".into(), 10 * DAY, "ready", None, 0).await;
    w.document("doc-g".into(), 10 * DAY, "ready", Some("shared.pdf"), 1)
        .await;
    // live: held by an active session, in flight, too young, sharing, and an id x*y's MATCH
    // would take for its own
    w.document(c.into(), 10 * DAY, "ready", Some("c.pdf"), 2)
        .await;
    w.document("doc-e".into(), 10 * DAY, "processing", Some("e.pdf"), 1)
        .await;
    w.document("doc-f".into(), 6 * DAY, "ready", Some("f.pdf"), 1)
        .await;
    w.document("doc-h".into(), DAY, "ready", Some("shared.pdf"), 1)
        .await;
    w.document("xzy".into(), DAY, "ready", None, 0).await;
    w.session(vec![c.into(), "doc-f".into()], 3600).await;
    w.session(vec![d.into()], 30 * DAY).await;
    // drift: a point and cache keys of a document that never existed, a ready document
    // without a vector
    w.document("doc-novec".into(), DAY, "ready", None, 0).await;
    w.document("ghost".into(), DAY, "ready", None, 1).await;
    w.db()
        .await
        .collection::<Document>("documents")
        .delete_one(doc! { "_id": "ghost" })
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let janitor = Janitor::new(w.settings(svc, &audit)).await.unwrap();
    let (planned, plan) = run(&janitor, true).await;
    assert_eq!(planned.outcome, Outcome::DryRun, "{planned:?}");
    let items = plan.unwrap().items().unwrap();
    let planned_ids: BTreeSet<String> = items.iter().map(|i| i.id.clone()).collect();
    let expired = set(&[&a.to_hex(), "doc-b", &d.to_hex(), "x*y", "doc-g"]);
    assert_eq!(
        planned_ids, expired,
        "the dry run lists exactly what the run deletes"
    );
    let a_item = items.iter().find(|i| i.id == a.to_hex()).unwrap();
    let detail = a_item.detail.as_ref().and_then(|d| d.json()).unwrap();
    assert_eq!(detail["objects"], serde_json::json!([w.key("a.pdf")]));
    assert_eq!(detail["points"], 3);
    assert_eq!(detail["redis_keys"][""].as_array().unwrap().len(), 2);
    let g = items
        .iter()
        .find(|i| i.id == "doc-g")
        .unwrap()
        .detail
        .as_ref()
        .and_then(|d| d.json())
        .unwrap();
    assert_eq!(g["kept_objects"], serde_json::json!([w.key("shared.pdf")]));
    assert_eq!(w.documents().await.len(), 11, "a dry run deletes nothing");

    let (r, _) = run(&janitor, false).await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{r:?}");
    assert_eq!(r.deleted, 5, "{r:?}");
    let live = set(&[&c.to_hex(), "doc-e", "doc-f", "doc-h", "xzy", "doc-novec"]);
    assert_eq!(w.documents().await, live);
    assert_eq!(
        w.objects().await,
        set(&["c.pdf", "e.pdf", "f.pdf", "shared.pdf"]),
        "the shared object stays while a live document references it"
    );
    assert_eq!(
        w.with_points().await,
        set(&[&c.to_hex(), "doc-e", "doc-f", "doc-h", "ghost"])
    );
    assert_eq!(
        w.with_keys().await,
        set(&[
            &c.to_hex(),
            "doc-e",
            "doc-f",
            "doc-h",
            "xzy",
            "doc-novec",
            "ghost"
        ]),
        "x*y's keys went, xzy's stayed"
    );
    // what happened to a document is one grep: its intent lists what went with it
    let batches = support::applied_batches(&audit);
    let a_line = batches
        .iter()
        .flat_map(|b| b["items"].as_array().unwrap())
        .find(|i| i["id"] == a.to_hex().as_str())
        .unwrap();
    assert_eq!(
        a_line["detail"]["objects"],
        serde_json::json!([w.key("a.pdf")])
    );
    assert_eq!(
        a_line["detail"]["redis_keys"][""].as_array().unwrap().len(),
        2
    );
    assert!(
        r.notes.iter().any(|n| n.starts_with(
            "documents batch: 5 documents, 3 objects, 7 points, 10 cache keys deleted"
        )),
        "{:?}",
        r.notes
    );
    // a second pass finds nothing more
    let (again, _) = run(&janitor, false).await;
    assert_eq!(
        (again.outcome, again.planned_deletions),
        (Outcome::Succeeded, 0)
    );
}

#[tokio::test]
async fn the_cap_of_each_dependent_store_holds_inside_the_cascade() {
    let svc = require_services!();
    let w = World::new(svc, "docs-caps", svc.get("MONGODB_URI")).await;
    // 3 of 8 documents expire (37.5 %), 6 of 16 cache keys (37.5 %), but 15 of 20 points
    for i in 0..3 {
        w.document(Bson::String(format!("old{i}")), 10 * DAY, "ready", None, 5)
            .await;
    }
    w.document(Bson::String("live".into()), 60, "ready", None, 5)
        .await;
    for i in 0..4 {
        w.document(Bson::String(format!("bare{i}")), 60, "ready", None, 0)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("a.jsonl");
    let half = [("JANITOR_MAX_DELETE_FRACTION", "0.5")];
    let janitor = Janitor::new(w.settings_with(svc, &audit, &half))
        .await
        .unwrap();
    let (r, _) = run(&janitor, false).await;
    assert_eq!(r.outcome, Outcome::AbortedCap, "{r:?}");
    let message = r.message.unwrap_or_default();
    assert!(
        message.contains("deletes 15 of 20 items of qdrant"),
        "{message}"
    );
    assert_eq!(w.documents().await.len(), 8, "nothing deleted");
    assert_eq!(w.with_points().await.len(), 4);

    // within every store's cap: the cascade goes
    let most = [("JANITOR_MAX_DELETE_FRACTION", "0.8")];
    let janitor = Janitor::new(w.settings_with(svc, &audit, &most))
        .await
        .unwrap();
    let (r, _) = run(&janitor, false).await;
    assert_eq!((r.outcome, r.deleted), (Outcome::Succeeded, 3), "{r:?}");
    assert_eq!(w.with_points().await, set(&["live"]));
}

#[tokio::test]
async fn points_written_since_planning_leave_the_batch_whole_for_the_next_pass() {
    let svc = require_services!();
    let w = World::new(svc, "docs-grown", svc.get("MONGODB_URI")).await;
    w.document("old-1".into(), 10 * DAY, "ready", Some("g1.pdf"), 2)
        .await;
    w.document("old-2".into(), 10 * DAY, "ready", Some("g2.pdf"), 2)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let janitor = Janitor::new(w.settings(svc, &dir.path().join("a.jsonl")))
        .await
        .unwrap();
    let sweepers =
        janitor
            .backends
            .sweepers(&janitor.settings, &Metrics::new(), &DriftBoard::default());
    let docs = sweepers
        .iter()
        .find(|s| s.resource() == Resource::Documents)
        .unwrap();
    let ctx = support::sweep_ctx(Duration::from_secs(7 * DAY), dir.path());
    let (mut plan, planned) = docs.plan(&ctx).await.unwrap();
    assert_eq!(plan.deletions(), 2);
    let batches: Vec<_> = plan.batches().unwrap().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].detail, Some(serde_json::json!({ "points": 4 })));

    // the application indexes old-2 again after planning: the batch would delete more
    // points than the cap weighed, so nothing of it is touched
    w.points("old-2", 3).await;
    let applied = planned.apply(&batches[0], &ctx).await.unwrap();
    assert_eq!(
        (applied.deleted, applied.skipped.len()),
        (0, 2),
        "{applied:?}"
    );
    assert!(
        applied.notes[0].contains("have 7 points, 4 when planned"),
        "{:?}",
        applied.notes
    );
    assert_eq!(w.documents().await, set(&["old-1", "old-2"]));
    assert_eq!(w.objects().await, set(&["g1.pdf", "g2.pdf"]));
    assert_eq!(w.with_points().await, set(&["old-1", "old-2"]));
    assert_eq!(w.with_keys().await, set(&["old-1", "old-2"]));

    // the next pass plans them again, with their points, and finishes
    let (r, _) = run(&janitor, false).await;
    assert_eq!((r.outcome, r.deleted), (Outcome::Succeeded, 2), "{r:?}");
    assert!(w.documents().await.is_empty());
    assert!(w.with_points().await.is_empty() && w.with_keys().await.is_empty());
}

#[tokio::test]
async fn a_document_whose_dependents_are_half_gone_is_finished_by_the_next_pass() {
    let svc = require_services!();
    let w = World::new(svc, "docs-resume", svc.get("MONGODB_URI")).await;
    let id = ObjectId::new();
    w.document(id.into(), 10 * DAY, "ready", Some("half.pdf"), 2)
        .await;
    // a pass killed after the S3 step: the object is gone, the rest is not
    w.s3.delete_object()
        .bucket(&w.bucket)
        .key(w.key("half.pdf"))
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let janitor = Janitor::new(w.settings(svc, &dir.path().join("a.jsonl")))
        .await
        .unwrap();
    let (r, _) = run(&janitor, false).await;
    assert_eq!((r.outcome, r.deleted), (Outcome::Succeeded, 1), "{r:?}");
    assert!(w.documents().await.is_empty());
    assert!(w.with_points().await.is_empty());
    assert!(w.with_keys().await.is_empty());
}

#[tokio::test]
async fn mongodb_stopped_mid_pass_deletes_nothing_more_and_fails_closed() {
    let svc = require_services!();
    let mut mongo = process::mongo(svc);
    let w = World::new(svc, "docs-closed", mongo.info["uri"].as_str()).await;
    for i in 0..3 {
        w.document(
            format!("doc-{i}").into(),
            10 * DAY,
            "ready",
            Some(&format!("{i}.pdf")),
            1,
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = w.settings(svc, &dir.path().join("a.jsonl"));
    let janitor = Janitor::new(settings.clone()).await.unwrap();
    let sweeper = janitor
        .backends
        .sweepers(&settings, &janitor.metrics, &Default::default())
        .into_iter()
        .find(|s| s.resource() == Resource::Documents)
        .unwrap();
    let ctx = support::sweep_ctx(Duration::from_secs(7 * DAY), dir.path());
    let (mut plan, planned) = sweeper.plan(&ctx).await.unwrap();
    assert_eq!(plan.deletions(), 3);
    mongo.kill();
    for batch in plan.batches().unwrap() {
        let err = planned.apply(&batch.unwrap(), &ctx).await.unwrap_err();
        assert!(
            matches!(
                err,
                resource_janitor::backend::sweep::SweepError::ReferenceUnavailable(ref m) if m.starts_with("session re-check")
            ),
            "{err}"
        );
    }
    assert_eq!(w.objects().await.len(), 3, "no file deleted");
    assert_eq!(w.with_keys().await.len(), 3, "no key deleted");
    let (r, _) = run(&janitor, false).await;
    assert_eq!(r.outcome, Outcome::FailedClosed, "{r:?}");
    assert!(
        r.message.unwrap().contains("counting documents"),
        "the step is named"
    );
}

#[tokio::test]
async fn mongodb_is_measured_against_its_budget_with_its_oldest_document() {
    let svc = require_services!();
    let ns = Namespace::new("mongo-measure");
    let uri = svc.get("MONGODB_URI");
    let db = mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(&ns.mongo_db());
    let docs = db.collection::<Document>("documents");
    for days in [1u64, 10, 3] {
        let t = SystemTime::now() - Duration::from_secs(days * DAY);
        docs.insert_one(
            doc! { "created_at": DateTime::from_system_time(t), "pad": "x".repeat(100) },
        )
        .await
        .unwrap();
    }
    docs.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! { "created_at": 1 })
            .build(),
    )
    .await
    .unwrap();
    let conn = resource_janitor::config::MongoConn {
        uri: resource_janitor::secret::SecretUrl::new(uri.to_string()),
        database: ns.mongo_db(),
    };
    let mongo = resource_janitor::backend::mongo::Mongo::connect(&conn, Duration::from_secs(3))
        .await
        .unwrap();
    let u = mongo
        .measure(
            "documents",
            "created_at",
            Some(1024 * 1024),
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert_eq!(u.total_items, 3);
    let hours = u.oldest_age_hours.unwrap();
    assert!((239.0..241.0).contains(&hours), "{hours}");
    let fraction = u.usage_fraction.unwrap();
    assert!(fraction > 0.0 && fraction < 0.01, "{fraction}");
    assert!(u.notes.is_empty(), "{:?}", u.notes);
}

#[tokio::test]
async fn sigkill_mid_cascade_again_and_again_loses_nothing_live_and_finishes() {
    let svc = require_services!();
    let w = World::new(svc, "docs-crash", svc.get("MONGODB_URI")).await;
    // 2,400 expired documents (three batches) and 300 live ones, each with its object, a
    // point and two keys, seeded in bulk
    let db = w.db().await;
    let now = SystemTime::now();
    let (expired, live) = (2400u64, 300u64);
    let docs: Vec<Document> = (0..expired + live)
        .map(|i| {
            let age = if i < expired { 10 * DAY } else { DAY };
            let created = DateTime::from_system_time(now - Duration::from_secs(age));
            doc! { "_id": format!("d{i:05}"), "status": "ready", "created_at": created, "minio_key": w.key(&format!("{i:05}.pdf")) }
        })
        .collect();
    db.collection::<Document>("documents")
        .insert_many(docs)
        .await
        .unwrap();
    let puts = (0..expired + live).map(|i| {
        w.s3.put_object()
            .bucket(&w.bucket)
            .key(w.key(&format!("{i:05}.pdf")))
            .body(b"pdf".to_vec().into())
            .send()
    });
    for r in futures::future::join_all(puts).await {
        r.unwrap();
    }
    let points: Vec<PointStruct> = (0..expired + live)
        .map(|i| {
            let payload = qdrant_client::Payload::try_from(
                serde_json::json!({ "document_id": format!("d{i:05}") }),
            )
            .unwrap();
            PointStruct::new(i, vec![0.1, 0.2, 0.3, 0.4], payload)
        })
        .collect();
    w.qdrant
        .upsert_points(UpsertPointsBuilder::new(&w.collection, points).wait(true))
        .await
        .unwrap();
    let mut con = support::redis_con(&w.redis).await;
    let mut pipe = redis::pipe();
    for i in 0..expired + live {
        for k in 0..2 {
            pipe.cmd("SET")
                .arg(format!("doc_segments:d{i:05}:{k}"))
                .arg("v")
                .ignore();
        }
    }
    pipe.query_async::<()>(&mut con).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut env: Vec<(String, String)> = vec![
        ("REDIS_URL".into(), w.redis.clone()),
        ("QDRANT_URL".into(), svc.get("QDRANT_URL").into()),
        ("S3_ENDPOINT".into(), svc.get("S3_ENDPOINT").into()),
        ("S3_BUCKET".into(), svc.get("S3_BUCKET").into()),
        (
            "AWS_ACCESS_KEY_ID".into(),
            svc.get("AWS_ACCESS_KEY_ID").into(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            svc.get("AWS_SECRET_ACCESS_KEY").into(),
        ),
        ("AWS_REGION".into(), svc.get("AWS_REGION").into()),
        ("MONGODB_URI".into(), w.mongo_uri.clone()),
        ("MONGODB_DATABASE".into(), w.ns.mongo_db()),
        ("JANITOR_QDRANT_COLLECTIONS".into(), w.collection.clone()),
        ("JANITOR_DOCUMENTS_EXPIRE".into(), "true".into()),
        ("JANITOR_DOCUMENTS_RECONCILE".into(), "false".into()),
        ("JANITOR_MAX_DELETE_FRACTION".into(), "1".into()),
        ("JANITOR_AUDIT_LOG".into(), audit.display().to_string()),
    ];
    env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    let mut kills = 0;
    for _ in 0..8 {
        let out = tempfile::tempdir().unwrap();
        let mut child = crate::support::daemon::janitor(&env, &out)
            .args(["sweep", "--once", "--resource", "documents"])
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150 + fastrand::u64(0..400))).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    // a last run without a kill settles what is open and finishes
    let out = tempfile::tempdir().unwrap();
    let status = crate::support::daemon::janitor(&env, &out)
        .args(["sweep", "--once", "--resource", "documents"])
        .status()
        .unwrap();
    let stdout = std::fs::read_to_string(out.path().join("stdout.log")).unwrap();
    assert!(status.success(), "{stdout}");
    let left = w.documents().await;
    let live_ids: BTreeSet<String> = (expired..expired + live)
        .map(|i| format!("d{i:05}"))
        .collect();
    assert_eq!(
        left, live_ids,
        "every expired document went, every live one stayed"
    );
    let objects = w.objects().await;
    assert_eq!(
        objects.len() as u64,
        live,
        "only the live documents' objects are left"
    );
    assert_eq!(w.with_points().await, live_ids);
    assert_eq!(w.with_keys().await, live_ids);
    let recovered = support::applied_batches(&audit)
        .iter()
        .filter(|b| b["recovered"] == true)
        .count();
    eprintln!(
        "{kills} kills; {recovered} batches settled after a kill mid-batch; nothing live lost, the cascade finished"
    );
}
