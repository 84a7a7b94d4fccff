//! The monitoring loop: measure every store, rank it, queue cleanups.
//!
//! Each cycle measures each enabled backend against its budget (the server's own numbers),
//! keeps the result in the [`Snapshot`] the API serves (so `/api/resources/metrics` never
//! waits on a backend), and turns HIGH / CRITICAL usage into [`CleanupTask`]s. Then it takes
//! tasks off the queue: every CRITICAL one at once, and up to `tasks_per_cycle` others. A
//! backend that fails to answer is reported as such; the others are still measured.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::alert::Severity;
use crate::app::State;
use crate::backend::BackendError;
use crate::engine::RunRequest;
use crate::queue::{CleanupTask, Pushed};
use crate::resource::{Priority, Resource, Usage};
use crate::runs::Trigger;
use crate::worker::Worker;

/// The monitored stores, by their seed key.
pub const KEYS: [&str; 4] = ["redis", "qdrant", "minio", "mongodb"];

/// What is known of one store.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceState {
    /// `ok`, `error`, `disabled` or `pending` (not measured yet).
    pub status: &'static str,
    /// The last successful measurement.
    pub usage: Option<Usage>,
    /// Its priority.
    pub priority: Priority,
    /// The last error, if the last measurement failed.
    pub error: Option<String>,
    /// When it was last measured (successfully or not).
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub measured_at: Option<SystemTime>,
}

impl ResourceState {
    fn new(enabled: bool) -> Self {
        Self {
            status: if enabled { "pending" } else { "disabled" },
            usage: None,
            priority: Priority::Low,
            error: None,
            measured_at: None,
        }
    }
}

