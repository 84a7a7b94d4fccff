//! Drift between the stores, in both directions: what one store holds for a document that
//! another no longer has.
//!
//! Cleanups that go one way only report success while the stores drift apart (vectors left
//! behind deleted documents, documents whose file is gone). The document pass measures
//! points and cache keys whose document is gone, and ready documents without a vector; the
//! S3 pass measures documents whose object is missing. Each writes its part on the
//! [`DriftBoard`], which the API and the metrics read. Nothing here deletes: Qdrant points
//! of a gone document are deleted only by the Qdrant orphan pass
//! (`JANITOR_QDRANT_ORPHAN_FIELD`), by explicit configuration.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// Ids kept as a sample of each kind of drift.
pub const SAMPLE: usize = 20;

/// One kind of drift: how many, and some of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriftCount {
    /// How many (points, keys or documents); `None`: not checked (say why in `note`).
    pub count: Option<u64>,
    /// Up to [`SAMPLE`] ids.
    pub sample: Vec<String>,
    /// Why it was not checked, or what bounds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was measured.
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub measured_at: Option<SystemTime>,
}

impl DriftCount {
    /// Not checked, because `why`.
    pub fn unchecked(why: impl Into<String>) -> Self {
        Self {
            note: Some(why.into()),
            ..Self::default()
        }
    }

    /// Counted from zero as of `now`.
    pub fn counting(now: SystemTime) -> Self {
        Self {
            count: Some(0),
            measured_at: Some(now),
            ..Self::default()
        }
    }

    /// Adds `n` drifted items, `ids` among them for the sample.
    pub fn add(&mut self, n: u64, ids: impl IntoIterator<Item = String>) {
        self.count = Some(self.count.unwrap_or(0) + n);
        for id in ids {
            if self.sample.len() >= SAMPLE {
                break;
            }
            if !self.sample.contains(&id) {
                self.sample.push(id);
            }
        }
    }
}

/// Every kind of drift the janitor measures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Drift {
    /// Qdrant points whose document is gone from MongoDB.
    pub orphan_points: DriftCount,
    /// Redis document keys whose document is gone.
    pub orphan_keys: DriftCount,
    /// Documents whose object is missing from S3 (the S3 pass's dangling references).
    pub missing_objects: DriftCount,
    /// Ready documents that have no vector.
    pub missing_vectors: DriftCount,
}

impl Drift {
    /// Each kind with its count, for the metrics.
    pub fn kinds(&self) -> [(&'static str, &DriftCount); 4] {
        [
            ("orphan_points", &self.orphan_points),
            ("orphan_keys", &self.orphan_keys),
            ("missing_objects", &self.missing_objects),
            ("missing_vectors", &self.missing_vectors),
        ]
    }
}

/// The latest drift, shared by the passes that measure it and the API.
#[derive(Debug, Clone, Default)]
pub struct DriftBoard(Arc<Mutex<Option<Drift>>>);

impl DriftBoard {
    /// The latest drift, if any pass measured some.
    pub fn get(&self) -> Option<Drift> {
        self.lock().clone()
    }

    /// Changes the drift in place (each pass writes its own kinds).
    pub fn update(&self, f: impl FnOnce(&mut Drift)) {
        f(self.lock().get_or_insert_with(Drift::default));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Drift>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_samples_stay_bounded_and_distinct() {
        let mut c = DriftCount::counting(SystemTime::UNIX_EPOCH);
        c.add(2, ["a".to_string(), "a".to_string()]);
        c.add(30, (0..30).map(|i| i.to_string()));
        assert_eq!(c.count, Some(32));
        assert_eq!(c.sample.len(), SAMPLE);
        assert_eq!(c.sample[0], "a");
        let board = DriftBoard::default();
        assert!(board.get().is_none());
        board.update(|d| d.orphan_keys = c.clone());
        board.update(|d| d.missing_objects = DriftCount::unchecked("S3 not configured"));
        let d = board.get().unwrap();
        assert_eq!(d.orphan_keys.count, Some(32));
        assert_eq!(d.missing_objects.count, None);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["missing_objects"]["note"], "S3 not configured");
        assert!(v["orphan_points"].get("note").is_none());
    }
}
