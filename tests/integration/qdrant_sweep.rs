//! The Qdrant sweeper against the Qdrant test server (Qdrant's own engine behind its gRPC
//! API) and, for orphan vectors, a real MongoDB-wire server.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::bson::{doc, oid::ObjectId};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, Distance, FieldType, PointStruct,
    ScrollPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use resource_janitor::app::Janitor;
use resource_janitor::backend::qdrant::sweep::QdrantSweeper;
use resource_janitor::backend::qdrant::windows::Window;
use resource_janitor::backend::sweep::Sweeper;
use resource_janitor::config::Settings;
use resource_janitor::engine::RunRequest;
use resource_janitor::resource::{Priority, Resource};
use resource_janitor::runs::{Outcome, RunRecord};

use crate::require_services;
use crate::support::{self, process};
use crate::support::{Namespace, Services};

const HOUR: u64 = 3600;

fn settings(url: &str, audit: &std::path::Path, extra: &[(&str, &str)]) -> Arc<Settings> {
    let base = [
        ("QDRANT_URL", url),
        ("JANITOR_MAX_DELETE_FRACTION", "1"),
        ("JANITOR_BACKEND_TIMEOUT_SECONDS", "5"),
        ("JANITOR_QDRANT_BATCH_SIZE", "7"),
        ("JANITOR_QDRANT_BATCH_PAUSE_MS", "0"),
    ];
    support::settings(&base, audit, extra)
}

/// How a test point stores its creation time.
#[derive(Clone, Copy)]
enum Stamp {
    Seconds,
    Millis,
    Rfc3339,
}

impl Stamp {
    fn value(self, age: Duration) -> serde_json::Value {
        let t = SystemTime::now() - age;
        let unix = t.duration_since(UNIX_EPOCH).unwrap();
        match self {
            Stamp::Seconds => unix.as_secs().into(),
            Stamp::Millis => (unix.as_millis() as u64).into(),
            Stamp::Rfc3339 => humantime::format_rfc3339_seconds(t).to_string().into(),
        }
    }

    fn index(self) -> FieldType {
        match self {
            Stamp::Rfc3339 => FieldType::Datetime,
            _ => FieldType::Integer,
        }
    }
}

fn client(url: &str, api_key: Option<&str>) -> Qdrant {
    let mut b = Qdrant::from_url(url).skip_compatibility_check();
    if let Some(k) = api_key {
        b = b.api_key(k);
    }
    b.build().unwrap()
}

async fn create(q: &Qdrant, name: &str, index: Option<FieldType>) {
    q.create_collection(
        CreateCollectionBuilder::new(name)
            .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
    )
    .await
    .unwrap();
    if let Some(kind) = index {
        q.create_field_index(
            CreateFieldIndexCollectionBuilder::new(name, "created_at", kind).wait(true),
        )
        .await
        .unwrap();
    }
}

/// Upserts points `ids` with `payload(id)`.
async fn upsert(
    q: &Qdrant,
    name: &str,
    ids: impl IntoIterator<Item = u64>,
    payload: impl Fn(u64) -> serde_json::Value,
) {
    let points: Vec<PointStruct> = ids
        .into_iter()
        .map(|i| {
            let p = qdrant_client::Payload::try_from(payload(i)).unwrap();
            PointStruct::new(i, vec![0.1, 0.2, 0.3, i as f32], p)
        })
        .collect();
    q.upsert_points(UpsertPointsBuilder::new(name, points).wait(true))
        .await
        .unwrap();
}

/// 1..=30 are two days old (a minute apart), 31..=50 one hour old, 51..=55 have no
/// timestamp.
async fn seed(q: &Qdrant, name: &str, stamp: Stamp) {
    upsert(q, name, 1..=55, |i| match i {
        1..=30 => serde_json::json!({
            "created_at": stamp.value(Duration::from_secs(48 * HOUR + i * 60))
        }),
        31..=50 => serde_json::json!({ "created_at": stamp.value(Duration::from_secs(HOUR)) }),
        _ => serde_json::json!({ "other": i }),
    })
    .await;
}

