use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::runs::{Outcome, Trigger};

const DAY: u64 = 86_400;

fn settings(dir: &Path) -> HistorySettings {
    HistorySettings {
        path: dir.join("history.sqlite"),
        retention: Duration::from_secs(30 * DAY),
        max_bytes: u64::MAX,
        report_hour: 2,
        report_dir: dir.join("reports"),
        timezone: "UTC".into(),
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

pub(crate) fn run(
    id: &str,
    resource: Resource,
    started: SystemTime,
    outcome: Outcome,
) -> RunRecord {
    RunRecord {
        id: id.into(),
        resource,
        trigger: Trigger::Schedule,
        priority: None,
        reason: None,
        dry_run: outcome == Outcome::DryRun,
        outcome,
        message: (outcome == Outcome::FailedClosed).then(|| "mongodb: connection refused".into()),
        started_at: started,
        duration_secs: 0.5,
        ttl_secs: 3600.0,
        store_items: 100,
        planned_deletions: 10,
        planned_expirations: 0,
        deleted: 10,
        expired: 2,
        bytes_freed: 1000,
        skipped: 0,
        failed: 0,
        notes: vec!["a note".into()],
        warnings: Vec::new(),
        sample: Vec::new(),
        drift: None,
    }
}

fn usage(fraction: f64) -> Usage {
    Usage {
        total_items: (fraction * 1000.0) as u64,
        size_bytes: Some(1 << 20),
        size_source: None,
        usage_fraction: Some(fraction),
        oldest_age_hours: Some(5.0),
        oldest_source: None,
        notes: Vec::new(),
    }
}

#[tokio::test]
async fn runs_survive_a_restart_and_are_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&settings(dir.path()));
    let t0 = 1_800_000_000;
    for i in 0..5 {
        h.record_run(&run(
            &format!("r{i}"),
            Resource::Redis,
            at(t0 + i * 60),
            Outcome::Succeeded,
        ));
    }
    h.record_run(&run("s3", Resource::S3, at(t0 + 30), Outcome::FailedClosed));
    drop(h);

    let h = History::open(&settings(dir.path()));
    let all = h
        .runs(RunQuery {
            limit: 3,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.total, 6);
    let ids: Vec<&str> = all.runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r4", "r3", "r2"], "newest first");
    let next = h
        .runs(RunQuery {
            limit: 3,
            offset: 3,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = next
        .runs
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r1", "s3", "r0"]);
    let closed = h
        .runs(RunQuery {
            outcome: Some("failed_closed".into()),
            limit: 10,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(closed.total, 1);
    assert_eq!(closed.runs[0]["message"], "mongodb: connection refused");
    let window = h
        .runs(RunQuery {
            resource: Some(Resource::Redis),
            since: Some(at(t0 + 60)),
            until: Some(at(t0 + 180)),
            limit: 10,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(window.total, 2, "since inclusive, until exclusive");
    assert_eq!(h.run("r3".into()).await.unwrap().unwrap()["deleted"], 10);
    assert!(h.run("nope".into()).await.unwrap().is_none());
}

#[tokio::test]
async fn series_are_downsampled_and_totals_add_up() {
    let h = History::in_memory(Duration::from_secs(30 * DAY));
    let until = at(1_800_000_000);
    let since = until - Duration::from_secs(DAY);
    // one measurement a minute for a day: 1,440 rows, cut to at most 288 points
    for m in 0..1440 {
        let fraction = if m < 720 { 0.5 } else { 0.9 };
        let priority = if m < 720 {
            Priority::Medium
        } else {
            Priority::Critical
        };
        h.record_usage(
            Resource::Redis,
            since + Duration::from_secs(m * 60),
            &usage(fraction),
            priority,
        );
    }
    let (step, points) = h.usage_series(Resource::Redis, since, until).await.unwrap();
    assert_eq!(step, 300);
    assert!(
        points.len() <= 288 && points.len() >= 287,
        "{}",
        points.len()
    );
    assert_eq!(points[0].usage_percentage, Some(50.0));
    assert_eq!(points.last().unwrap().usage_percentage, Some(90.0));

    h.record_run(&run(
        "a",
        Resource::Redis,
        since + Duration::from_secs(10),
        Outcome::Succeeded,
    ));
    h.record_run(&run(
        "b",
        Resource::Redis,
        since + Duration::from_secs(20),
        Outcome::Succeeded,
    ));
    h.record_run(&run(
        "c",
        Resource::Redis,
        since + Duration::from_secs(4000),
        Outcome::DryRun,
    ));
    h.record_run(&run(
        "d",
        Resource::Redis,
        since + Duration::from_secs(5000),
        Outcome::FailedClosed,
    ));
    let deletions = h
        .deletion_series(Resource::Redis, since, until)
        .await
        .unwrap();
    assert_eq!(deletions.len(), 2, "the dry run is not a deletion");
    assert_eq!((deletions[0].deleted, deletions[0].runs), (20, 2));

    let t = h.totals(Resource::Redis, since, until).await.unwrap();
    assert_eq!(
        (t.usage_min, t.usage_max, t.usage_now),
        (Some(50.0), Some(90.0), Some(90.0))
    );
    assert_eq!(t.priority_now.as_deref(), Some("CRITICAL"));
    assert_eq!((t.measurements, t.pressured_measurements), (1440, 720));
    assert_eq!((t.deleted, t.expired, t.bytes_freed), (30, 6, 3000));
    assert_eq!(t.runs["succeeded"], 2);
    assert_eq!(t.runs["dry_run"], 1);
    assert_eq!(t.failures.len(), 1);
    assert_eq!(
        t.failures[0].cause.as_deref(),
        Some("mongodb: connection refused")
    );
}

#[test]
fn retention_and_the_size_bound_remove_the_oldest_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.retention = Duration::from_secs(10 * DAY);
    let h = History::open(&s);
    let now = at(1_800_000_000);
    for d in 0..20 {
        let t = now - Duration::from_secs(d * DAY);
        h.record_run(&run(&format!("r{d}"), Resource::S3, t, Outcome::Succeeded));
        h.record_usage(Resource::S3, t, &usage(0.1), Priority::Low);
    }
    // days 11..=19 are past retention: 9 runs and 9 measurements
    assert_eq!(h.prune(now, true), 18);
    assert_eq!(h.prune(now, false), 0, "at most once an hour");
    let left: i64 = h
        .with(|c| c.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(left, 11);

    // a bound below the file's size: the oldest runs go until it fits
    let big = History(Arc::new(Inner {
        conn: Mutex::new(memory()),
        path: None,
        retention: Duration::from_secs(365 * DAY),
        max_bytes: 64 * 1024,
        last_prune: Mutex::new(None),
    }));
    for i in 0..2000 {
        big.record_run(&run(
            &format!("r{i:05}"),
            Resource::S3,
            now - Duration::from_secs(i),
            Outcome::Succeeded,
        ));
    }
    assert!(big.prune(now, true) > 0);
    let (left, max_id): (i64, String) = big
        .with(|c| {
            c.query_row("SELECT COUNT(*), MAX(id) FROM runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })
        .unwrap();
    assert!(left > 0 && left < 2000, "{left}");
    assert!(
        max_id.as_str() < "r01999",
        "the oldest went first ({max_id} is left)"
    );
    assert!(used_bytes(&big.0.conn.lock().unwrap()).unwrap() <= 64 * 1024);
}

#[tokio::test]
async fn a_corrupt_file_is_moved_aside_and_a_new_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    std::fs::write(
        &s.path,
        b"this is not a SQLite database, just garbage bytes...........",
    )
    .unwrap();
    let h = History::open(&s);
    assert_eq!(h.path(), Some(s.path.as_path()), "a new file, not memory");
    h.record_run(&run(
        "r1",
        Resource::Redis,
        at(1_800_000_000),
        Outcome::Succeeded,
    ));
    assert_eq!(
        h.runs(RunQuery {
            limit: 5,
            ..RunQuery::default()
        })
        .await
        .unwrap()
        .total,
        1
    );
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("history.sqlite.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept for inspection");
    let kept = std::fs::read(dir.path().join(&aside[0])).unwrap();
    assert!(kept.starts_with(b"this is not"));
}

#[test]
fn a_path_that_cannot_be_a_file_means_a_history_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    // under a regular file: no directory can be made there, even by root
    std::fs::write(dir.path().join("plain"), b"x").unwrap();
    s.path = dir.path().join("plain/history.sqlite");
    let h = History::open(&s);
    assert_eq!(h.path(), None);
    h.record_run(&run(
        "r1",
        Resource::Redis,
        at(1_800_000_000),
        Outcome::Succeeded,
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_the_daemons_runtime_hand_the_worker_over_and_land() {
    // the daemon's runtime is multi-threaded: a write must not panic there (block_in_place)
    // and must be readable as soon as it returns
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&settings(dir.path()));
    let writer = h.clone();
    tokio::spawn(async move {
        writer.record_run(&run(
            "mt",
            Resource::Qdrant,
            at(1_800_000_000),
            Outcome::Succeeded,
        ));
    })
    .await
    .unwrap();
    assert!(h.run("mt".into()).await.unwrap().is_some());
}
