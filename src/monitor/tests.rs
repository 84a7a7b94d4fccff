//! The monitor against a fake gauge: what it measures, ranks and queues.

use std::sync::Mutex;

use super::*;
use crate::scheduler::TaskState;

/// Answers a fixed usage fraction per store, or an error.
struct FakeGauge(Mutex<PerResource<Option<Result<f64, ()>>>>);

impl Gauge for FakeGauge {
    fn measure(
        &self,
        resource: Resource,
        _now: SystemTime,
    ) -> BoxFuture<'_, Option<Result<Usage, BackendError>>> {
        let answer = self.0.lock().unwrap()[resource].map(|r| {
            r.map(|fraction| Usage {
                total_items: 10,
                size_bytes: Some(100),
                usage_fraction: Some(fraction),
                ..Usage::default()
            })
            .map_err(|()| BackendError::Request {
                backend: "fake",
                message: "down".into(),
            })
        });
        Box::pin(async move { answer })
    }
}

const THRESHOLDS: Thresholds = Thresholds {
    medium: 0.5,
    high: 0.75,
    critical: 0.9,
};

fn monitor(answers: PerResource<Option<Result<f64, ()>>>) -> (Monitor, Arc<FakeGauge>) {
    let gauge = Arc::new(FakeGauge(Mutex::new(answers)));
    let metrics = Metrics::new();
    let settings = crate::config::load(&Default::default()).unwrap();
    let m = Monitor {
        gauge: gauge.clone(),
        snapshot: Arc::new(Snapshot::new(&PerResource::from_fn(|_| true))),
        scheduler: Arc::new(Scheduler::new(8, 5, metrics.clone())),
        swept: PerResource::from_fn(Resource::is_swept),
        thresholds: THRESHOLDS,
        interval: Duration::from_secs(60),
        leader: LeaderHandle::default(),
        metrics,
        alerts: Alerts::log_only(&settings.alerts, "test"),
        workers: Registry::default(),
        worker_failures_alert: 3,
        history: crate::history::History::in_memory(Duration::from_secs(86_400)),
    };
    (m, gauge)
}

#[tokio::test]
async fn queues_a_task_for_each_swept_store_under_pressure_and_merges_repeats() {
    let mut answers = PerResource::default();
    answers[Resource::Redis] = Some(Ok(0.8)); // HIGH
    answers[Resource::Qdrant] = Some(Ok(0.95)); // CRITICAL
    answers[Resource::S3] = Some(Ok(0.6)); // MEDIUM: nothing to do
    answers[Resource::MongoDb] = Some(Ok(0.99)); // over its budget, but never swept
    let (mut m, _) = monitor(answers);
    let summary = m.work(&CancellationToken::new()).await.unwrap();
    assert_eq!(summary, "measured 4 stores, 0 failed; queued 2 tasks");
    let tasks = m.scheduler.snapshot();
    let queued: Vec<_> = tasks
        .iter()
        .map(|t| (t.task.resource, t.task.priority, t.task.source, t.state))
        .collect();
    assert_eq!(
        queued,
        [
            (
                Resource::Qdrant,
                Priority::Critical,
                Trigger::Monitor,
                TaskState::Pending
            ),
            (
                Resource::Redis,
                Priority::High,
                Trigger::Monitor,
                TaskState::Pending
            ),
        ]
    );
    assert_eq!(tasks[1].task.reason, "High resource usage: 80.0%");
    assert_eq!(
        m.snapshot.priority(Resource::MongoDb),
        Priority::Critical,
        "shown, not acted on"
    );
    // the next cycle merges into the pending tasks instead of queueing more
    m.work(&CancellationToken::new()).await.unwrap();
    assert_eq!(m.scheduler.pending(), 2);
}

#[tokio::test]
async fn a_failing_store_keeps_its_last_usage_and_the_others_are_measured() {
    let mut answers = PerResource::default();
    answers[Resource::Redis] = Some(Ok(0.2));
    answers[Resource::S3] = Some(Ok(0.3));
    let (mut m, gauge) = monitor(answers);
    m.work(&CancellationToken::new()).await.unwrap();
    gauge.0.lock().unwrap()[Resource::Redis] = Some(Err(()));
    let summary = m.work(&CancellationToken::new()).await.unwrap();
    assert_eq!(summary, "measured 1 stores, 1 failed; queued 0 tasks");
    let redis = &m.snapshot.all()[Resource::Redis];
    assert_eq!(redis.status, crate::snapshot::Status::Error);
    assert_eq!(redis.usage.as_ref().unwrap().usage_fraction, Some(0.2));
    // unconfigured stores are not measured at all
    assert_eq!(
        m.snapshot.all()[Resource::Qdrant].status,
        crate::snapshot::Status::Pending
    );
    // every store failing fails the unit (the worker backs off)
    gauge.0.lock().unwrap()[Resource::S3] = Some(Err(()));
    let e = m.work(&CancellationToken::new()).await.unwrap_err();
    assert_eq!(e.to_string(), "every measurement failed (2 stores)");
}
