//! The append-only audit log, written ahead: every deletion is on disk before it happens, and
//! its outcome after.
//!
//! One JSON line per record (schema [`SCHEMA_VERSION`], documented in the README):
//! - `intent`: before a batch is applied, the run id, the batch's number in its run and its
//!   items. Appended and fsynced first: if that fails, the batch is not applied.
//! - `applied`: after, what the store confirmed (counts, `failed`, `skipped`). An intent
//!   without its `applied` record (the process was killed between the two, or the second
//!   write failed) stays open; before the next run of that store the engine asks the store
//!   which of its items are gone and appends the `applied` record with `recovered: true` and
//!   the rest as `not_applied`.
//! - `dry_run`: a dry run's batch, for the record.
//!
//! Writes and fsyncs run on a blocking thread, never on the async runtime's workers. A write
//! that fails is cut back off the file (no torn line for the next append to be glued to),
//! and a torn last line left by a crash is cut at open: it can only be an intent that was
//! never fsynced, so its batch was never applied.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::plan::{Action, Batch};
use crate::resource::Resource;

/// The version of the record schema (`"v"` in every record). Version 1 (before write-ahead
/// intents) wrote one record per applied batch, without `v` and `kind`.
pub const SCHEMA_VERSION: u32 = 2;

/// A batch about to be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    /// The run.
    pub run_id: String,
    /// The store.
    pub resource: Resource,
    /// The batch's number in its run, from 0.
    pub seq: u64,
    /// The batch (shared with the run applying it: a batch of a thousand documents'
    /// dependents weighs about a megabyte).
    pub batch: Arc<Batch>,
    /// Why the run's task was queued (an API cleanup's `reason`, the monitor's pressure).
    pub task_reason: Option<String>,
    /// When the intent was written (to the second, as the log keeps it).
    pub written_at: SystemTime,
}

/// What applying a batch did, as the store confirmed it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Items removed.
    pub deleted: u64,
    /// Items given a TTL.
    pub expired: u64,
    /// Bytes the deleted items held, as measured (0 where the store cannot say).
    #[serde(skip_serializing_if = "is_zero")]
    pub bytes_freed: u64,
    /// Items not confirmed: the store refused them, or the connection broke before it
    /// answered (then an item may have been applied all the same).
    pub failed: Vec<String>,
    /// Items left alone because they changed since planning.
    pub skipped: Vec<String>,
    /// Recovered batches: items the store still holds as planned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_applied: Vec<String>,
    /// Written by recovery, from what the store holds, not by the run that applied it.
    pub recovered: bool,
}

