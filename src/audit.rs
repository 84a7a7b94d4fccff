//! The append-only audit log: every deletion, on disk, before anyone asks.
//!
//! One JSON line per applied batch: time, run id, resource, target, reason, dry_run and the
//! items. The file is opened in append mode and `fsync`ed after each record, so a crash
//! loses at most the batch being written, and an operator can always answer "what did the
//! janitor delete, when, and why". The write and its fsync run on a blocking thread, never
//! on the async runtime's workers (an fsync can take long on a busy disk).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::plan::Batch;
use crate::resource::Resource;

/// One audit record.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// When the batch was applied.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub time: SystemTime,
    /// The run it belongs to.
    pub run_id: &'a str,
    /// The store.
    pub resource: Resource,
    /// Whether this was only planned.
    pub dry_run: bool,
    /// The batch: target, reason, items.
    #[serde(flatten)]
    pub batch: &'a Batch,
    /// Items not confirmed deleted: the backend refused them, or the connection broke
    /// before it answered (then an item may have been deleted all the same).
    pub failed: &'a [String],
    /// Items left alone because they changed since planning (not deleted).
    pub skipped: &'a [String],
}

/// Audit log errors: writing the trail failed, so the sweep must stop.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

/// The append-only JSONL file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl AuditLog {
    /// Opens (creating) the log for appending.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let err = |source| AuditError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends one record and syncs it to disk, on a blocking thread.
    pub async fn append(self: &Arc<Self>, record: &AuditRecord<'_>) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(record).expect("audit records serialise");
        line.push(b'\n');
        let log = self.clone();
        match tokio::task::spawn_blocking(move || log.write_line(&line)).await {
            Ok(written) => written,
            Err(e) => Err(self.error(std::io::Error::other(format!(
                "the writing thread failed: {e}"
            )))),
        }
    }

    /// Writes one encoded line and syncs it. Blocking.
    fn write_line(&self, line: &[u8]) -> Result<(), AuditError> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line)
            .and_then(|()| file.sync_data())
            .map_err(|source| self.error(source))
    }

    fn error(&self, source: std::io::Error) -> AuditError {
        AuditError {
            path: self.path.clone(),
            source,
        }
    }

    /// Flushes to disk (at shutdown).
    pub fn sync(&self) -> Result<(), AuditError> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.sync_all().map_err(|source| self.error(source))
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, PlannedItem};

    #[tokio::test]
    async fn one_json_line_per_batch_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/audit.jsonl");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let batch = Batch {
            target: "doc_segments:*".into(),
            reason: "no TTL, idle >= 1h".into(),
            items: vec![
                PlannedItem {
                    id: "doc_segments:1".into(),
                    action: Action::Delete,
                },
                PlannedItem {
                    id: "doc_segments:2".into(),
                    action: Action::Expire(3600),
                },
            ],
            shard: None,
        };
        for dry_run in [true, false] {
            log.append(&AuditRecord {
                time: SystemTime::UNIX_EPOCH,
                run_id: "r1",
                resource: Resource::Redis,
                dry_run,
                batch: &batch,
                failed: &[],
                skipped: &[],
            })
            .await
            .unwrap();
        }
        drop(log);
        // reopening appends, never truncates
        let log = Arc::new(AuditLog::open(&path).unwrap());
        log.append(&AuditRecord {
            time: SystemTime::UNIX_EPOCH,
            run_id: "r2",
            resource: Resource::S3,
            dry_run: false,
            batch: &batch,
            failed: &["doc_segments:2".into()],
            skipped: &[],
        })
        .await
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        let first = &lines[0];
        assert_eq!(first["time"], "1970-01-01T00:00:00Z");
        assert_eq!(first["run_id"], "r1");
        assert_eq!(first["resource"], "redis");
        assert_eq!(first["dry_run"], true);
        assert_eq!(first["target"], "doc_segments:*");
        assert_eq!(first["reason"], "no TTL, idle >= 1h");
        assert_eq!(
            first["items"][0],
            serde_json::json!({"id": "doc_segments:1", "action": "delete"})
        );
        assert_eq!(
            first["items"][1],
            serde_json::json!({"id": "doc_segments:2", "action": "expire", "ttl_secs": 3600})
        );
        assert_eq!(lines[2]["failed"][0], "doc_segments:2");
    }
}
