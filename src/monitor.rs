//! The monitoring loop: measure every store, rank it, queue cleanups for the ones under
//! pressure, raise alerts.
//!
//! Each cycle measures each enabled store against its budget through a [`Gauge`] (the
//! servers' own numbers, see [`StoreGauge`]), keeps the result in the [`Snapshot`], and
//! submits a task for every swept store at HIGH or CRITICAL to the [`Scheduler`] (which
//! merges it with a pending one). Each cycle also opens the scheduler's next budget of
//! non-critical tasks. A store that fails to answer is reported as such; the others are
//! still measured.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::alert::{Alerts, Severity};
use crate::backend::{BackendError, Backends};
use crate::config::Settings;
use crate::engine::run_id;
use crate::history::History;
use crate::leader::LeaderHandle;
use crate::metrics::Metrics;
use crate::queue::CleanupTask;
use crate::resource::{PerResource, Priority, Resource, Thresholds, Usage};
use crate::runs::Trigger;
use crate::scheduler::Scheduler;
use crate::snapshot::Snapshot;
use crate::worker::{Registry, Worker};

/// Measures a store. `None`: the store is not configured.
pub trait Gauge: Send + Sync + 'static {
    /// One measurement of `resource` as of `now`.
    fn measure(
        &self,
        resource: Resource,
        now: SystemTime,
    ) -> BoxFuture<'_, Option<Result<Usage, BackendError>>>;
}

/// The [`Gauge`] of the configured backends, against the configured budgets.
pub struct StoreGauge {
    backends: Backends,
    settings: Arc<Settings>,
    metrics: Metrics,
}

impl StoreGauge {
    /// Measures through `backends`; Qdrant's per-collection figures go to `metrics`.
    pub fn new(backends: Backends, settings: Arc<Settings>, metrics: Metrics) -> Self {
        Self {
            backends,
            settings,
            metrics,
        }
    }

    async fn measure_store(
        &self,
        resource: Resource,
        now: SystemTime,
    ) -> Option<Result<Usage, BackendError>> {
        let b = &self.backends;
        let budgets = &self.settings.budgets;
        Some(match resource {
            Resource::Redis => b.redis.as_ref()?.measure(budgets.redis_memory_bytes).await,
            Resource::Qdrant => {
                let sweep = &self.settings.qdrant_sweep;
                let measured = b.qdrant.as_ref()?.measure(
                    budgets.qdrant_points,
                    &sweep.timestamp_field,
                    sweep.timestamp_format,
                    now,
                );
                measured.await.map(|(usage, collections)| {
                    self.metrics.record_qdrant_collections(&collections);
                    usage
                })
            }
            Resource::S3 => b.s3.as_ref()?.measure(budgets.s3_bytes, now).await,
            Resource::MongoDb => {
                let collection = &self.settings.s3_sweep.ref_collection;
                let created = &self.settings.documents.created_field;
                let measured =
                    b.mongo
                        .as_ref()?
                        .measure(collection, created, budgets.mongodb_bytes, now);
                measured.await
            }
            // documents live in MongoDB, measured above
            Resource::Documents => return None,
        })
    }
}

impl Gauge for StoreGauge {
    fn measure(
        &self,
        resource: Resource,
        now: SystemTime,
    ) -> BoxFuture<'_, Option<Result<Usage, BackendError>>> {
        Box::pin(self.measure_store(resource, now))
    }
}

/// The monitor measured no store at all.
#[derive(Debug, thiserror::Error)]
#[error("every measurement failed ({failed} stores)")]
pub struct MonitorError {
    failed: usize,
}

/// What the monitor works with: narrow handles, nothing else.
pub struct Monitor {
    /// Measures the stores.
    pub gauge: Arc<dyn Gauge>,
    /// Where measurements go.
    pub snapshot: Arc<Snapshot>,
    /// Where cleanup tasks go.
    pub scheduler: Arc<Scheduler>,
    /// The stores that can be swept (a task for another would be refused).
    pub swept: PerResource<bool>,
    /// Usage fractions to priorities.
    pub thresholds: Thresholds,
    /// The cycle's interval.
    pub interval: Duration,
    /// Whether this replica queues cleanups.
    pub leader: LeaderHandle,
    /// Prometheus.
    pub metrics: Metrics,
    /// Alerts on CRITICAL stores and failing workers.
    pub alerts: Alerts,
    /// The workers' states (for the failing-worker alert and metrics).
    pub workers: Registry,
    /// Consecutive failures of a worker before it is alerted on.
    pub worker_failures_alert: u32,
    /// Where every measurement is kept (the usage charts and reports).
    pub history: History,
}

