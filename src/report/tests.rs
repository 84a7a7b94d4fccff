use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::history::History;
use crate::resource::{Priority, Usage};
use crate::runs::{Outcome, RunRecord, Trigger};

const HOUR: u64 = 3600;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn run(
    id: &str,
    resource: Resource,
    started: SystemTime,
    outcome: Outcome,
    deleted: u64,
) -> RunRecord {
    RunRecord {
        id: id.into(),
        resource,
        trigger: if id.starts_with("emergency") {
            Trigger::Emergency
        } else {
            Trigger::Schedule
        },
        priority: None,
        reason: None,
        dry_run: outcome == Outcome::DryRun,
        outcome,
        message: matches!(outcome, Outcome::FailedClosed | Outcome::Failed)
            .then(|| format!("{id}: mongodb unreachable")),
        started_at: started,
        duration_secs: 1.0,
        ttl_secs: 3600.0,
        store_items: 1000,
        planned_deletions: deleted,
        planned_expirations: 0,
        deleted,
        expired: 1,
        bytes_freed: deleted * 100,
        skipped: 0,
        failed: 0,
        notes: Vec::new(),
        warnings: Vec::new(),
        sample: Vec::new(),
        drift: None,
    }
}

fn usage(fraction: f64, oldest_hours: f64) -> Usage {
    Usage {
        total_items: 1000,
        size_bytes: Some(1 << 20),
        size_source: None,
        usage_fraction: Some(fraction),
        oldest_age_hours: Some(oldest_hours),
        oldest_source: None,
        notes: Vec::new(),
    }
}

fn inputs() -> Inputs {
    let mut i = Inputs::default();
    for r in [Resource::Redis, Resource::S3] {
        i.measured[r] = true;
        i.swept[r] = true;
        i.ttl[r] = Some(Duration::from_secs(HOUR));
    }
    i
}

#[tokio::test]
async fn every_number_matches_the_runs_it_summarises_and_issues_come_from_the_figures() {
    let h = History::in_memory(Duration::from_secs(30 * 86_400));
    let now = at(1_800_000_000);
    let in_period = |h_ago: u64| now - Duration::from_secs(h_ago * HOUR);
    // Redis: climbing to HIGH despite two cleanups, oldest key 3 h old (TTL 1 h)
    h.record_usage(
        Resource::Redis,
        in_period(20),
        &usage(0.4, 1.0),
        Priority::Low,
    );
    h.record_usage(
        Resource::Redis,
        in_period(1),
        &usage(0.8, 3.0),
        Priority::High,
    );
    h.record_run(&run(
        "r1",
        Resource::Redis,
        in_period(10),
        Outcome::Succeeded,
        40,
    ));
    h.record_run(&run(
        "r2",
        Resource::Redis,
        in_period(5),
        Outcome::Succeeded,
        60,
    ));
    h.record_run(&run(
        "emergency-r3",
        Resource::Redis,
        in_period(2),
        Outcome::Succeeded,
        5,
    ));
    h.record_run(&run(
        "dry",
        Resource::Redis,
        in_period(3),
        Outcome::DryRun,
        999,
    ));
    // outside the period: not counted
    h.record_run(&run(
        "old",
        Resource::Redis,
        in_period(30),
        Outcome::Succeeded,
        7777,
    ));
    // S3: failing closed again and again
    h.record_usage(Resource::S3, in_period(1), &usage(0.1, 0.5), Priority::Low);
    for i in 0..3 {
        h.record_run(&run(
            &format!("s{i}"),
            Resource::S3,
            in_period(4 + i),
            Outcome::FailedClosed,
            0,
        ));
    }
    h.record_event(
        crate::history::EventKind::Alert,
        Some(Resource::S3),
        in_period(4),
        "warning run_failed_closed:s3: x",
    );

    let report = Report::build(&h, &inputs(), "24h", Duration::from_secs(24 * HOUR), now)
        .await
        .unwrap();
    let redis = &report.stores["redis"];
    assert_eq!(
        (redis.deleted, redis.expired, redis.bytes_freed),
        (105, 3, 10_500)
    );
    assert_eq!(redis.runs["succeeded"], 3);
    assert_eq!(redis.runs["dry_run"], 1);
    assert_eq!(redis.emergencies, 1);
    assert_eq!(
        (redis.usage_min, redis.usage_max, redis.usage_now),
        (Some(40.0), Some(80.0), Some(80.0))
    );
    let s3 = &report.stores["minio"];
    assert_eq!(s3.runs["failed_closed"], 3);
    assert_eq!(s3.failures.len(), 3);
    assert_eq!(s3.failures[0].run_id, "s0", "newest first");
    assert_eq!(s3.alerts, 1);
    assert!(
        !report.stores.contains_key("qdrant"),
        "not configured: not reported"
    );

    let codes: Vec<(&str, Option<&str>)> =
        report.issues.iter().map(|i| (i.code, i.resource)).collect();
    assert!(codes.contains(&("still_high", Some("redis"))), "{codes:?}");
    assert!(
        codes.contains(&("cleanup_not_working", Some("redis"))),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("failing_again", Some("minio"))),
        "{codes:?}"
    );
    assert!(
        !codes
            .iter()
            .any(|(c, r)| *c == "still_high" && *r == Some("minio"))
    );
    let high = report
        .issues
        .iter()
        .find(|i| i.code == "still_high")
        .unwrap();
    assert!(
        high.message.contains("after 3 cleanups") && high.message.contains("105 items deleted"),
        "{}",
        high.message
    );
    let failing = report
        .issues
        .iter()
        .find(|i| i.code == "failing_again")
        .unwrap();
    assert!(
        failing.message.contains("s0: mongodb unreachable"),
        "{}",
        failing.message
    );
    assert!(
        report
            .recommendations
            .iter()
            .any(|r| r.code == "lower_ttl_or_raise_budget")
    );

    let md = markdown(&report);
    assert!(
        md.contains("| redis | 80.0% | 40.0% | 80.0% | HIGH | 105 | 3 |"),
        "{md}"
    );
    assert!(md.contains("| 10.3 KB |"), "{md}");
    assert!(
        md.contains("## Issues detected") && md.contains("failed_closed (s0: mongodb unreachable)"),
        "{md}"
    );
}

#[tokio::test]
async fn a_quiet_healthy_period_has_no_issues() {
    let h = History::in_memory(Duration::from_secs(30 * 86_400));
    let now = at(1_800_000_000);
    for r in [Resource::Redis, Resource::S3] {
        h.record_usage(
            r,
            now - Duration::from_secs(HOUR),
            &usage(0.2, 0.5),
            Priority::Low,
        );
        h.record_run(&run(
            &format!("{r}"),
            r,
            now - Duration::from_secs(HOUR),
            Outcome::Succeeded,
            3,
        ));
    }
    let report = Report::build(&h, &inputs(), "24h", Duration::from_secs(24 * HOUR), now)
        .await
        .unwrap();
    assert!(report.issues.is_empty(), "{:?}", report.issues);
    assert!(
        report.recommendations.is_empty(),
        "{:?}",
        report.recommendations
    );
}

#[test]
fn periods_are_durations_from_a_minute_to_a_year() {
    assert_eq!(parse_period("24h"), Some(Duration::from_secs(86_400)));
    assert_eq!(parse_period("7d"), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(parse_period("30d"), Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(parse_period("0s"), None);
    assert_eq!(parse_period("2y"), None);
    assert_eq!(parse_period("soon"), None);
}
