//! Runs sweeps under the safety model. The only path from a plan to a deletion.
//!
//! [`Engine::run`]: settle the store's open intents → plan → cap check → (dry-run stops
//! here) → apply batch by batch, each written ahead in the audit log (its intent fsynced
//! before, its outcome after), shutdown checked between batches → run record, metrics, log
//! line. One run per resource at a time (the dispatcher already starts one per store; the
//! lock also covers `janitor sweep --once` beside it). Any reference-source error stops the
//! run with nothing more deleted (`failed_closed`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::alert::{Alerts, Severity};
use crate::audit::{AuditError, AuditLog, Outcome as BatchOutcome};
use crate::backend::sweep::{SweepContext, SweepError, Sweeper};
use crate::config::Settings;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::plan::{Cap, Plan};
use crate::resource::{PerResource, Priority, Resource};
use crate::runs::{Outcome, RunLog, RunRecord, Trigger};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The run's id, when the caller needs it before the run ends (the API's 202); else
    /// one is made.
    pub id: Option<String>,
    /// The store.
    pub resource: Resource,
    /// Who asks.
    pub trigger: Trigger,
    /// Plan only (JANITOR_DRY_RUN=true forces this on).
    pub dry_run: bool,
    /// The task's priority: HIGH / CRITICAL use the pressure TTL.
    pub priority: Option<Priority>,
    /// Why it was asked for (kept in the run record).
    pub reason: Option<String>,
}

/// A finished run: its record, and its plan (printed by the CLI; the API keeps the record).
#[derive(Debug)]
pub struct RunResult {
    /// The record kept in the run log.
    pub record: RunRecord,
    /// The full plan (`None` if planning failed).
    pub plan: Option<Plan>,
}

/// The sweep runner.
pub struct Engine {
    settings: Arc<Settings>,
    sweepers: PerResource<Option<Arc<dyn Sweeper>>>,
    locks: PerResource<tokio::sync::Mutex<()>>,
    audit: Arc<AuditLog>,
    runs: Arc<RunLog>,
    metrics: Metrics,
    cancel: CancellationToken,
    fence: Option<Arc<Leadership>>,
    alerts: Option<Alerts>,
}

impl Engine {
    /// An engine over the configured sweepers.
    pub fn new(
        settings: Arc<Settings>,
        sweepers: Vec<Arc<dyn Sweeper>>,
        audit: Arc<AuditLog>,
        metrics: Metrics,
        cancel: CancellationToken,
    ) -> Self {
        let mut slots: PerResource<Option<Arc<dyn Sweeper>>> = PerResource::default();
        for s in sweepers {
            let resource = s.resource();
            slots[resource] = Some(s);
        }
        Self {
            settings,
            sweepers: slots,
            locks: PerResource::default(),
            audit,
            runs: Arc::default(),
            metrics,
            cancel,
            fence: None,
            alerts: None,
        }
    }

    /// Records runs in `runs` (which hands them to the history) instead of a log of its own.
    pub fn with_run_log(mut self, runs: Arc<RunLog>) -> Self {
        self.runs = runs;
        self
    }

    /// Raises an alert for every run aborted by the cap or failed closed.
    pub fn with_alerts(mut self, alerts: Alerts) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Only sweeps while `leadership` holds the lease, and confirms it before every batch.
    pub fn with_fence(mut self, leadership: Arc<Leadership>) -> Self {
        self.fence = Some(leadership);
        self
    }

    /// Whether `resource` has a sweeper (its backend is configured).
    pub fn enabled(&self, resource: Resource) -> bool {
        self.sweepers[resource].is_some()
    }

    /// The stores this engine can sweep.
    pub fn swept(&self) -> PerResource<bool> {
        PerResource::from_fn(|r| self.enabled(r))
    }

