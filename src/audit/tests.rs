//! The write-ahead records on disk, a torn tail, and the intents left open.

use super::*;
use crate::plan::PlannedItem;

fn batch() -> Batch {
    Batch {
        target: "doc_segments:*".into(),
        reason: "no TTL, idle >= 1h".into(),
        items: vec![
            PlannedItem {
                id: "doc_segments:1".into(),
                action: Action::Delete,
                detail: None,
            },
            PlannedItem {
                id: "doc_segments:2".into(),
                action: Action::Expire(3600),
                detail: None,
            },
        ],
        shard: None,
        detail: None,
    }
}

fn intent(run_id: &str, resource: Resource, seq: u64) -> Intent {
    Intent {
        run_id: run_id.into(),
        resource,
        seq,
        batch: Arc::new(batch()),
        task_reason: Some("manual cleanup via API: disk alarm".into()),
        written_at: std::time::UNIX_EPOCH,
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn an_intent_then_its_outcome_one_json_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/audit.jsonl");
    let log = Arc::new(AuditLog::open(&path).unwrap());
    log.intent(intent("r1", Resource::Redis, 0)).await.unwrap();
    assert_eq!(log.open_intents(Resource::Redis).len(), 1);
    let outcome = Outcome {
        deleted: 1,
        skipped: vec!["doc_segments:2".into()],
        ..Outcome::default()
    };
    log.applied(("r1", Resource::Redis, 0), &outcome)
        .await
        .unwrap();
    assert!(log.open_intents(Resource::Redis).is_empty());
    log.dry_run(("r2", Resource::S3, 0), &batch(), None)
        .await
        .unwrap();
    let l = lines(&path);
    assert_eq!(l.len(), 3);
    assert_eq!(l[0]["v"], SCHEMA_VERSION);
    assert_eq!(l[0]["kind"], "intent");
    assert_eq!(l[0]["run_id"], "r1");
    assert_eq!(l[0]["resource"], "redis");
    assert_eq!(l[0]["batch_seq"], 0);
    assert_eq!(l[0]["target"], "doc_segments:*");
    assert_eq!(l[0]["reason"], "no TTL, idle >= 1h");
    assert_eq!(l[0]["task_reason"], "manual cleanup via API: disk alarm");
    assert_eq!(
        l[0]["items"][1],
        serde_json::json!({"id": "doc_segments:2", "action": "expire", "ttl_secs": 3600})
    );
    assert_eq!(l[1]["kind"], "applied");
    assert_eq!(l[1]["deleted"], 1);
    assert_eq!(l[1]["skipped"][0], "doc_segments:2");
    assert_eq!(l[1]["recovered"], false);
    assert!(
        l[1].get("items").is_none(),
        "the outcome refers to its intent"
    );
    assert_eq!(l[2]["kind"], "dry_run");
    assert!(l[2].get("task_reason").is_none(), "no reason, no field");
    assert!(l[0]["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn reopening_finds_the_intents_without_an_outcome_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path).unwrap());
    log.intent(intent("r1", Resource::Redis, 0)).await.unwrap();
    log.applied(("r1", Resource::Redis, 0), &Outcome::default())
        .await
        .unwrap();
    log.intent(intent("r1", Resource::Redis, 1)).await.unwrap();
    log.intent(intent("r2", Resource::S3, 0)).await.unwrap();
    drop(log);
    // a crash mid-write leaves half a record
    let whole = std::fs::metadata(&path).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(br#"{"v":2,"kind":"intent","run_id":"r3","#)
        .unwrap();
    drop(f);

    let log = Arc::new(AuditLog::open(&path).unwrap());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        whole,
        "torn tail cut"
    );
    // read back as written, the time to the second
    let now = std::time::SystemTime::now();
    let read = |r: Resource| -> Vec<Intent> {
        let open = log.open_intents(r);
        for i in &open {
            let age = now.duration_since(i.written_at).unwrap();
            assert!(age < std::time::Duration::from_secs(60), "{age:?}");
        }
        open.into_iter()
            .map(|i| Intent {
                written_at: std::time::UNIX_EPOCH,
                ..i
            })
            .collect()
    };
    assert_eq!(read(Resource::Redis), [intent("r1", Resource::Redis, 1)]);
    assert_eq!(read(Resource::S3), [intent("r2", Resource::S3, 0)]);
    assert!(log.open_intents(Resource::Qdrant).is_empty());
    // recovery closes an intent: the next open finds it closed
    let recovered = Outcome::recovered(&batch(), vec!["doc_segments:1".into()]);
    assert_eq!((recovered.deleted, recovered.expired), (0, 1));
    log.applied(("r1", Resource::Redis, 1), &recovered)
        .await
        .unwrap();
    drop(log);
    let log = AuditLog::open(&path).unwrap();
    assert!(log.open_intents(Resource::Redis).is_empty());
    let last = lines(&path).pop().unwrap();
    assert_eq!(last["recovered"], true);
    assert_eq!(last["not_applied"][0], "doc_segments:1");
}

#[tokio::test]
async fn legacy_records_are_read_past() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path).unwrap());
    log.intent(intent("r1", Resource::Redis, 0)).await.unwrap();
    assert_eq!(log.last_error(), None);
    // legacy (version 1) lines are read past
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"{\"run_id\":\"old\",\"resource\":\"redis\",\"items\":[]}\n")
        .unwrap();
    drop(f);
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.open_intents(Resource::Redis).len(), 1);
}
