//! Run records: what each sweep did. The last 100 are kept in memory; every one is handed
//! to the [`RunSink`]s (the history) as it finishes.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::plan::PlannedItem;
use crate::resource::{Priority, Resource};

/// Runs kept in memory for `GET /api/resources/runs`.
pub const KEPT_RUNS: usize = 100;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied (possibly with per-item failures, counted in `failed`).
    Succeeded,
    /// Planned only (`--dry-run`, `JANITOR_DRY_RUN`).
    DryRun,
    /// The plan was above the deletion cap: nothing applied.
    AbortedCap,
    /// The reference source failed or the sweep refused: nothing (more) deleted.
    FailedClosed,
    /// The store failed.
    Failed,
    /// Shutdown stopped the run between batches.
    Cancelled,
    /// The backend is not configured.
    Disabled,
    /// Another replica holds the leader lease (or ours could not be confirmed before a
    /// batch): nothing (more) deleted.
    NotLeader,
}

impl Outcome {
    /// Name used in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::DryRun => "dry_run",
            Outcome::AbortedCap => "aborted_cap",
            Outcome::FailedClosed => "failed_closed",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Disabled => "disabled",
            Outcome::NotLeader => "not_leader",
        }
    }

    /// Whether the CLI exits 0.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Succeeded | Outcome::DryRun)
    }
}

/// Who asked for a run: the source of its cleanup task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The store's interval timer.
    Schedule,
    /// The monitor, for a store at HIGH or CRITICAL.
    Monitor,
    /// `POST /api/resources/cleanup`.
    Api,
    /// An emergency cleanup.
    Emergency,
    /// `janitor sweep --once` (no task: the CLI runs the engine directly).
    Cli,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Unique id (also in the audit log).
    pub id: String,
    /// The store.
    pub resource: Resource,
    /// What started it.
    pub trigger: Trigger,
    /// The priority of its task, if any.
    pub priority: Option<Priority>,
    /// Why its task was queued (every reason of a merged task).
    pub reason: Option<String>,
    /// Whether it only planned.
    pub dry_run: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it ended that way (errors, cap, refusal), one line.
    pub message: Option<String>,
    /// When it started.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub started_at: SystemTime,
    /// How long it took.
    pub duration_secs: f64,
    /// The TTL used.
    pub ttl_secs: f64,
    /// Items in the store when planning.
    pub store_items: u64,
    /// Deletions planned.
    pub planned_deletions: u64,
    /// TTLs planned.
    pub planned_expirations: u64,
    /// Items deleted (as reported by the store).
    pub deleted: u64,
    /// Items given a TTL.
    pub expired: u64,
    /// Bytes the deleted items held, as measured (S3 object sizes, Redis MEMORY USAGE of
    /// each key as it was unlinked); Qdrant points and documents are not measured.
    pub bytes_freed: u64,
    /// Items skipped because they changed since planning.
    pub skipped: u64,
    /// Items the store failed to delete.
    pub failed: u64,
    /// Backend facts (missing indexes, bytes freed, dangling references, ...).
    pub notes: Vec<String>,
    /// Parts of the store the sweep refused to touch, and why (act on these).
    pub warnings: Vec<String>,
    /// The first planned items.
    pub sample: Vec<PlannedItem>,
    /// Drift between the stores, with samples (the document pass).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::drift::Drift>,
}

/// Where finished runs go besides memory (the history).
pub trait RunSink: Send + Sync {
    /// Keeps `run`; must not fail the caller (a sink logs its own errors).
    fn record(&self, run: &RunRecord);
}

/// The last [`KEPT_RUNS`] runs, newest first, and the sinks every run is handed to.
#[derive(Default)]
pub struct RunLog {
    runs: Mutex<VecDeque<RunRecord>>,
    sinks: Vec<std::sync::Arc<dyn RunSink>>,
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLog")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl RunLog {
    /// A run log handing every run to `sink` too.
    pub fn with_sink(sink: std::sync::Arc<dyn RunSink>) -> Self {
        Self {
            runs: Mutex::default(),
            sinks: vec![sink],
        }
    }

    /// Records a finished run.
    pub fn push(&self, run: RunRecord) {
        for sink in &self.sinks {
            sink.record(&run);
        }
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if runs.len() == KEPT_RUNS {
            runs.pop_back();
        }
        runs.push_front(run);
    }

    /// The kept runs, newest first.
    pub fn list(&self) -> Vec<RunRecord> {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
