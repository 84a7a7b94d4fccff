//! The safety model around any sweeper, with a test double that records what it was asked.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::backend::sweep::{Applied, Sweep};
use crate::config::{Sources, load};
use crate::plan::{Action, Batch, PlannedItem};

/// Plans `batches` batches of `per_batch` deletions in a store of `store` items; fails
/// applying batch number `fail_at` with `error`.
struct Fake {
    store: u64,
    batches: usize,
    per_batch: usize,
    fail_at: Option<(usize, SweepError)>,
    /// Batch number whose apply stops after its first two items (the connection broke).
    interrupt_at: Option<usize>,
    cancel_after_first: Option<CancellationToken>,
    applied: Mutex<Vec<String>>,
    seen_ttl: Mutex<Option<Duration>>,
    /// Batches spread over this many servers (batch b on `s{b % shards}`); 1: the store.
    shards: usize,
    /// The servers of the batches being applied, and the most at once.
    overlap: Mutex<(Vec<Option<String>>, usize)>,
}

impl Fake {
    fn new(store: u64, batches: usize, per_batch: usize) -> Self {
        Self {
            store,
            batches,
            per_batch,
            fail_at: None,
            interrupt_at: None,
            cancel_after_first: None,
            applied: Mutex::default(),
            seen_ttl: Mutex::default(),
            shards: 1,
            overlap: Mutex::default(),
        }
    }
}

impl Sweep for Fake {
    const RESOURCE: Resource = Resource::Redis;
    type Run = ();

    async fn plan(&self, ctx: &SweepContext) -> Result<(Plan, ()), SweepError> {
        *self.seen_ttl.lock().unwrap() = Some(ctx.ttl);
        let mut plan = ctx.new_plan(Resource::Redis).unwrap();
        plan.store_items = self.store;
        for b in 0..self.batches {
            plan.push(Batch {
                target: "all".into(),
                reason: format!("batch {b}"),
                items: (0..self.per_batch)
                    .map(|i| PlannedItem {
                        id: format!("k{b}-{i}"),
                        action: Action::Delete,
                        detail: None,
                    })
                    .collect(),
                shard: (self.shards > 1).then(|| format!("s{}", b % self.shards)),
                detail: None,
            })
            .unwrap();
        }
        Ok((plan, ()))
    }