    /// The run log (shared with the API).
    pub fn runs(&self) -> &Arc<RunLog> {
        &self.runs
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// Runs one sweep of `req.resource` as of `now`.
    pub async fn run(&self, req: RunRequest, now: SystemTime) -> RunResult {
        let _one_at_a_time = self.locks[req.resource].lock().await;
        let started = tokio::time::Instant::now();
        let safety = &self.settings.safety;
        let pressure = req.priority.is_some_and(Priority::is_pressure);
        let ttl = if pressure {
            self.settings.retention.pressure_ttl(req.resource)
        } else {
            self.settings.retention.ttl(req.resource)
        };
        let ctx = SweepContext {
            now,
            ttl,
            dry_run: req.dry_run,
            priority: req.priority,
            cap: Cap {
                max_fraction: safety.max_delete_fraction,
                max_count: safety.max_delete_count,
            },
            cancel: self.cancel.clone(),
            spool_dir: spool_dir(self.audit.path()),
        };
        let mut record = RunRecord {
            id: req.id.clone().unwrap_or_else(|| run_id(req.resource, now)),
            resource: req.resource,
            trigger: req.trigger,
            priority: req.priority,
            reason: req.reason.clone(),
            dry_run: req.dry_run || safety.dry_run,
            outcome: Outcome::Succeeded,
            message: None,
            started_at: now,
            duration_secs: 0.0,
            ttl_secs: ttl.as_secs_f64(),
            store_items: 0,
            planned_deletions: 0,
            planned_expirations: 0,
            deleted: 0,
            expired: 0,
            bytes_freed: 0,
            skipped: 0,
            failed: 0,
            notes: Vec::new(),
            warnings: Vec::new(),
            sample: Vec::new(),
            drift: None,
        };
        let plan = match &self.sweepers[req.resource] {
            None => {
                record.outcome = Outcome::Disabled;
                record.message = Some(format!("{} is not configured", req.resource));
                None
            }
            Some(_) if !record.dry_run && self.fence.as_ref().is_some_and(|f| !f.is_leader()) => {
                record.outcome = Outcome::NotLeader;
                record.message = Some(format!(
                    "standby: the leader lease is held by {}",
                    self.fence
                        .as_ref()
                        .and_then(|f| f.holder())
                        .as_deref()
                        .unwrap_or("nobody")
                ));
                None
            }
            Some(sweeper)
                if !record.dry_run && !self.recover(sweeper.as_ref(), &mut record).await =>
            {
                None
            }
            Some(sweeper) => {
                self.plan_and_apply(sweeper.as_ref(), &ctx, &mut record)
                    .await
            }
        };
        record.duration_secs = started.elapsed().as_secs_f64();
        self.finish(&record);
        RunResult { record, plan }
    }

    async fn plan_and_apply(
        &self,
        sweeper: &dyn Sweeper,
        ctx: &SweepContext,
        record: &mut RunRecord,
    ) -> Option<Plan> {
        let (mut plan, run) = match sweeper.plan(ctx).await {
            Ok(planned) => planned,
            Err(e) => {
                fail(record, &e);
                return None;
            }
        };
        self.apply(run.as_ref(), &mut plan, ctx, record).await;
        Some(plan)
    }

    /// Settles this store's batches that were about to be applied when the janitor last
    /// stopped (intents without an outcome): asks the store which of their items are gone,
    /// and records that. False if it could not: nothing is planned or deleted then.
    async fn recover(&self, sweeper: &dyn Sweeper, record: &mut RunRecord) -> bool {
        for intent in self.audit.open_intents(record.resource) {
            // a request sent just before the janitor stopped may still reach the store (a
            // proxy, a slow network): the store is asked once such a request would have
            // timed out twice over, not before
            let settle = intent.written_at + 2 * self.settings.scheduling.backend_timeout;
            if let Ok(wait) = settle.duration_since(SystemTime::now()) {
                tokio::time::sleep(wait + Duration::from_secs(1)).await;
            }
            let not_applied = match sweeper.unapplied(&intent.batch).await {
                Ok(n) => n,
                Err(e) => {
                    fail(record, &e);
                    let message = record.message.take().unwrap_or_default();
                    record.message = Some(format!(
                        "recovering batch {} of run {}: {message}",
                        intent.seq, intent.run_id
                    ));
                    return false;
                }
            };
            let outcome = BatchOutcome::recovered(&intent.batch, not_applied);
            let key = (intent.run_id.as_str(), intent.resource, intent.seq);
            if let Err(e) = self.audit.applied(key, &outcome).await {
                self.audit_failed(record, &e);
                return false;
            }
            tracing::warn!(run_id = %intent.run_id, batch = intent.seq, deleted = outcome.deleted, expired = outcome.expired, not_applied = outcome.not_applied.len(), "recovered a batch the janitor stopped in the middle of");
            record.notes.push(format!(
                "recovered batch {} of run {} (the janitor stopped mid-batch): {} deleted, {} expired, {} not applied",
                intent.seq,
                intent.run_id,
                outcome.deleted,
                outcome.expired,
                outcome.not_applied.len()
            ));
        }
        true
    }

    /// The audit log cannot be written: nothing (more) is deleted, and an operator is told.
    fn audit_failed(&self, record: &mut RunRecord, e: &AuditError) {
        record.outcome = Outcome::FailedClosed;
        record.message = Some(format!("audit log unwritable, nothing (more) deleted: {e}"));
        if let Some(alerts) = &self.alerts {
            alerts.raise(
                &format!("audit_unwritable:{}", record.resource),
                Severity::Critical,
                &format!("{} sweep {} stopped: {e}", record.resource, record.id),
            );
        }
    }

    fn finish(&self, r: &RunRecord) {
        let name = r.resource.name();
        self.metrics
            .record_run(r.resource, r.outcome, r.deleted, r.expired, r.duration_secs);
        match r.outcome {
            Outcome::AbortedCap => tracing::error!(
                run_id = %r.id, resource = name, planned = r.planned_deletions,
                message = r.message.as_deref().unwrap_or_default(),
                "sweep aborted: plan above the deletion cap, nothing applied"
            ),
            Outcome::FailedClosed | Outcome::Failed => tracing::warn!(
                run_id = %r.id, resource = name, outcome = r.outcome.as_str(),
                deleted = r.deleted, message = r.message.as_deref().unwrap_or_default(),
                "sweep failed"
            ),
            _ => tracing::info!(
                run_id = %r.id, resource = name, outcome = r.outcome.as_str(),
                trigger = ?r.trigger, dry_run = r.dry_run, planned = r.planned_deletions,
                deleted = r.deleted, expired = r.expired, skipped = r.skipped, failed = r.failed,
                secs = r.duration_secs, message = r.message.as_deref().unwrap_or_default(),
                "sweep finished"
            ),
        }
        if let Some(alerts) = &self.alerts {
            let message = r.message.as_deref().unwrap_or_default();
            match r.outcome {
                Outcome::AbortedCap => alerts.raise(
                    &format!("run_aborted_cap:{name}"),
                    Severity::Critical,
                    &format!(
                        "{name} sweep {} aborted by the deletion cap: {message}",
                        r.id
                    ),
                ),
                Outcome::FailedClosed => alerts.raise(
                    &format!("run_failed_closed:{name}"),
                    Severity::Warning,
                    &format!("{name} sweep {} failed closed: {message}", r.id),
                ),
                _ => false,
            };
        }
        self.runs.push(r.clone());
    }
}

fn fail(record: &mut RunRecord, e: &SweepError) {
    record.outcome = match e {
        SweepError::Backend(_) | SweepError::Spool(_) => Outcome::Failed,
        SweepError::ReferenceUnavailable(_) | SweepError::Refused(_) => Outcome::FailedClosed,
    };
    record.message = Some(e.to_string());
}

/// Plans spool next to the audit log: a directory the daemon may write to.
fn spool_dir(audit_log: &std::path::Path) -> std::path::PathBuf {
    match audit_log.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// `redis-20261122T140102-3fa9c1`: sortable, unique enough, readable in logs.
pub fn run_id(resource: Resource, now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now)
        .to_string()
        .replace(['-', ':'], "")
        .trim_end_matches('Z')
        .to_string();
    format!(
        "{}-{stamp}-{:06x}",
        resource.name(),
        fastrand::u32(..0x100_0000)
    )
}

mod apply;
#[cfg(test)]
mod tests;