async fn ids(q: &Qdrant, name: &str) -> BTreeSet<String> {
    let r = q
        .scroll(
            ScrollPointsBuilder::new(name)
                .limit(10_000)
                .with_payload(false),
        )
        .await
        .unwrap();
    r.result
        .iter()
        .map(
            |p| match p.id.as_ref().unwrap().point_id_options.as_ref().unwrap() {
                qdrant_client::qdrant::point_id::PointIdOptions::Num(n) => n.to_string(),
                qdrant_client::qdrant::point_id::PointIdOptions::Uuid(u) => u.clone(),
            },
        )
        .collect()
}

fn range(r: std::ops::RangeInclusive<u64>) -> BTreeSet<String> {
    r.map(|i| i.to_string()).collect()
}

/// The Qdrant sweeper of `state`, to plan and apply batch by batch.
fn sweeper(state: &Janitor) -> QdrantSweeper {
    QdrantSweeper::new(
        state.backends.qdrant.clone().unwrap(),
        None,
        state.settings.qdrant_sweep.clone(),
        Duration::from_secs(24 * HOUR),
        state.settings.budgets.qdrant_points,
    )
}

async fn run(
    state: &Janitor,
    dry_run: bool,
    priority: Option<Priority>,
) -> (RunRecord, Option<resource_janitor::plan::Plan>) {
    let req = RunRequest {
        priority,
        ..support::cli_request(Resource::Qdrant, dry_run)
    };
    let r = support::run_once(state, req).await;
    (r.record, r.plan)
}

#[tokio::test]
async fn deletes_points_past_the_ttl_by_id_in_every_encoding_and_dry_run_matches() {
    ttl_in_every_encoding(true).await;
}

#[tokio::test]
async fn deletes_points_past_the_ttl_by_time_window_in_every_encoding_and_dry_run_matches() {
    ttl_in_every_encoding(false).await;
}