    async fn apply(&self, _: &(), batch: &Batch, _: &SweepContext) -> Result<Applied, SweepError> {
        let n = {
            let mut applied = self.applied.lock().unwrap();
            applied.push(batch.reason.clone());
            applied.len()
        };
        if let Some((at, err)) = &self.fail_at
            && *at == n
        {
            return Err(err.clone());
        }
        if self.interrupt_at == Some(n) {
            return Ok(Applied {
                deleted: 2,
                failed: batch.items[2..].iter().map(|i| i.id.clone()).collect(),
                interrupted: Some(SweepError::Backend(crate::backend::BackendError::request(
                    "redis",
                    "connection reset",
                ))),
                ..Applied::default()
            });
        }
        if let Some(cancel) = &self.cancel_after_first {
            cancel.cancel();
        }
        if self.shards > 1 {
            {
                let mut o = self.overlap.lock().unwrap();
                assert!(
                    !o.0.contains(&batch.shard),
                    "two batches of one server at once"
                );
                o.0.push(batch.shard.clone());
                o.1 = o.1.max(o.0.len());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.overlap.lock().unwrap().0.retain(|s| s != &batch.shard);
        }
        Ok(Applied {
            deleted: batch.items.len() as u64,
            ..Applied::default()
        })
    }

    /// Everything after the first item was applied.
    async fn unapplied(&self, batch: &Batch) -> Result<Vec<String>, SweepError> {
        Ok(batch.items.iter().take(1).map(|i| i.id.clone()).collect())
    }
}

struct Harness {
    engine: Engine,
    fake: Arc<Fake>,
    audit_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn harness(fake: Fake, env: &[(&str, &str)], cancel: CancellationToken) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let mut environment: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    environment.push(("JANITOR_AUDIT_LOG".into(), audit_path.display().to_string()));
    let settings = Arc::new(
        load(&Sources {
            environment,
            ..Sources::default()
        })
        .unwrap(),
    );
    let fake = Arc::new(fake);
    let audit = Arc::new(AuditLog::open(&audit_path).unwrap());
    let engine = Engine::new(settings, vec![fake.clone()], audit, Metrics::new(), cancel);
    Harness {
        engine,
        fake,
        audit_path,
        _dir: dir,
    }
}

fn request(dry_run: bool, priority: Option<Priority>) -> RunRequest {
    RunRequest {
        id: None,
        resource: Resource::Redis,
        trigger: Trigger::Cli,
        dry_run,
        priority,
        reason: None,
    }
}

impl Harness {
    /// One plain run (applied, no pressure) now: its record.
    async fn run(&self) -> RunRecord {
        self.engine
            .run(request(false, None), SystemTime::now())
            .await
            .record
    }
}

/// The audit log's records of one kind (`intent`, `applied`, `dry_run`), or all of them.
fn audit_lines(h: &Harness, kind: Option<&str>) -> Vec<serde_json::Value> {
    std::fs::read_to_string(&h.audit_path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| kind.is_none_or(|k| l["kind"] == k))
        .collect()
}

#[tokio::test]
async fn applies_every_batch_and_audits_each() {
    let h = harness(Fake::new(100, 3, 5), &[], CancellationToken::new());
    let r = h.run().await;
    assert_eq!(
        (r.outcome, r.deleted, r.planned_deletions),
        (Outcome::Succeeded, 15, 15)
    );
    assert_eq!(h.fake.applied.lock().unwrap().len(), 3);
    let (intents, applied) = (
        audit_lines(&h, Some("intent")),
        audit_lines(&h, Some("applied")),
    );
    assert_eq!((intents.len(), applied.len()), (3, 3));
    // each batch: its intent, then its outcome
    let all = audit_lines(&h, None);
    for (i, pair) in all.chunks(2).enumerate() {
        assert_eq!(
            (&pair[0]["kind"], &pair[1]["kind"]),
            (&"intent".into(), &"applied".into())
        );
        assert!(
            pair.iter()
                .all(|l| l["run_id"] == r.id.as_str() && l["batch_seq"] == i)
        );
        assert_eq!(pair[1]["deleted"], 5);
    }
    assert_eq!(h.engine.runs().list()[0].id, r.id);
}

// real time: a paused clock does not advance while the spool's reading thread waits
#[tokio::test]
async fn batches_of_different_servers_go_at_once_and_each_server_keeps_its_order() {
    let mut fake = Fake::new(100, 7, 2);
    fake.shards = 3;
    let h = harness(fake, &[], CancellationToken::new());
    let r = h.run().await;
    assert_eq!((r.outcome, r.deleted), (Outcome::Succeeded, 14));
    assert_eq!(
        h.fake.overlap.lock().unwrap().1,
        3,
        "the three servers at once"
    );
    // each server's batches in plan order
    let applied = h.fake.applied.lock().unwrap().clone();
    for s in 0..3 {
        let mine: Vec<&String> = applied
            .iter()
            .filter(|b| b[6..].parse::<usize>().unwrap() % 3 == s)
            .collect();
        let mut sorted = mine.clone();
        sorted.sort_by_key(|b| b[6..].parse::<usize>().unwrap());
        assert_eq!(mine, sorted);
    }
    // every batch written ahead and audited, whatever the interleaving
    let seq = |kind| {
        let mut s: Vec<u64> = audit_lines(&h, Some(kind))
            .iter()
            .map(|l| l["batch_seq"].as_u64().unwrap())
            .collect();
        s.sort();
        s
    };
    assert_eq!(seq("intent"), (0..7).collect::<Vec<_>>());
    assert_eq!(seq("applied"), (0..7).collect::<Vec<_>>());
    for l in audit_lines(&h, Some("applied")) {
        let n = l["batch_seq"].as_u64().unwrap();
        let intent_at = audit_lines(&h, None)
            .iter()
            .position(|x| x["kind"] == "intent" && x["batch_seq"] == n)
            .unwrap();
        let applied_at = audit_lines(&h, None)
            .iter()
            .position(|x| x["kind"] == "applied" && x["batch_seq"] == n)
            .unwrap();
        assert!(
            intent_at < applied_at,
            "batch {n} applied before its intent"
        );
    }
}

#[tokio::test]
async fn a_failing_server_stops_new_batches_and_those_in_flight_are_audited() {
    let mut fake = Fake::new(100, 9, 2);
    fake.shards = 3;
    fake.fail_at = Some((2, SweepError::ReferenceUnavailable("mongodb: down".into())));
    let h = harness(fake, &[], CancellationToken::new());
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::FailedClosed);
    // batches 0 and 2 were in flight beside the failing one: they finish and are audited
    let intents = audit_lines(&h, Some("intent")).len();
    let applied = audit_lines(&h, Some("applied")).len();
    assert_eq!(
        (intents, applied),
        (3, 2),
        "no batch starts after the failure"
    );
    assert_eq!(r.deleted, 4);
    assert!(r.message.unwrap().contains("mongodb: down"));
}

#[tokio::test]
async fn dry_run_applies_nothing_and_reports_the_plan() {
    for (dry, env) in [(true, vec![]), (false, vec![("JANITOR_DRY_RUN", "true")])] {
        let h = harness(Fake::new(100, 2, 5), &env, CancellationToken::new());
        let result = h.engine.run(request(dry, None), SystemTime::now()).await;
        assert_eq!(result.record.outcome, Outcome::DryRun);
        assert_eq!(result.record.deleted, 0);
        let mut plan = result.plan.unwrap();
        assert_eq!(plan.deletions(), 10);
        assert_eq!(plan.items().unwrap().len(), 10);
        assert!(h.fake.applied.lock().unwrap().is_empty(), "nothing applied");
        let lines = audit_lines(&h, None);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l["kind"] == "dry_run"));
    }
}