impl Monitor {
    /// Measures every store; returns (stores measured, stores failed).
    pub async fn measure_all(&self, now: SystemTime) -> (usize, usize) {
        let (mut ok, mut failed) = (0, 0);
        for resource in Resource::ALL {
            let Some(result) = self.gauge.measure(resource, now).await else {
                continue;
            };
            let result = match result {
                Ok(usage) => {
                    ok += 1;
                    // MongoDB is prioritised only against its optional budget; nothing is
                    // swept for it
                    let priority = usage.priority(&self.thresholds);
                    self.metrics.record_usage(resource, &usage, priority);
                    self.history.record_usage(resource, now, &usage, priority);
                    Ok((usage, priority))
                }
                Err(e) => {
                    failed += 1;
                    self.metrics.record_measure_error(resource);
                    tracing::warn!(%resource, error = %e, "measurement failed");
                    Err(e.to_string())
                }
            };
            self.snapshot.set(resource, now, result);
        }
        self.history.prune(now, false);
        (ok, failed)
    }

    /// Submits a task for every swept store at HIGH or above; returns how many.
    pub fn schedule(&self, now: SystemTime) -> usize {
        let mut submitted = 0;
        for (resource, s) in self.snapshot.all().iter() {
            let (Some(fraction), true) = (
                s.usage.as_ref().and_then(|u| u.usage_fraction),
                s.priority.is_pressure(),
            ) else {
                continue;
            };
            if !self.swept[resource] {
                continue;
            }
            let level = if s.priority == Priority::Critical {
                "Critical"
            } else {
                "High"
            };
            let reason = format!("{level} resource usage: {:.1}%", fraction * 100.0);
            let task = CleanupTask::new(
                run_id(resource, now),
                s.priority,
                resource,
                Trigger::Monitor,
                now,
                reason,
            );
            self.scheduler.submit(task, false);
            submitted += 1;
        }
        submitted
    }

    /// Alerts on stores at CRITICAL and on workers failing again and again (each key at
    /// most once per cooldown).
    fn alert(&self, workers: &[crate::worker::WorkerStatus]) {
        for (resource, s) in self.snapshot.all().iter() {
            let fraction = s.usage.as_ref().and_then(|u| u.usage_fraction);
            if let (Some(f), Priority::Critical) = (fraction, s.priority) {
                let message = format!(
                    "{resource} usage {:.1}% is CRITICAL{}",
                    f * 100.0,
                    if self.leader.may_sweep() && self.swept[resource] {
                        ": emergency cleanup running"
                    } else {
                        ""
                    }
                );
                let key = format!("usage_critical:{resource}");
                self.alerts.raise(&key, Severity::Critical, &message);
            }
        }
        let threshold = self.worker_failures_alert;
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
            let key = format!("worker_failing:{}", w.name);
            self.alerts.raise(&key, Severity::Warning, &message);
        }
    }
}

impl Worker for Monitor {
    type Error = MonitorError;

    fn name(&self) -> &str {
        "monitor"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn work(&mut self, _cancel: &CancellationToken) -> Result<String, MonitorError> {
        let now = SystemTime::now();
        let (ok, failed) = self.measure_all(now).await;
        // every replica measures; only the leader queues cleanups
        let leader = self.leader.may_sweep();
        let queued = if leader { self.schedule(now) } else { 0 };
        self.scheduler.new_cycle();
        let workers = self.workers.snapshot();
        self.metrics.record_workers(&workers);
        self.metrics.set_leader(leader);
        self.metrics.record_process();
        self.alert(&workers);
        if ok == 0 && failed > 0 {
            return Err(MonitorError { failed });
        }
        Ok(format!(
            "measured {ok} stores, {failed} failed; queued {queued} tasks"
        ))
    }
}

#[cfg(test)]
mod tests;
