//! The history: runs, measurements and alerts kept across restarts in one SQLite file next
//! to the audit log, for `/api/resources/runs`, the usage charts and the reports.
//!
//! The history is a record of what happened, never a condition for cleaning: a file that
//! cannot be opened or read is moved aside with a clear log line and a new one started, and
//! if even that fails the history lives in memory until the next start. A write that fails
//! is logged and dropped. Writes are one small transaction each (WAL, `synchronous=NORMAL`),
//! so a crash loses at most the record being written.
//!
//! Retention (`JANITOR_HISTORY_DAYS`) and the size bound (`JANITOR_HISTORY_MAX_MB`, oldest
//! runs dropped first) are applied at most once an hour, from the monitor's cycle.

mod query;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, params};

pub use query::{DeletionPoint, RunPage, RunQuery, Totals, UsagePoint};

use crate::alert::{AlertSink, Severity};
use crate::config::History as HistorySettings;
use crate::resource::{Priority, Resource, Usage};
use crate::runs::{RunRecord, RunSink};

/// How often retention and the size bound are applied.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    resource TEXT NOT NULL,
    outcome TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    duration_secs REAL NOT NULL,
    dry_run INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    expired INTEGER NOT NULL,
    bytes_freed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    message TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_time ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_by_resource ON runs (resource, started_at);
CREATE TABLE IF NOT EXISTS usage (
    resource TEXT NOT NULL,
    at INTEGER NOT NULL,
    total_items INTEGER NOT NULL,
    size_bytes INTEGER,
    usage_fraction REAL,
    priority TEXT NOT NULL,
    oldest_age_hours REAL,
    PRIMARY KEY (resource, at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    resource TEXT,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (at);
";

/// Why the history file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite refused (corrupt file, full disk, ...).
    #[error("history {path}: {source}")]
    Sqlite {
        /// The file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The integrity check found damage.
    #[error("history {path}: integrity check failed: {found}")]
    Corrupt {
        /// The file.
        path: String,
        /// The check's first finding.
        found: String,
    },
}

impl HistoryError {
    /// Whether the file itself is damaged (rather than busy, unreadable or on a full disk).
    fn is_damage(&self) -> bool {
        match self {
            HistoryError::Corrupt { .. } => true,
            HistoryError::Sqlite { source, .. } => is_corruption(source),
        }
    }
}

/// Something worth remembering besides runs and measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// An alert was raised (sent or logged).
    Alert,
    /// The daily report was written.
    Report,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::Alert => "alert",
            EventKind::Report => "report",
        }
    }
}

struct Inner {
    conn: Mutex<Connection>,
    /// The file, `None` when the history lives in memory.
    path: Option<PathBuf>,
    retention: Duration,
    max_bytes: u64,
    last_prune: Mutex<Option<std::time::Instant>>,
}

/// The history (cheap to clone: one shared connection).
#[derive(Clone)]
pub struct History(Arc<Inner>);

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.0.path)
            .finish()
    }
}

/// Seconds since the epoch.
fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn open_file(path: &Path) -> Result<Connection, HistoryError> {
    let err = |source| HistoryError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let conn = Connection::open(path).map_err(err)?;
    // a new file gets incremental vacuum (it must be set before the first table)
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    let found: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(err)?;
    if found != "ok" {
        return Err(HistoryError::Corrupt {
            path: path.display().to_string(),
            found,
        });
    }
    conn.execute_batch(SCHEMA).map_err(err)?;
    Ok(conn)
}

/// Moves a history file (and its WAL) aside; the name it was moved to.
fn move_aside(path: &Path) -> PathBuf {
    let stamp = unix(SystemTime::now());
    let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    let _ = std::fs::rename(path, &aside);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    aside
}

fn memory() -> Connection {
    let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
    conn.execute_batch(SCHEMA).expect("the history schema");
    conn
}

/// Whether a SQLite error means the file itself is damaged.
fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

impl History {
    /// Opens (or creates) the history file of `settings`. Never fails: a damaged file is
    /// moved aside and a new one started; if no file can be used the history is kept in
    /// memory. Every such step is logged.
    pub fn open(settings: &HistorySettings) -> History {
        let path = &settings.path;
        let conn = match open_file(path) {
            Ok(conn) => Some(conn),
            // only a damaged file is moved aside: a busy or unreadable one is left alone
            Err(e) if !e.is_damage() => {
                tracing::error!(error = %e, "the history file cannot be used: the history is kept in memory until the next start");
                None
            }
            Err(e) => {
                let aside = move_aside(path);
                tracing::error!(error = %e, moved_to = %aside.display(), "the history file is unreadable: moved aside, starting a new one (runs and measurements before now are in the moved file)");
                match open_file(path) {
                    Ok(conn) => Some(conn),
                    Err(e) => {
                        tracing::error!(error = %e, "no history file can be used: the history is kept in memory until the next start");
                        None
                    }
                }
            }
        };
        let (conn, path) = match conn {
            Some(c) => (c, Some(path.clone())),
            None => (memory(), None),
        };
        History(Arc::new(Inner {
            conn: Mutex::new(conn),
            path,
            retention: settings.retention,
            max_bytes: settings.max_bytes,
            last_prune: Mutex::new(None),
        }))
    }

    /// A history in memory only (tests, one-shot commands).
    pub fn in_memory(retention: Duration) -> History {
        History(Arc::new(Inner {
            conn: Mutex::new(memory()),
            path: None,
            retention,
            max_bytes: u64::MAX,
            last_prune: Mutex::new(None),
        }))
    }