/// The latest measurement of every store, shared with the API and the sweep loops.
#[derive(Debug, Default)]
pub struct Snapshot(RwLock<BTreeMap<&'static str, ResourceState>>);

impl Snapshot {
    /// A snapshot with every store pending or disabled.
    pub fn new(enabled: impl Fn(&str) -> bool) -> Self {
        Self(RwLock::new(
            KEYS.iter()
                .map(|k| (*k, ResourceState::new(enabled(k))))
                .collect(),
        ))
    }

    /// Every store's state.
    pub fn all(&self) -> BTreeMap<&'static str, ResourceState> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The priority of a sweepable resource (LOW when unknown).
    pub fn priority(&self, resource: Resource) -> Priority {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(resource.metrics_key())
            .map_or(Priority::Low, |s| s.priority)
    }

    fn set(&self, key: &'static str, now: SystemTime, result: Result<(Usage, Priority), String>) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        let state = map.entry(key).or_insert_with(|| ResourceState::new(true));
        state.measured_at = Some(now);
        match result {
            Ok((usage, priority)) => {
                state.status = "ok";
                state.usage = Some(usage);
                state.priority = priority;
                state.error = None;
            }
            // keep the last good usage (marked stale by the error) and its priority
            Err(e) => {
                state.status = "error";
                state.error = Some(e);
            }
        }
    }
}

/// The monitoring worker.
pub struct Monitor {
    state: Arc<State>,
}

impl Monitor {
    /// A monitor over the daemon's state.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }

    async fn measure(&self, key: &str, now: SystemTime) -> Option<Result<Usage, BackendError>> {
        let b = &self.state.backends;
        let budgets = &self.state.settings.budgets;
        Some(match key {
            "redis" => b.redis.as_ref()?.measure(budgets.redis_memory_bytes).await,
            "qdrant" => {
                let sweep = &self.state.settings.qdrant_sweep;
                let measured = b.qdrant.as_ref()?.measure(
                    budgets.qdrant_points,
                    &sweep.timestamp_field,
                    sweep.timestamp_format,
                    now,
                );
                measured.await.map(|(usage, collections)| {
                    self.state.metrics.record_qdrant_collections(&collections);
                    usage
                })
            }
            "minio" => b.s3.as_ref()?.measure(budgets.s3_bytes, now).await,
            "mongodb" => {
                let collection = &self.state.settings.s3_sweep.ref_collection;
                b.mongo.as_ref()?.measure(collection).await
            }
            _ => return None,
        })
    }

    /// Measures everything; returns (stores measured, stores failed).
    pub async fn measure_all(&self, now: SystemTime) -> (usize, usize) {
        let (mut ok, mut failed) = (0, 0);
        let thresholds = self.state.settings.thresholds;
        for key in KEYS {
            let Some(result) = self.measure(key, now).await else {
                continue;
            };
            let result = match result {
                Ok(usage) => {
                    ok += 1;
                    // MongoDB has no budget: it is measured, never prioritised
                    let priority = if key == "mongodb" {
                        Priority::Low
                    } else {
                        usage.priority(&thresholds)
                    };
                    self.state.metrics.record_usage(key, &usage, priority);
                    Ok((usage, priority))
                }
                Err(e) => {
                    failed += 1;
                    self.state.metrics.record_measure_error(key);
                    tracing::warn!(resource = key, error = %e, "measurement failed");
                    Err(e.to_string())
                }
            };
            self.state.snapshot.set(key, now, result);
        }
        (ok, failed)
    }

    /// Queues a task for every resource at HIGH or above.
    fn schedule(&self, now: SystemTime) {
        let snapshot = self.state.snapshot.all();
        let mut queue = self.state.lock_queue();
        for resource in Resource::ALL {
            let Some(s) = snapshot.get(resource.metrics_key()) else {
                continue;
            };
            let (Some(usage), true) = (&s.usage, s.priority.is_pressure()) else {
                continue;
            };
            if !self.state.engine.enabled(resource) {
                continue;
            }
            let reason = format!(
                "{} resource usage: {:.1}%",
                if s.priority == Priority::Critical {
                    "Critical"
                } else {
                    "High"
                },
                usage.usage_fraction * 100.0
            );
            let task = CleanupTask::new(s.priority, resource, "all", now, reason);
            if let Pushed::Rejected = queue.push(task) {
                tracing::warn!(resource = %resource, "cleanup queue full: task dropped");
            }
        }
        self.state.metrics.set_queue_size(queue.len());
    }

    /// Alerts on stores at CRITICAL and on workers failing again and again (each key at
    /// most once per cooldown).
    fn alert(&self, workers: &[crate::worker::WorkerStatus]) {
        let alerts = &self.state.alerts;
        for (key, s) in self.state.snapshot.all() {
            if let (Some(u), Priority::Critical) = (&s.usage, s.priority) {
                let message = format!(
                    "{key} usage {:.1}% is CRITICAL{}",
                    u.usage_fraction * 100.0,
                    if self.state.may_sweep() {
                        ": emergency cleanup running"
                    } else {
                        ""
                    }
                );
                alerts.raise(
                    &format!("usage_critical:{key}"),
                    Severity::Critical,
                    &message,
                );
            }
        }
        let threshold = self.state.settings.alerts.worker_failures;
        for w in workers
            .iter()
            .filter(|w| w.consecutive_failures >= threshold)
        {
            let message = format!(
                "worker {} failed {} times in a row: {}",
                w.name,
                w.consecutive_failures,
                w.last_error.as_deref().unwrap_or("no error recorded")
            );
            alerts.raise(
                &format!("worker_failing:{}", w.name),
                Severity::Warning,
                &message,
            );
        }
    }

    /// Starts the runs for CRITICAL tasks and up to `tasks_per_cycle` others.
    fn dispatch(&self) -> usize {
        let mut started = 0;
        let per_cycle = self.state.settings.scheduling.tasks_per_cycle;
        loop {
            let task = {
                let mut queue = self.state.lock_queue();
                let task = queue
                    .pop_at_least(Priority::Critical)
                    .or_else(|| (started < per_cycle).then(|| queue.pop()).flatten());
                self.state.metrics.set_queue_size(queue.len());
                task
            };
            let Some(task) = task else { break };
            if task.priority == Priority::Critical {
                self.state.metrics.record_emergency(task.resource.name());
            }
            tracing::info!(resource = %task.resource, priority = %task.priority, reason = %task.reason, "cleanup task started");
            let state = self.state.clone();
            self.state.tracker.spawn(async move {
                let req = RunRequest {
                    id: None,
                    resource: task.resource,
                    trigger: Trigger::Queue,
                    dry_run: false,
                    priority: Some(task.priority),
                };
                state.engine.run(req, SystemTime::now()).await;
            });
            started += 1;
        }
        started
    }
}

impl Worker for Monitor {
    fn name(&self) -> &str {
        "monitor"
    }

    fn interval(&self) -> Duration {
        self.state.settings.intervals.monitoring
    }

    async fn work(&mut self, _cancel: &CancellationToken) -> Result<String, String> {
        let now = SystemTime::now();
        let (ok, failed) = self.measure_all(now).await;
        // every replica measures; only the leader queues and runs cleanups
        let leader = self.state.may_sweep();
        let started = if leader {
            self.schedule(now);
            self.dispatch()
        } else {
            0
        };
        let workers = self.state.workers.snapshot();
        self.state.metrics.record_workers(&workers);
        self.state.metrics.set_leader(leader);
        self.alert(&workers);
        let summary = format!("measured {ok} stores, {failed} failed; started {started} tasks");
        if ok == 0 && failed > 0 {
            Err(summary)
        } else {
            Ok(summary)
        }
    }
}
