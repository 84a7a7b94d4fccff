//! Prometheus metrics (`GET /metrics`), through the prometheus-client crate.
//!
//! Usage per resource, items deleted, run outcomes and durations, queue size, worker state:
//! what an alert on "critical despite cleanup" or "runs failing closed" needs.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::resource::{CollectionStats, Priority, Resource, Usage};
use crate::runs::Outcome;
use crate::worker::WorkerStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    resource: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
    state: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The daemon's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    usage: Family<ResourceLabel, FloatGauge>,
    items: Family<ResourceLabel, Gauge>,
    bytes: Family<ResourceLabel, Gauge>,
    priority: Family<ResourceLabel, Gauge>,
    measure_errors: Family<ResourceLabel, Counter>,
    deleted: Family<ResourceLabel, Counter>,
    expired: Family<ResourceLabel, Counter>,
    runs: Family<RunLabels, Counter>,
    duration: Family<ResourceLabel, Histogram>,
    emergency: Family<ResourceLabel, Counter>,
    queue_size: Gauge,
    queue_running: Gauge,
    s3_delete_inflight: Gauge,
    process_resident: Gauge,
    process_fds: Gauge,
    runtime_tasks: Gauge,
    s3_delete_throttles: Counter,
    queue_dropped: Counter,
    drift: Family<KindLabel, Gauge>,
    leader: Gauge,
    worker_state: Family<WorkerLabels, Gauge>,
    worker_failures: Family<ResourceLabel, Gauge>,
    redis_without_ttl: Family<PatternLabel, Gauge>,
    redis_oldest_idle: Family<PatternLabel, Gauge>,
    s3_dangling: Gauge,
    qdrant_points: Family<CollectionLabel, Gauge>,
    qdrant_segments: Family<CollectionLabel, Gauge>,
    qdrant_indexed_vectors: Family<CollectionLabel, Gauge>,
    qdrant_timestamp_indexed: Family<CollectionLabel, Gauge>,
    qdrant_oldest: Family<CollectionLabel, Gauge>,
    dedup_checks: Counter,
    dedup_duplicates: Counter,
    dedup_bytes_hashed: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectionLabel {
    collection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PatternLabel {
    pattern: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            registry: Arc::default(),
            usage: Family::default(),
            items: Family::default(),
            bytes: Family::default(),
            priority: Family::default(),
            measure_errors: Family::default(),
            deleted: Family::default(),
            expired: Family::default(),
            runs: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 4.0, 10))
            }),
            emergency: Family::default(),
            queue_size: Gauge::default(),
            queue_running: Gauge::default(),
            s3_delete_inflight: Gauge::default(),
            process_resident: Gauge::default(),
            process_fds: Gauge::default(),
            runtime_tasks: Gauge::default(),
            s3_delete_throttles: Counter::default(),
            queue_dropped: Counter::default(),
            drift: Family::default(),
            leader: Gauge::default(),
            worker_state: Family::default(),
            worker_failures: Family::default(),
            redis_without_ttl: Family::default(),
            redis_oldest_idle: Family::default(),
            s3_dangling: Gauge::default(),
            qdrant_points: Family::default(),
            qdrant_segments: Family::default(),
            qdrant_indexed_vectors: Family::default(),
            qdrant_timestamp_indexed: Family::default(),
            qdrant_oldest: Family::default(),
            dedup_checks: Counter::default(),
            dedup_duplicates: Counter::default(),
            dedup_bytes_hashed: Counter::default(),
        };
        r.register(
            "janitor_dedup_checks",
            "Dedup checks and lookups answered",
            m.dedup_checks.clone(),
        );
        r.register(
            "janitor_dedup_duplicates",
            "Dedup checks and lookups that found a duplicate",
            m.dedup_duplicates.clone(),
        );
        r.register(
            "janitor_dedup_bytes_hashed",
            "Bytes hashed by POST /api/dedup/check",
            m.dedup_bytes_hashed.clone(),
        );
        r.register(
            "janitor_qdrant_points",
            "Points per Qdrant collection (the server's count)",
            m.qdrant_points.clone(),
        );
        r.register(
            "janitor_qdrant_segments",
            "Segments per Qdrant collection",
            m.qdrant_segments.clone(),
        );
        r.register(
            "janitor_qdrant_indexed_vectors",
            "Vectors in the HNSW index per Qdrant collection",
            m.qdrant_indexed_vectors.clone(),
        );
        r.register(
            "janitor_qdrant_timestamp_indexed",
            "1 when the collection's timestamp field has a range-capable payload index",
            m.qdrant_timestamp_indexed.clone(),
        );
        r.register(
            "janitor_qdrant_oldest_point_age_seconds",
            "Age of the oldest point per collection (order_by on the indexed timestamp)",
            m.qdrant_oldest.clone(),
        );
        r.register(
            "janitor_resource_usage_ratio",
            "Measured usage against the budget (1 = full)",
            m.usage.clone(),
        );
        r.register(
            "janitor_resource_items",
            "Items in the store (keys, points, objects, documents)",
            m.items.clone(),
        );
        r.register(
            "janitor_resource_bytes",
            "Bytes the store reports (absent where it reports none)",
            m.bytes.clone(),
        );
        r.register(
            "janitor_resource_priority",
            "Cleanup priority: 0 LOW, 1 MEDIUM, 2 HIGH, 3 CRITICAL",
            m.priority.clone(),
        );
        r.register(
            "janitor_measure_errors",
            "Failed measurements",
            m.measure_errors.clone(),
        );
        r.register("janitor_items_deleted", "Items deleted", m.deleted.clone());
        r.register(
            "janitor_items_expired",
            "Items given a TTL",
            m.expired.clone(),
        );
        r.register("janitor_runs", "Sweep runs by outcome", m.runs.clone());
        r.register(
            "janitor_run_duration_seconds",
            "Sweep run duration",
            m.duration.clone(),
        );
        r.register(
            "janitor_emergency_cleanups",
            "CRITICAL cleanup tasks run at once",
            m.emergency.clone(),
        );
        r.register(
            "janitor_queue_size",
            "Pending cleanup tasks",
            m.queue_size.clone(),
        );
        r.register(
            "janitor_drift_items",
            "Drift between the stores by kind: orphan_points, orphan_keys, missing_objects, missing_vectors (absent until measured)",
            m.drift.clone(),
        );
        r.register(
            "janitor_queue_running",
            "Cleanup tasks running now (at most one per store)",
            m.queue_running.clone(),
        );
        r.register(
            "janitor_process_resident_bytes",
            "Resident memory of the janitor (VmRSS), sampled every monitoring cycle",
            m.process_resident.clone(),
        );
        r.register(
            "janitor_process_open_fds",
            "Open file descriptors of the janitor, sampled every monitoring cycle",
            m.process_fds.clone(),
        );
        r.register(
            "janitor_runtime_alive_tasks",
            "Tasks alive in the async runtime, sampled every monitoring cycle",
            m.runtime_tasks.clone(),
        );
        r.register(
            "janitor_s3_delete_inflight",
            "DeleteObjects requests in flight now (adaptive: grows on clean answers, halves on throttles)",
            m.s3_delete_inflight.clone(),
        );
        r.register(
            "janitor_s3_delete_throttles",
            "Throttle signals on DeleteObjects (503, SlowDown, per-key retriable errors, timeouts)",
            m.s3_delete_throttles.clone(),
        );
        r.register(
            "janitor_queue_dropped",
            "Cleanup tasks dropped because the queue was full (the lowest-priority, oldest)",
            m.queue_dropped.clone(),
        );
        r.register(
            "janitor_leader",
            "1 while this replica sweeps (holds the leader lease, or no election), 0 on standby",
            m.leader.clone(),
        );
        r.register(
            "janitor_worker_state",
            "1 for the state each worker is in",
            m.worker_state.clone(),
        );
        r.register(
            "janitor_worker_consecutive_failures",
            "Failures in a row per worker",
            m.worker_failures.clone(),
        );
        r.register(
            "janitor_redis_keys_without_ttl",
            "Keys without TTL per policy pattern, from the last pass",
            m.redis_without_ttl.clone(),
        );
        r.register(
            "janitor_redis_oldest_idle_seconds",
            "Longest OBJECT IDLETIME seen per delete_idle pattern, from the last pass",
            m.redis_oldest_idle.clone(),
        );
        r.register(
            "janitor_s3_dangling_references",
            "Documents whose object is missing, from the last S3 pass (reported, never deleted)",
            m.s3_dangling.clone(),
        );
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    fn label(resource: &str) -> ResourceLabel {
        ResourceLabel {
            resource: resource.to_string(),
        }
    }

    /// A measurement of `resource`.
    pub fn record_usage(&self, resource: Resource, usage: &Usage, priority: Priority) {
        let l = Self::label(resource.name());
        if let Some(f) = usage.usage_fraction {
            self.usage.get_or_create(&l).set(f);
        }
        self.items.get_or_create(&l).set(usage.total_items as i64);
        if let Some(b) = usage.size_bytes {
            self.bytes.get_or_create(&l).set(b as i64);
        }
        self.priority.get_or_create(&l).set(priority as i64);
    }

    /// A failed measurement.
    pub fn record_measure_error(&self, resource: Resource) {
        self.measure_errors
            .get_or_create(&Self::label(resource.name()))
            .inc();
    }

    /// A finished run.
    pub fn record_run(
        &self,
        resource: Resource,
        outcome: Outcome,
        deleted: u64,
        expired: u64,
        secs: f64,
    ) {
        let l = Self::label(resource.name());
        self.deleted.get_or_create(&l).inc_by(deleted);
        self.expired.get_or_create(&l).inc_by(expired);
        self.duration.get_or_create(&l).observe(secs);
        self.runs
            .get_or_create(&RunLabels {
                resource: resource.name().to_string(),
                outcome: outcome.as_str().to_string(),
            })
            .inc();
    }

    /// A CRITICAL task run at once.
    pub fn record_emergency(&self, resource: Resource) {
        self.emergency
            .get_or_create(&Self::label(resource.name()))
            .inc();
    }

    /// Whether this replica may sweep (holds the leader lease, or there is no election).
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Tasks pending and running in the queue.
    /// Samples the process's resident memory, open descriptors and live tasks (the soak
    /// test watches them stay flat). Linux only: elsewhere the first two stay 0.
    pub fn record_process(&self) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok());
        if let Some(kib) = rss_kib {
            self.process_resident.set(kib * 1024);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.process_fds.set(fds.count() as i64);
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set(handle.metrics().num_alive_tasks() as i64);
        }
    }

    /// DeleteObjects requests in flight now.
    pub fn set_s3_delete_inflight(&self, n: usize) {
        self.s3_delete_inflight.set(n as i64);
    }

    /// Throttle signals seen by a run's DeleteObjects.
    pub fn record_s3_throttles(&self, n: u64) {
        self.s3_delete_throttles.inc_by(n);
    }

    /// Pending and running tasks.
    pub fn set_queue(&self, pending: usize, running: usize) {
        self.queue_size.set(pending as i64);
        self.queue_running.set(running as i64);
    }

    /// The drift last measured (kinds not checked are left out).
    pub fn record_drift(&self, drift: &crate::drift::Drift) {
        for (kind, c) in drift.kinds() {
            let label = KindLabel {
                kind: kind.to_string(),
            };
            match c.count {
                Some(n) => {
                    self.drift
                        .get_or_create(&label)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                None => {
                    self.drift.remove(&label);
                }
            }
        }
    }

    /// Tasks dropped from a full queue.
    pub fn record_queue_dropped(&self, n: u64) {
        self.queue_dropped.inc_by(n);
    }

    /// Worker states (one series per worker and state, 1 for the current one).
    pub fn record_workers(&self, workers: &[WorkerStatus]) {
        for w in workers {
            for state in ["busy", "idle", "throttled", "failed", "standby"] {
                let current = serde_json::to_value(w.state).ok();
                let on = current.as_ref().and_then(|v| v.as_str()) == Some(state);
                self.worker_state
                    .get_or_create(&WorkerLabels {
                        worker: w.name.clone(),
                        state: state.to_string(),
                    })
                    .set(i64::from(on));
            }
            self.worker_failures
                .get_or_create(&Self::label(&w.name))
                .set(i64::from(w.consecutive_failures));
        }
    }

    /// A Redis pass's figures for one policy pattern.
    pub fn record_redis_pattern(&self, pattern: &str, without_ttl: u64, oldest_idle: Option<i64>) {
        let l = PatternLabel {
            pattern: pattern.to_string(),
        };
        self.redis_without_ttl
            .get_or_create(&l)
            .set(without_ttl as i64);
        if let Some(idle) = oldest_idle {
            self.redis_oldest_idle.get_or_create(&l).set(idle);
        }
    }

    /// Dangling references found by the last S3 pass.
    pub fn record_dangling_references(&self, n: u64) {
        self.s3_dangling.set(n as i64);
    }

    /// The monitor's figures per Qdrant collection. Collections that no longer exist are
    /// dropped from the families.
    pub fn record_qdrant_collections(&self, collections: &[CollectionStats]) {
        let families = [
            &self.qdrant_points,
            &self.qdrant_segments,
            &self.qdrant_indexed_vectors,
            &self.qdrant_timestamp_indexed,
            &self.qdrant_oldest,
        ];
        for family in families {
            family.clear();
        }
        for c in collections {
            let l = CollectionLabel {
                collection: c.name.clone(),
            };
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.qdrant_points.get_or_create(&l).set(n(c.points));
            self.qdrant_segments.get_or_create(&l).set(n(c.segments));
            self.qdrant_indexed_vectors
                .get_or_create(&l)
                .set(n(c.indexed_vectors));
            self.qdrant_timestamp_indexed
                .get_or_create(&l)
                .set(i64::from(c.timestamp_indexed));
            if let Some(age) = c.oldest_age {
                self.qdrant_oldest.get_or_create(&l).set(n(age.as_secs()));
            }
        }
    }

    /// A dedup check or lookup: `hashed` bytes read, whether a duplicate was found.
    pub fn record_dedup(&self, hashed: u64, duplicate: bool) {
        self.dedup_checks.inc();
        self.dedup_duplicates.inc_by(u64::from(duplicate));
        self.dedup_bytes_hashed.inc_by(hashed);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_usage_runs_and_queue() {
        let m = Metrics::new();
        let usage = Usage {
            total_items: 10,
            size_bytes: Some(2048),
            usage_fraction: Some(0.8),
            ..Usage::default()
        };
        m.record_usage(Resource::Redis, &usage, Priority::High);
        m.record_usage(Resource::S3, &usage, Priority::Low);
        m.record_run(Resource::Redis, Outcome::AbortedCap, 0, 0, 0.5);
        m.record_run(Resource::Redis, Outcome::Succeeded, 7, 3, 0.2);
        m.record_run(Resource::S3, Outcome::Succeeded, 1, 0, 0.2);
        m.set_queue(2, 1);
        m.record_queue_dropped(3);
        let text = m.encode();
        for line in [
            "janitor_resource_usage_ratio{resource=\"redis\"} 0.8",
            "janitor_resource_bytes{resource=\"redis\"} 2048",
            "janitor_resource_priority{resource=\"redis\"} 2",
            "janitor_items_deleted_total{resource=\"redis\"} 7",
            "janitor_runs_total{resource=\"redis\",outcome=\"aborted_cap\"} 1",
            "janitor_queue_size 2",
            "janitor_queue_running 1",
            "janitor_queue_dropped_total 3",
            // one label per store everywhere, so usage and runs join on it
            "janitor_resource_usage_ratio{resource=\"s3\"} 0.8",
            "janitor_runs_total{resource=\"s3\",outcome=\"succeeded\"} 1",
            "janitor_run_duration_seconds_count{resource=\"redis\"} 2",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
