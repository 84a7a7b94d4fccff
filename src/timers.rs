//! Each swept store's interval timer: the schedule as a source of cleanup tasks.
//!
//! A timer is a [`Worker`] whose unit of work is "queue a task for my store and wait for its
//! run". Its pace follows the store's load (the runner's `next_delay`): the configured
//! interval, a quarter of it at HIGH, back to back with a short pause at CRITICAL; a failed
//! run backs it off. Waiting for the run keeps one timer task per store in flight, and the
//! worker's state in `/api/workers` tells what the store's sweeps are doing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::engine::run_id;
use crate::leader::LeaderHandle;
use crate::queue::CleanupTask;
use crate::resource::{Priority, Resource};
use crate::runs::{Outcome, Trigger};
use crate::scheduler::{NotRun, Scheduler};
use crate::snapshot::Snapshot;
use crate::worker::Worker;

/// Why a timer's unit failed.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    /// The run ended badly (failed, failed closed, aborted by the cap).
    #[error("{message}")]
    Run {
        /// The run.
        id: String,
        /// How it ended.
        outcome: Outcome,
        /// Its summary and why it ended so.
        message: String,
    },
    /// The task never became a run.
    #[error("the scheduled task did not run: {0}")]
    NotRun(#[from] NotRun),
    /// The run ended without a record (it panicked).
    #[error("the run ended without a record")]
    Lost,
}

/// The timer of one store.
pub struct SweepTimer {
    resource: Resource,
    interval: Duration,
    scheduler: Arc<Scheduler>,
    snapshot: Arc<Snapshot>,
    leader: LeaderHandle,
}

impl SweepTimer {
    /// A timer queueing a task for `resource` every `interval` (paced by its priority in
    /// `snapshot`), while `leader` may sweep.
    pub fn new(
        resource: Resource,
        interval: Duration,
        scheduler: Arc<Scheduler>,
        snapshot: Arc<Snapshot>,
        leader: LeaderHandle,
    ) -> Self {
        Self {
            resource,
            interval,
            scheduler,
            snapshot,
            leader,
        }
    }
}

impl Worker for SweepTimer {
    type Error = TimerError;

    fn name(&self) -> &str {
        self.resource.name()
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn pressure(&self) -> Priority {
        self.snapshot.priority(self.resource)
    }

    fn standby(&self) -> bool {
        !self.leader.may_sweep()
    }

    async fn work(&mut self, cancel: &CancellationToken) -> Result<String, TimerError> {
        let now = SystemTime::now();
        let priority = self.pressure();
        let every = match priority {
            Priority::Critical => "back to back".to_string(),
            Priority::High => format!("every {}", humantime::format_duration(self.interval / 4)),
            _ => format!("every {}", humantime::format_duration(self.interval)),
        };
        let reason = format!("scheduled {every} ({priority})");
        let task = CleanupTask::new(
            run_id(self.resource, now),
            priority,
            self.resource,
            Trigger::Schedule,
            now,
            reason,
        );
        let Some(done) = self.scheduler.submit(task, true).done else {
            return Err(NotRun::Dropped.into());
        };
        let r = tokio::select! {
            r = done => r.map_err(|_| TimerError::Lost)??,
            () = cancel.cancelled() => return Ok("shutdown before the run ended".into()),
        };
        let mut summary = format!(
            "{} {}: deleted {}, expired {}, planned {}",
            r.id,
            r.outcome.as_str(),
            r.deleted,
            r.expired,
            r.planned_deletions
        );
        // refusals are shown in /api/workers, not only in the run report
        for w in &r.warnings {
            summary.push_str("; WARNING: ");
            summary.push_str(w);
        }
        match r.outcome {
            Outcome::Succeeded | Outcome::DryRun | Outcome::Cancelled | Outcome::NotLeader => {
                Ok(summary)
            }
            outcome => Err(TimerError::Run {
                id: r.id,
                outcome,
                message: format!("{summary}: {}", r.message.unwrap_or_default()),
            }),
        }
    }
}