    /// The file, `None` when the history lives in memory.
    pub fn path(&self) -> Option<&Path> {
        self.0.path.as_deref()
    }

    /// Runs `f` on the connection. A damaged file found on the way is moved aside and a new
    /// one opened, so the next call works again.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let mut conn = self.0.conn.lock().unwrap_or_else(|e| e.into_inner());
        let result = f(&conn);
        if let (Err(e), Some(path)) = (&result, &self.0.path)
            && is_corruption(e)
        {
            let aside = move_aside(path);
            tracing::error!(error = %e, moved_to = %aside.display(), "the history file is damaged: moved aside, starting a new one");
            *conn = open_file(path).unwrap_or_else(|e| {
                tracing::error!(error = %e, "no history file can be used: the history is kept in memory until the next start");
                memory()
            });
        }
        result
    }

    /// Runs a write; a failure is logged and dropped (the history never stops a sweep).
    /// Writes are called from async tasks (a run's end, the monitor): on the daemon's
    /// multi-thread runtime the worker is handed over as blocking first, so a slow disk
    /// holds up only the caller, never the other tasks on that worker.
    fn write(&self, what: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<usize>) {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let written = if multi_thread {
            tokio::task::block_in_place(|| self.with(f))
        } else {
            self.with(f)
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, what, "history write failed: record dropped");
        }
    }

    /// Records a finished run.
    pub fn record_run(&self, r: &RunRecord) {
        let record = match serde_json::to_string(r) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(error = %e, "run record not serialisable: not kept in the history");
                return;
            }
        };
        self.write("run", |c| {
            c.execute(
                "INSERT OR REPLACE INTO runs (id, resource, outcome, trigger, started_at, duration_secs,
                 dry_run, deleted, expired, bytes_freed, failed, message, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    r.id,
                    r.resource.name(),
                    r.outcome.as_str(),
                    serde_json::to_value(r.trigger)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    unix(r.started_at),
                    r.duration_secs,
                    r.dry_run,
                    r.deleted as i64,
                    r.expired as i64,
                    r.bytes_freed as i64,
                    r.failed as i64,
                    r.message,
                    record,
                ],
            )
        });
    }

    /// Records one store's measurement.
    pub fn record_usage(
        &self,
        resource: Resource,
        at: SystemTime,
        usage: &Usage,
        priority: Priority,
    ) {
        self.write("usage", |c| {
            c.execute(
                "INSERT OR REPLACE INTO usage (resource, at, total_items, size_bytes, usage_fraction,
                 priority, oldest_age_hours) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    resource.name(),
                    unix(at),
                    usage.total_items as i64,
                    usage.size_bytes.map(|b| b as i64),
                    usage.usage_fraction,
                    priority.as_str(),
                    usage.oldest_age_hours,
                ],
            )
        });
    }

    /// Records an event (an alert raised, a report written).
    pub fn record_event(
        &self,
        kind: EventKind,
        resource: Option<Resource>,
        at: SystemTime,
        message: &str,
    ) {
        self.write("event", |c| {
            c.execute(
                "INSERT INTO events (at, kind, resource, message) VALUES (?1, ?2, ?3, ?4)",
                params![unix(at), kind.as_str(), resource.map(|r| r.name()), message],
            )
        });
    }

    /// Applies retention and the size bound, at most once per `PRUNE_EVERY` (an hour) (`force`:
    /// now). Returns the rows removed.
    pub fn prune(&self, now: SystemTime, force: bool) -> u64 {
        {
            let mut last = self.0.last_prune.lock().unwrap_or_else(|e| e.into_inner());
            if !force && last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return 0;
            }
            *last = Some(std::time::Instant::now());
        }
        let cutoff = unix(now) - self.0.retention.as_secs() as i64;
        let max_bytes = self.0.max_bytes;
        let result = self.with(|c| {
            let mut removed = 0u64;
            for sql in [
                "DELETE FROM runs WHERE started_at < ?1",
                "DELETE FROM usage WHERE at < ?1",
                "DELETE FROM events WHERE at < ?1",
            ] {
                removed += c.execute(sql, [cutoff])? as u64;
            }
            // over the size bound: the oldest tenth of the runs go, until it fits
            while used_bytes(c)? > max_bytes {
                let n = c.execute(
                    "DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY started_at
                     LIMIT MAX(1, (SELECT COUNT(*) FROM runs) / 10))",
                    [],
                )?;
                removed += n as u64;
                if n == 0 {
                    break;
                }
            }
            c.execute_batch("PRAGMA incremental_vacuum")?;
            Ok(removed)
        });
        match result {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(removed = n, "history pruned");
                }
                n
            }
            Err(e) => {
                tracing::warn!(error = %e, "history pruning failed");
                0
            }
        }
    }
}

/// Bytes the database's pages hold (free pages not counted).
fn used_bytes(c: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

impl AlertSink for History {
    fn alerted(&self, key: &str, severity: Severity, message: &str) {
        // keys are `kind:subject`; the subject is a store for store alerts
        let resource = key.rsplit(':').next().and_then(|s| s.parse().ok());
        let text = format!("{} {key}: {message}", severity.as_str());
        self.record_event(EventKind::Alert, resource, SystemTime::now(), &text);
    }
}

impl RunSink for History {
    fn record(&self, run: &RunRecord) {
        self.record_run(run);
    }
}

#[cfg(test)]
mod tests;