impl Outcome {
    /// The outcome of `batch` found by asking the store: `not_applied` are the items it still
    /// holds as planned; the others were applied.
    pub fn recovered(batch: &Batch, not_applied: Vec<String>) -> Outcome {
        let (mut deleted, mut expired, mut bytes_freed) = (0, 0, 0);
        for item in batch.items.iter().filter(|i| !not_applied.contains(&i.id)) {
            match item.action {
                Action::Delete => {
                    deleted += item.count();
                    bytes_freed += item.bytes().unwrap_or(0);
                }
                Action::Expire(_) => expired += item.count(),
            }
        }
        Outcome {
            deleted,
            expired,
            bytes_freed,
            not_applied,
            recovered: true,
            ..Outcome::default()
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Head<'a> {
    v: u32,
    kind: &'a str,
    #[serde(serialize_with = "crate::time::rfc3339")]
    time: SystemTime,
    run_id: &'a str,
    resource: Resource,
    batch_seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_reason: Option<&'a str>,
}

/// The audit log cannot be written: the sweep must not delete.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

struct File {
    file: std::fs::File,
    /// Bytes of whole records: a failed write is cut back to here.
    len: u64,
}

/// Intents without an outcome, by (run id, batch number).
type OpenIntents = BTreeMap<(String, u64), Intent>;

/// The append-only JSONL file, and its intents still open.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
    open: Mutex<OpenIntents>,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Opens (creating) the log for appending: cuts a torn last line, and finds the intents
    /// that have no `applied` record.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let err = |source| AuditError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        if !file.metadata().map_err(err)?.is_file() {
            let not_regular =
                std::io::Error::other("not a regular file: nothing could be recovered from it");
            return Err(err(not_regular));
        }
        let (open, whole) = scan(&mut file).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if whole < len {
            tracing::warn!(path = %path.display(), bytes = len - whole, "audit log ends with a torn record (a write cut short): removed; it was never fsynced, so its batch was not applied");
            file.set_len(whole).map_err(err)?;
        }
        if !open.is_empty() {
            tracing::warn!(path = %path.display(), batches = open.len(), "audit log has batches without an outcome (the janitor stopped mid-batch): the store is asked before its next run");
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(File { file, len: whole }),
            open: Mutex::new(open),
            last_error: Mutex::new(None),
        })
    }

    /// Records that `batch` (number `seq` of run `run_id`) is about to be applied. Only once
    /// this returns may the batch be applied.
    pub async fn intent(self: &Arc<Self>, intent: Intent) -> Result<(), AuditError> {
        let head = Head {
            task_reason: intent.task_reason.as_deref(),
            ..head("intent", &intent.run_id, intent.resource, intent.seq)
        };
        let line = record_line(head, &*intent.batch);
        self.write(line).await?;
        let key = (intent.run_id.clone(), intent.seq);
        self.lock_open().insert(key, intent);
        Ok(())
    }

    /// Records what applying the intent's batch did; the intent is closed.
    pub async fn applied(
        self: &Arc<Self>,
        (run_id, resource, seq): (&str, Resource, u64),
        outcome: &Outcome,
    ) -> Result<(), AuditError> {
        self.write(record_line(head("applied", run_id, resource, seq), outcome))
            .await?;
        self.lock_open().remove(&(run_id.to_string(), seq));
        Ok(())
    }

    /// Records a dry run's batch; `task_reason` is why its task was queued.
    pub async fn dry_run(
        self: &Arc<Self>,
        (run_id, resource, seq): (&str, Resource, u64),
        batch: &Batch,
        task_reason: Option<&str>,
    ) -> Result<(), AuditError> {
        let head = Head {
            task_reason,
            ..head("dry_run", run_id, resource, seq)
        };
        self.write(record_line(head, batch)).await
    }

    /// The intents of `resource` without an outcome, oldest first.
    pub fn open_intents(&self, resource: Resource) -> Vec<Intent> {
        self.lock_open()
            .values()
            .filter(|i| i.resource == resource)
            .cloned()
            .collect()
    }

    /// Why the last write failed, until one succeeds.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Flushes to disk (at shutdown).
    pub fn sync(&self) -> Result<(), AuditError> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.file.sync_all().map_err(|source| self.error(source))
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and syncs it, on a blocking thread.
    async fn write(self: &Arc<Self>, line: Vec<u8>) -> Result<(), AuditError> {
        let log = self.clone();
        let written = match tokio::task::spawn_blocking(move || log.write_line(&line)).await {
            Ok(written) => written,
            Err(e) => Err(self.error(std::io::Error::other(format!(
                "the writing thread failed: {e}"
            )))),
        };
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            written.as_ref().err().map(ToString::to_string);
        written
    }

    /// Writes one encoded line and syncs it; on failure cuts the file back to its last
    /// whole record. Blocking.
    fn write_line(&self, line: &[u8]) -> Result<(), AuditError> {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let written = f.file.write_all(line).and_then(|()| f.file.sync_data());
        match written {
            Ok(()) => {
                f.len += line.len() as u64;
                Ok(())
            }
            Err(source) => {
                let whole = f.len;
                if let Err(e) = f.file.set_len(whole) {
                    tracing::error!(path = %self.path.display(), error = %e, "audit log: cannot cut a failed write back off");
                }
                Err(self.error(source))
            }
        }
    }

    fn error(&self, source: std::io::Error) -> AuditError {
        AuditError {
            path: self.path.clone(),
            source,
        }
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, OpenIntents> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn head<'a>(kind: &'a str, run_id: &'a str, resource: Resource, seq: u64) -> Head<'a> {
    Head {
        v: SCHEMA_VERSION,
        kind,
        time: SystemTime::now(),
        run_id,
        resource,
        batch_seq: seq,
        task_reason: None,
    }
}

/// `head` and `body`'s fields as one JSON line.
fn record_line(head: Head<'_>, body: &impl Serialize) -> Vec<u8> {
    #[derive(Serialize)]
    struct Line<'a, B: Serialize> {
        #[serde(flatten)]
        head: Head<'a>,
        #[serde(flatten)]
        body: &'a B,
    }
    let mut line = serde_json::to_vec(&Line { head, body }).expect("audit records serialise");
    line.push(b'\n');
    line
}

/// Reads the log from the start: the intents without an `applied` record, and the length
/// of its whole lines (a torn last line is not counted).
fn scan(file: &mut std::fs::File) -> std::io::Result<(OpenIntents, u64)> {
    file.rewind()?;
    let mut open = BTreeMap::new();
    let mut reader = BufReader::new(&mut *file);
    let (mut whole, mut line) = (0u64, Vec::new());
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        whole += n as u64;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&line) else {
            continue;
        };
        let key = |v: &serde_json::Value| {
            Some((v["run_id"].as_str()?.to_string(), v["batch_seq"].as_u64()?))
        };
        match value["kind"].as_str() {
            Some("intent") => {
                let (Some(key), Ok(resource), Ok(batch)) = (
                    key(&value),
                    serde_json::from_value::<Resource>(value["resource"].clone()),
                    serde_json::from_value::<Batch>(value.clone()),
                ) else {
                    continue;
                };
                let intent = Intent {
                    run_id: key.0.clone(),
                    resource,
                    seq: key.1,
                    batch: Arc::new(batch),
                    task_reason: value["task_reason"].as_str().map(str::to_owned),
                    written_at: value["time"]
                        .as_str()
                        .and_then(|t| humantime::parse_rfc3339(t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                };
                open.insert(key, intent);
            }
            Some("applied") => {
                if let Some(key) = key(&value) {
                    open.remove(&key);
                }
            }
            _ => {}
        }
    }
    Ok((open, whole))
}

#[cfg(test)]
mod tests;