/// Three collections, one per timestamp encoding, swept by id (`audit_ids`) or by window.
async fn ttl_in_every_encoding(audit_ids: bool) {
    let svc: &Services = require_services!();
    let ns = Namespace::new(if audit_ids {
        "qdrant-ttl"
    } else {
        "qdrant-win"
    });
    let url = svc.get("QDRANT_URL");
    let q = client(url, None);
    let stamps = [Stamp::Seconds, Stamp::Millis, Stamp::Rfc3339];
    let names: Vec<String> = ["secs", "millis", "dt"]
        .iter()
        .map(|s| ns.collection(s))
        .collect();
    for (name, stamp) in names.iter().zip(stamps) {
        create(&q, name, Some(stamp.index())).await;
        seed(&q, name, stamp).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let list = names.join(",");
    let mode = if audit_ids { "true" } else { "false" };
    let state = Janitor::new(settings(
        url,
        &dir.path().join("a.jsonl"),
        &[
            ("JANITOR_QDRANT_COLLECTIONS", &list),
            ("JANITOR_QDRANT_AUDIT_IDS", mode),
        ],
    ))
    .await
    .unwrap();

    let (dry, plan) = run(&state, true, None).await;
    assert_eq!(dry.outcome, Outcome::DryRun, "{:?}", dry.message);
    let mut plan = plan.unwrap();
    assert_eq!(plan.deletions(), 90);
    if !audit_ids {
        check_windows(&mut plan, &names);
    } else {
        check_ids(&mut plan, &names);
    }
    for name in &names {
        assert_eq!(ids(&q, name).await.len(), 55, "dry run deletes nothing");
    }
    real_run_and_measure(&state, &q, &names).await;
}

/// Every batch is one window of at most 1.5 x 7 points (one timestamp per minute), the
/// windows of a collection are contiguous and hold its 30 expired points.
fn check_windows(plan: &mut resource_janitor::plan::Plan, names: &[String]) {
    let mut per: std::collections::BTreeMap<String, Vec<(Window, u64)>> = Default::default();
    for b in plan.batches().unwrap() {
        let b = b.unwrap();
        assert_eq!(b.items.len(), 1, "one window per batch");
        let w = Window::of(&b.items[0])
            .expect("a window item")
            .expect("readable");
        assert!(
            b.items[0]
                .id
                .starts_with(&format!("{}:created_at:[", b.target))
        );
        per.entry(b.target)
            .or_default()
            .push((w, b.items[0].count()));
    }
    for name in names {
        let windows = &per[name];
        assert!(windows.len() >= 3, "{name}: cut into windows: {windows:?}");
        assert!(windows.iter().all(|(_, n)| *n <= 10), "{windows:?}");
        assert_eq!(windows.iter().map(|(_, n)| n).sum::<u64>(), 30);
        assert_eq!(windows[0].0.from, None);
        for pair in windows.windows(2) {
            assert_eq!(Some(pair[0].0.until), pair[1].0.from);
        }
    }
}

fn check_ids(plan: &mut resource_janitor::plan::Plan, names: &[String]) {
    let planned: BTreeSet<(String, String)> = plan
        .batches()
        .unwrap()
        .flat_map(|b| {
            let b = b.unwrap();
            assert!(b.items.len() <= 7, "batches are bounded");
            b.items.into_iter().map(move |i| (b.target.clone(), i.id))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = names
        .iter()
        .flat_map(|n| range(1..=30).into_iter().map(move |i| (n.clone(), i)))
        .collect();
    assert_eq!(planned, expected);
}

async fn real_run_and_measure(state: &Janitor, q: &Qdrant, names: &[String]) {
    let (real, _) = run(state, false, None).await;
    assert_eq!(real.outcome, Outcome::Succeeded, "{:?}", real.message);
    assert_eq!(real.deleted, 90, "measured deletions: {:?}", real.notes);
    for name in names {
        assert_eq!(ids(q, name).await, range(31..=55), "{name}");
        assert!(
            real.notes.iter().any(|n| n.contains(&format!(
                "collection {name}: 55 points before the run, 25 after"
            ))),
            "{:?}",
            real.notes
        );
    }

    // the monitor's view: per-collection facts and the oldest point, from order_by
    let qd = state.backends.qdrant.as_ref().unwrap();
    let (_, stats) = qd
        .measure(
            1_000_000,
            "created_at",
            resource_janitor::config::TimestampFormat::Auto,
            SystemTime::now(),
        )
        .await
        .unwrap();
    for name in names {
        let s = stats.iter().find(|s| &s.name == name).unwrap();
        assert_eq!(s.points, 25);
        assert!(s.timestamp_indexed);
        let age = s.oldest_age.unwrap().as_secs();
        assert!(
            (HOUR - 60..HOUR + 600).contains(&age),
            "{name}: oldest {age}s"
        );
    }
    for name in names {
        q.delete_collection(name).await.unwrap();
    }
}

#[tokio::test]
async fn unindexed_collections_are_refused_scanned_when_small_or_indexed_when_allowed() {
    let svc: &Services = require_services!();
    let ns = Namespace::new("qdrant-index");
    let url = svc.get("QDRANT_URL");
    let q = client(url, None);
    let name = ns.collection("noindex");
    create(&q, &name, None).await;
    seed(&q, &name, Stamp::Seconds).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("a.jsonl");
    let with = |extra: &[(&str, &str)]| {
        let mut all = vec![("JANITOR_QDRANT_COLLECTIONS", name.as_str())];
        all.extend_from_slice(extra);
        settings(url, &audit, &all)
    };

    // 55 points, limit 10, no index creation: refused, said in the run report
    let state = Janitor::new(with(&[("JANITOR_QDRANT_UNINDEXED_MAX_POINTS", "10")]))
        .await
        .unwrap();
    let (refused, _) = run(&state, false, None).await;
    assert_eq!(refused.deleted, 0);
    assert!(
        refused.warnings.iter().any(|w| w.contains(&format!(
            "collection {name} refused: no payload index on created_at"
        ))),
        "{:?}",
        refused.warnings
    );
    assert_eq!(ids(&q, &name).await.len(), 55);

    // a dry run with index creation allowed creates nothing
    let state = Janitor::new(with(&[
        ("JANITOR_QDRANT_UNINDEXED_MAX_POINTS", "10"),
        ("JANITOR_QDRANT_CREATE_INDEX", "true"),
    ]))
    .await
    .unwrap();
    let (dry, _) = run(&state, true, None).await;
    assert!(
        dry.warnings
            .iter()
            .any(|w| w.contains("dry run does not create")),
        "{:?}",
        dry.warnings
    );
    let info = q.collection_info(&name).await.unwrap().result.unwrap();
    assert!(info.payload_schema.is_empty(), "a dry run created an index");

    // the real run creates the index, waits for it, then sweeps
    let (created, _) = run(&state, false, None).await;
    assert_eq!(created.outcome, Outcome::Succeeded, "{:?}", created.message);
    assert!(
        created
            .notes
            .iter()
            .any(|n| n.contains("created a payload index on created_at (integer)")),
        "{:?}",
        created.notes
    );
    let info = q.collection_info(&name).await.unwrap().result.unwrap();
    assert!(info.payload_schema.contains_key("created_at"));
    assert_eq!(created.deleted, 30);
    assert_eq!(ids(&q, &name).await, range(31..=55));

    // a small unindexed collection is scanned
    let small = ns.collection("small");
    create(&q, &small, None).await;
    seed(&q, &small, Stamp::Rfc3339).await;
    let state = Janitor::new(settings(
        url,
        &audit,
        &[("JANITOR_QDRANT_COLLECTIONS", small.as_str())],
    ))
    .await
    .unwrap();
    let (scanned, _) = run(&state, false, None).await;
    assert!(
        scanned.notes.iter().any(|n| n.contains("so it is scanned")),
        "{:?}",
        scanned.notes
    );
    assert_eq!(scanned.deleted, 30);
    assert_eq!(ids(&q, &small).await, range(31..=55));
    for n in [&name, &small] {
        q.delete_collection(n).await.unwrap();
    }
}

#[tokio::test]
async fn api_key_is_sent_and_a_wrong_one_is_a_clear_error() {
    let svc: &Services = require_services!();
    let server = process::qdrant(svc, Some("s3cret-key"));
    let url = &server.info["url"];
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("a.jsonl");
    let good = Janitor::new(settings(url, &audit, &[("QDRANT_API_KEY", "s3cret-key")]))
        .await
        .unwrap();
    good.backends.qdrant.as_ref().unwrap().ping().await.unwrap();
    let (ok, _) = run(&good, false, None).await;
    assert_eq!(ok.outcome, Outcome::Succeeded, "{:?}", ok.message);

    for key in [Some("wrong"), None] {
        let mut extra = vec![];
        if let Some(k) = key {
            extra.push(("QDRANT_API_KEY", k));
        }
        let bad = Janitor::new(settings(url, &audit, &extra)).await.unwrap();
        let err = bad
            .backends
            .qdrant
            .as_ref()
            .unwrap()
            .ping()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("API key"), "{err}");
        assert!(!err.contains("s3cret"), "the key never shows: {err}");
        let (failed, _) = run(&bad, false, None).await;
        assert_eq!(failed.outcome, Outcome::Failed);
    }
}

#[tokio::test]
async fn orphan_vectors_go_only_when_their_document_is_gone_and_mongodb_down_deletes_nothing() {
    let svc: &Services = require_services!();
    let ns = Namespace::new("qdrant-orphans");
    let url = svc.get("QDRANT_URL");
    let q = client(url, None);
    let name = ns.collection("chunks");
    create(&q, &name, Some(FieldType::Integer)).await;
    let mut mongo = process::mongo(svc);
    let uri = mongo.info["uri"].clone();
    let db = ns.mongo_db();
    let docs = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db)
        .collection("documents");
    let live_oid = ObjectId::new();
    docs.insert_many([doc! { "_id": live_oid }, doc! { "_id": "doc-live" }])
        .await
        .unwrap();
    // 1..=10: 5 h old, document gone; 11..=15: 5 h old, live ObjectId document;
    // 16..=20: 5 h old, live string id; 21..=25: 10 min old, document gone (in flight);
    // 26..=30: 5 h old, no document id; 31..=35: 2 days old, live document (TTL)
    let oid = live_oid.to_hex();
    upsert(&q, &name, 1..=35, |i| {
        let age = Duration::from_secs(match i {
            21..=25 => 600,
            31..=35 => 48 * HOUR,
            _ => 5 * HOUR,
        });
        let created_at = Stamp::Seconds.value(age);
        match i {
            1..=10 | 21..=25 => {
                serde_json::json!({ "created_at": created_at, "document_id": format!("gone-{i}") })
            }
            11..=15 => serde_json::json!({ "created_at": created_at, "document_id": oid }),
            26..=30 => serde_json::json!({ "created_at": created_at }),
            _ => serde_json::json!({ "created_at": created_at, "document_id": "doc-live" }),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = Janitor::new(settings(
        url,
        &dir.path().join("a.jsonl"),
        &[
            ("JANITOR_QDRANT_COLLECTIONS", name.as_str()),
            ("JANITOR_QDRANT_ORPHAN_FIELD", "document_id"),
            ("MONGODB_URI", uri.as_str()),
            ("MONGODB_DATABASE", db.as_str()),
        ],
    ))
    .await
    .unwrap();

    let (dry, plan) = run(&state, true, None).await;
    assert_eq!(dry.outcome, Outcome::DryRun, "{:?}", dry.message);
    let (windows, orphans): (Vec<_>, Vec<_>) = plan
        .unwrap()
        .items()
        .unwrap()
        .into_iter()
        .partition(|i| Window::of(i).is_some());
    let orphans: BTreeSet<String> = orphans.into_iter().map(|i| i.id).collect();
    assert_eq!(orphans, range(1..=10), "orphans are listed by id");
    let expired: Vec<u64> = windows.iter().map(|w| w.count()).collect();
    assert_eq!(expired, [5], "31..=35 past the TTL, in one window");
    assert!(
        dry.notes
            .iter()
            .any(|n| n.contains("5 points past the grace have no document id")),
        "{:?}",
        dry.notes
    );

    // MongoDB stops: nothing at all is deleted, TTL points included
    mongo.kill();
    let (closed, _) = run(&state, false, None).await;
    assert_eq!(
        closed.outcome,
        Outcome::FailedClosed,
        "{:?}",
        closed.message
    );
    assert_eq!(closed.deleted, 0);
    assert_eq!(ids(&q, &name).await.len(), 35);

    mongo.start();
    // secantusd-rs may lose unflushed writes to SIGKILL: write the documents again (an
    // empty collection would, rightly, refuse the orphan pass)
    docs.delete_many(doc! {}).await.unwrap();
    docs.insert_many([doc! { "_id": live_oid }, doc! { "_id": "doc-live" }])
        .await
        .unwrap();
    let (real, _) = run(&state, false, None).await;
    assert_eq!(real.outcome, Outcome::Succeeded, "{:?}", real.message);
    assert_eq!(real.deleted, 15, "{:?} {:?}", real.warnings, real.notes);
    assert_eq!(ids(&q, &name).await, range(11..=30));
    q.delete_collection(&name).await.unwrap();
}

#[tokio::test]
async fn server_stopped_mid_pass_fails_the_run_then_recovers_and_a_deleted_collection_is_skipped() {
    let svc: &Services = require_services!();
    let mut server = process::qdrant(svc, None);
    let url = server.info["url"].clone();
    let q = client(&url, None);
    for name in ["a", "b"] {
        create(&q, name, Some(FieldType::Integer)).await;
        seed(&q, name, Stamp::Seconds).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let by_id = [("JANITOR_QDRANT_AUDIT_IDS", "true")];
    let state = Janitor::new(settings(&url, &dir.path().join("a.jsonl"), &by_id))
        .await
        .unwrap();
    let sweeper = sweeper(&state);
    let ctx = crate::support::sweep_ctx(Duration::from_secs(24 * HOUR), dir.path());
    let (mut plan, planned) = sweeper.plan(&ctx).await.unwrap();
    assert_eq!(plan.deletions(), 60);
    server.kill();
    let batch = plan.batches().unwrap().next().unwrap().unwrap();
    let err = planned.apply(&batch, &ctx).await.unwrap_err();
    assert!(
        matches!(
            err,
            resource_janitor::backend::sweep::SweepError::Backend(_)
        ),
        "{err}"
    );
    let (failed, _) = run(&state, false, None).await;
    assert_eq!(failed.outcome, Outcome::Failed);

    server.start();
    let (mut plan, planned) = sweeper.plan(&ctx).await.unwrap();
    // "a" is deleted between planning and applying: skipped, "b" is still swept
    q.delete_collection("a").await.unwrap();
    // point 2 of "b" is written again since planning: the server-side re-check keeps it
    upsert(
        &q,
        "b",
        [2],
        |_| serde_json::json!({ "created_at": Stamp::Seconds.value(Duration::ZERO) }),
    )
    .await;
    let mut deleted = 0;
    let mut skipped = 0;
    for batch in plan.batches().unwrap() {
        let applied = planned.apply(&batch.unwrap(), &ctx).await.unwrap();
        deleted += applied.deleted;
        skipped += applied.skipped.len();
    }
    assert_eq!((deleted, skipped), (29, 31));
    let mut kept = range(31..=55);
    kept.insert("2".into());
    assert_eq!(ids(&q, "b").await, kept);

    // under pressure with the budget still exceeded: reported, live points kept
    let state = Janitor::new(settings(
        &url,
        &dir.path().join("a.jsonl"),
        &[("MAX_QDRANT_POINTS", "10")],
    ))
    .await
    .unwrap();
    let (pressed, _) = run(&state, false, Some(Priority::Critical)).await;
    assert_eq!(pressed.outcome, Outcome::Succeeded, "{:?}", pressed.message);
    assert!(
        pressed
            .notes
            .iter()
            .any(|n| n.contains("points budget still exceeded by 16")),
        "{:?}",
        pressed.notes
    );
    assert_eq!(ids(&q, "b").await, kept, "live points are kept");
}

#[tokio::test]
async fn a_window_spares_points_refreshed_since_planning_and_recovery_asks_the_window() {
    let svc: &Services = require_services!();
    let ns = Namespace::new("qdrant-win-safety");
    let url = svc.get("QDRANT_URL");
    let q = client(url, None);
    let name = ns.collection("w");
    create(&q, &name, Some(FieldType::Integer)).await;
    seed(&q, &name, Stamp::Seconds).await;
    let dir = tempfile::tempdir().unwrap();
    let only = [("JANITOR_QDRANT_COLLECTIONS", name.as_str())];
    let state = Janitor::new(settings(url, &dir.path().join("a.jsonl"), &only))
        .await
        .unwrap();
    let sweeper = sweeper(&state);
    let ctx = crate::support::sweep_ctx(Duration::from_secs(24 * HOUR), dir.path());
    let (mut plan, planned) = sweeper.plan(&ctx).await.unwrap();
    assert_eq!(plan.deletions(), 30);
    let batches: Vec<_> = plan.batches().unwrap().map(Result::unwrap).collect();
    assert!(batches.len() >= 3, "{batches:?}");

    // before a window is applied the store still holds it: recovery calls it not applied
    let first = &batches[0];
    assert_eq!(
        sweeper.unapplied(first).await.unwrap(),
        vec![first.items[0].id.clone()]
    );
    // point 30 (the oldest, in the first window) and point 2 are written again since
    // planning: they left their windows, and the range filter spares them
    upsert(
        &q,
        &name,
        [2, 30],
        |_| serde_json::json!({ "created_at": Stamp::Seconds.value(Duration::ZERO) }),
    )
    .await;
    let mut deleted = 0;
    for batch in &batches {
        let applied = planned.apply(batch, &ctx).await.unwrap();
        assert!(applied.skipped.is_empty() && applied.failed.is_empty());
        deleted += applied.deleted;
        assert!(
            sweeper.unapplied(batch).await.unwrap().is_empty(),
            "applied"
        );
    }
    assert_eq!(deleted, 28, "measured, not the planned count");
    let mut kept = range(31..=55);
    kept.extend(["2".to_string(), "30".to_string()]);
    assert_eq!(ids(&q, &name).await, kept);

    // points written with old timestamps since planning: a window holding more than the
    // cap weighed is left alone, the others go
    seed(&q, &name, Stamp::Seconds).await;
    let (mut plan, planned) = sweeper.plan(&ctx).await.unwrap();
    upsert(&q, &name, 100..=104, |i| {
        serde_json::json!({ "created_at": Stamp::Seconds.value(Duration::from_secs(48 * HOUR + (i - 99) * 60)) })
    })
    .await;
    let (mut deleted, mut skipped, mut notes) = (0, Vec::new(), Vec::new());
    for batch in plan.batches().unwrap() {
        let applied = planned.apply(&batch.unwrap(), &ctx).await.unwrap();
        deleted += applied.deleted;
        skipped.extend(applied.skipped);
        notes.extend(applied.notes);
    }
    assert_eq!(skipped.len(), 1, "the newest window grew: {notes:?}");
    assert!(notes[0].contains("left alone"), "{notes:?}");
    let left = ids(&q, &name).await;
    assert!(left.is_superset(&range(100..=104)) && left.contains("1"));
    assert_eq!(deleted as usize + left.len(), 60, "{left:?}");
    // a deleted collection holds nothing: its windows are applied
    q.delete_collection(&name).await.unwrap();
    assert!(sweeper.unapplied(first).await.unwrap().is_empty());
}