#[tokio::test]
async fn plan_above_the_cap_is_not_applied() {
    // 30 of 100 > 25 %
    let h = harness(Fake::new(100, 3, 10), &[], CancellationToken::new());
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::AbortedCap);
    assert!(r.message.unwrap().contains("30 of 100"));
    assert!(h.fake.applied.lock().unwrap().is_empty());
    assert!(audit_lines(&h, None).is_empty());
    // the absolute cap too
    let h = harness(
        Fake::new(1_000_000, 1, 11),
        &[("JANITOR_MAX_DELETE_COUNT", "10")],
        CancellationToken::new(),
    );
    assert_eq!(h.run().await.outcome, Outcome::AbortedCap);
}

#[tokio::test]
async fn reference_failure_stops_the_run_closed() {
    let mut fake = Fake::new(100, 3, 5);
    fake.fail_at = Some((
        2,
        SweepError::ReferenceUnavailable("mongodb: timed out".into()),
    ));
    let h = harness(fake, &[], CancellationToken::new());
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::FailedClosed);
    assert_eq!(r.deleted, 5, "only the batch before the failure");
    assert_eq!(
        h.fake.applied.lock().unwrap().len(),
        2,
        "no batch after the failure"
    );
    assert_eq!(audit_lines(&h, Some("intent")).len(), 2);
    assert_eq!(
        audit_lines(&h, Some("applied")).len(),
        1,
        "the failed batch has no outcome: what the store did is unknown"
    );
    // the next run first asks the store: the double says all but the first item went
    let next = h.run().await;
    assert_eq!(next.outcome, Outcome::Succeeded);
    assert!(
        next.notes.iter().any(|n| n.starts_with(&format!(
            "recovered batch 1 of run {} (the janitor stopped mid-batch): 4 deleted, 0 expired, 1 not applied",
            r.id
        ))),
        "{:?}",
        next.notes
    );
    let recovered: Vec<_> = audit_lines(&h, Some("applied"))
        .into_iter()
        .filter(|l| l["recovered"] == true)
        .collect();
    assert_eq!(recovered.len(), 1);
    assert_eq!(
        (&recovered[0]["run_id"], &recovered[0]["batch_seq"]),
        (&r.id.as_str().into(), &1.into())
    );
    assert_eq!(recovered[0]["not_applied"], serde_json::json!(["k1-0"]));
}

#[tokio::test]
async fn backend_failure_is_failed_not_closed() {
    let mut fake = Fake::new(100, 2, 5);
    fake.fail_at = Some((
        1,
        SweepError::Backend(crate::backend::BackendError::request(
            "redis",
            "broken pipe",
        )),
    ));
    let h = harness(fake, &[], CancellationToken::new());
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.message.as_deref(), Some("redis: broken pipe"));
}

#[tokio::test]
async fn a_batch_interrupted_partway_is_audited_then_ends_the_run() {
    let mut fake = Fake::new(100, 3, 5);
    fake.interrupt_at = Some(2);
    let h = harness(fake, &[], CancellationToken::new());
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.message.as_deref(), Some("redis: connection reset"));
    assert_eq!((r.deleted, r.failed), (5 + 2, 3));
    assert_eq!(h.fake.applied.lock().unwrap().len(), 2, "no batch after it");
    let audit = audit_lines(&h, Some("applied"));
    assert_eq!(audit.len(), 2, "the interrupted batch is in the audit log");
    assert_eq!(audit[1]["failed"].as_array().unwrap().len(), 3);
    assert_eq!(audit[1]["deleted"], 2);
}

#[tokio::test]
async fn shutdown_stops_between_batches() {
    let cancel = CancellationToken::new();
    let mut fake = Fake::new(100, 4, 5);
    fake.cancel_after_first = Some(cancel.clone());
    let h = harness(fake, &[], cancel);
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert_eq!(r.deleted, 5);
    assert_eq!(
        audit_lines(&h, Some("intent")).len(),
        1,
        "no intent after shutdown"
    );
    assert_eq!(
        audit_lines(&h, Some("applied")).len(),
        1,
        "the finished batch is audited"
    );
}

#[tokio::test]
async fn pressure_tasks_use_the_pressure_ttl() {
    let h = harness(
        Fake::new(100, 0, 0),
        &[("JANITOR_REDIS_PRESSURE_TTL_HOURS", "0.25")],
        CancellationToken::new(),
    );
    h.engine
        .run(request(true, Some(Priority::Medium)), SystemTime::now())
        .await;
    assert_eq!(
        *h.fake.seen_ttl.lock().unwrap(),
        Some(Duration::from_secs(3600))
    );
    h.engine
        .run(request(true, Some(Priority::Critical)), SystemTime::now())
        .await;
    assert_eq!(
        *h.fake.seen_ttl.lock().unwrap(),
        Some(Duration::from_secs(900))
    );
}

#[tokio::test]
async fn unconfigured_resource_is_disabled() {
    let h = harness(Fake::new(1, 0, 0), &[], CancellationToken::new());
    let mut req = request(false, None);
    req.resource = Resource::S3;
    let r = h.engine.run(req, SystemTime::now()).await;
    assert_eq!(r.record.outcome, Outcome::Disabled);
    assert!(!r.record.outcome.is_success());
}
