//! The SHA-256 dedup index: which document of a user already holds a file's content.
//!
//! The seed hashed whole files in memory and looked the hash up before writing it, a
//! read-then-write that two concurrent uploads both win. Here the hash is streamed
//! ([`hash`]), and a register is one write against a unique index on (user, hash): MongoDB's
//! E11000 decides the race, and the loser learns the winner's document id. Without that
//! index a register is refused (it would not be race-free), and `/readyz` says why.
//! A MongoDB error is always an error (503), never "not a duplicate".

pub mod hash;
pub mod scan;

use std::sync::Mutex;
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use serde::Serialize;

use crate::backend::mongo::{Mongo, id_forms, id_text, is_duplicate_key, is_namespace_missing};
use crate::config::{Dedup, RegisterMode};

/// Duplicate groups listed when they block the index.
const REPORTED_GROUPS: i64 = 20;

/// The unique index's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IndexStatus {
    /// Not checked yet.
    Unknown,
    /// Present and unique: registers are race-free.
    Present,
    /// Missing: registers are refused.
    Missing,
    /// Creation failed because these (user, hash) pairs are held by more than one document.
    Blocked {
        /// The first groups.
        duplicates: Vec<DuplicateGroup>,
    },
    /// MongoDB could not be asked.
    Unavailable {
        /// Why.
        error: String,
    },
}

/// Documents of one user holding the same hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateGroup {
    /// The user.
    pub user_id: String,
    /// The hash.
    pub sha256: String,
    /// The documents (ids as text).
    pub document_ids: Vec<String>,
}

/// Why a dedup request failed.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    /// MongoDB errored or timed out: the answer is unknown.
    #[error("MongoDB unavailable, duplicate status unknown: {0}")]
    Unavailable(String),
    /// The document to register does not exist for this user.
    #[error("{0}")]
    NotFound(String),
    /// The unique index is missing: a register would not be race-free.
    #[error("{0}")]
    IndexMissing(String),
}

/// What a register did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Recorded.
    Created,
    /// This document already held this hash.
    Already,
    /// Another document of the user holds the hash (it won the race, or came first).
    Conflict {
        /// The winner, if it still exists.
        document_id: Option<String>,
    },
}

/// The dedup index over the application's MongoDB.
pub struct DedupIndex {
    collection: Collection<Document>,
    settings: Dedup,
    timeout: Duration,
    status: Mutex<IndexStatus>,
}

/// `{a: {b: value}}` for the dotted path `a.b`.
fn nested(path: &str, value: Bson) -> Document {
    let mut parts = path.rsplit('.');
    let last = parts.next().unwrap_or(path);
    let mut d = doc! { last: value };
    for p in parts {
        d = doc! { p: d };
    }
    d
}

impl DedupIndex {
    /// The index in `mongo`'s database.
    pub fn new(mongo: &Mongo, settings: Dedup, timeout: Duration) -> Self {
        Self {
            collection: mongo.database().collection(&settings.collection),
            settings,
            timeout,
            status: Mutex::new(IndexStatus::Unknown),
        }
    }

    /// The largest body a check hashes.
    pub fn max_bytes(&self) -> u64 {
        self.settings.max_bytes
    }

    /// The index's last known state.
    pub fn status(&self) -> IndexStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_status(&self, s: IndexStatus) -> IndexStatus {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = s.clone();
        s
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<T, DedupError> {
        match tokio::time::timeout(self.timeout, fut.into_future()).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(DedupError::Unavailable(crate::secret::redact_url(
                &e.to_string(),
            ))),
            Err(_) => Err(DedupError::Unavailable(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    /// Like [`Self::timed`], but keeps MongoDB's own error for the caller to inspect.
    async fn within<T>(
        &self,
        fut: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> Result<mongodb::error::Result<T>, DedupError> {
        tokio::time::timeout(self.timeout, fut.into_future())
            .await
            .map_err(|_| DedupError::Unavailable("no answer within the backend timeout".into()))
    }

    fn keys(&self) -> Document {
        doc! { self.settings.user_field.as_str(): 1, self.settings.hash_field.as_str(): 1 }
    }

    /// Checks the unique index, creating it first when configured to. Records and returns
    /// the state.
    pub async fn ensure_index(&self) -> IndexStatus {
        let status = match self.check_index().await {
            Ok(IndexStatus::Missing) if self.settings.create_index => self.create_index().await,
            Ok(s) => s,
            Err(e) => IndexStatus::Unavailable {
                error: e.to_string(),
            },
        };
        self.set_status(status)
    }

    async fn check_index(&self) -> Result<IndexStatus, DedupError> {
        let keys = self.keys();
        let list = async {
            let mut found = false;
            match self.collection.list_indexes().await {
                Ok(mut cursor) => {
                    while let Some(index) = cursor.try_next().await? {
                        let unique = index.options.as_ref().and_then(|o| o.unique) == Some(true);
                        found |= unique && index.keys == keys;
                    }
                }
                Err(e) if is_namespace_missing(&e) => {}
                Err(e) => return Err(e),
            }
            Ok(found)
        };
        let found = self.timed(list).await?;
        Ok(if found {
            IndexStatus::Present
        } else {
            IndexStatus::Missing
        })
    }

    async fn create_index(&self) -> IndexStatus {
        let s = &self.settings;
        let options = IndexOptions::builder()
            .unique(true)
            .name(s.index_name.clone())
            // documents without a hash (not registered yet) are outside the index
            .partial_filter_expression(doc! { s.hash_field.as_str(): { "$exists": true } })
            .build();
        let model = IndexModel::builder()
            .keys(self.keys())
            .options(options)
            .build();
        let created = tokio::time::timeout(self.timeout, self.collection.create_index(model)).await;
        match created {
            Ok(Ok(_)) => {
                tracing::info!(index = %s.index_name, collection = %s.collection, "dedup unique index created");
                IndexStatus::Present
            }
            Ok(Err(e)) if is_duplicate_key(&e) => match self.duplicates().await {
                Ok(duplicates) => {
                    for g in &duplicates {
                        tracing::error!(user_id = %g.user_id, sha256 = %g.sha256, documents = ?g.document_ids,
                            "duplicate hash blocks the dedup unique index");
                    }
                    IndexStatus::Blocked { duplicates }
                }
                Err(e) => IndexStatus::Unavailable {
                    error: e.to_string(),
                },
            },
            Ok(Err(e)) => IndexStatus::Unavailable {
                error: crate::secret::redact_url(&e.to_string()),
            },
            Err(_) => IndexStatus::Unavailable {
                error: "index creation timed out".into(),
            },
        }
    }

    /// The (user, hash) pairs held by more than one document (the first groups).
    pub async fn duplicates(&self) -> Result<Vec<DuplicateGroup>, DedupError> {
        let (user, hash) = (&self.settings.user_field, &self.settings.hash_field);
        let pipeline = [
            doc! { "$match": { hash.as_str(): { "$exists": true } } },
            doc! { "$group": {
                "_id": { "u": format!("${user}"), "h": format!("${hash}") },
                "n": { "$sum": 1 },
                "docs": { "$push": "$_id" },
            } },
            doc! { "$match": { "n": { "$gt": 1 } } },
            doc! { "$limit": REPORTED_GROUPS },
        ];
        let groups = async {
            let cursor = self.collection.aggregate(pipeline).await?;
            cursor.try_collect::<Vec<Document>>().await
        };
        let groups = self.timed(groups).await?;
        Ok(groups
            .iter()
            .map(|g| {
                let key = g.get_document("_id").ok();
                let text = |k: &str| {
                    key.and_then(|d| d.get(k))
                        .and_then(id_text)
                        .unwrap_or_default()
                };
                DuplicateGroup {
                    user_id: text("u"),
                    sha256: text("h"),
                    document_ids: g
                        .get_array("docs")
                        .map(|a| a.iter().filter_map(id_text).collect())
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The document of `user_id` holding `sha256`, if any.
    pub async fn lookup(&self, user_id: &str, sha256: &str) -> Result<Option<String>, DedupError> {
        let s = &self.settings;
        let filter = doc! { s.user_field.as_str(): user_id, s.hash_field.as_str(): sha256 };
        let id_field = match s.register {
            RegisterMode::Document => "_id",
            RegisterMode::Insert => "document_id",
        };
        let found = self
            .timed(
                self.collection
                    .find_one(filter)
                    .projection(doc! { id_field: 1 }),
            )
            .await?;
        Ok(found.and_then(|d| d.get(id_field).and_then(id_text)))
    }

    /// Records that `document_id` of `user_id` holds `sha256`. Race-free: the unique index
    /// decides, and the loser gets the winner's document id.
    pub async fn register(
        &self,
        user_id: &str,
        sha256: &str,
        document_id: &str,
        object_key: Option<&str>,
    ) -> Result<Registered, DedupError> {
        if self.status() != IndexStatus::Present
            && self.ensure_index().await != IndexStatus::Present
        {
            return Err(DedupError::IndexMissing(format!(
                "the unique index on {}.({}, {}) is missing ({}): a register would not be race-free; \
                 create it or set JANITOR_DEDUP_CREATE_INDEX=true",
                self.settings.collection,
                self.settings.user_field,
                self.settings.hash_field,
                serde_json::to_string(&self.status()).unwrap_or_default()
            )));
        }
        let s = &self.settings;
        let written = match s.register {
            RegisterMode::Document => {
                let filter = doc! {
                    "_id": { "$in": id_forms(document_id) },
                    s.user_field.as_str(): user_id,
                };
                let update = doc! { "$set": { s.hash_field.as_str(): sha256 } };
                match self
                    .within(self.collection.update_one(filter, update))
                    .await?
                {
                    Ok(r) if r.matched_count == 0 => {
                        return Err(DedupError::NotFound(format!(
                            "no document {document_id} of user {user_id} in {}",
                            s.collection
                        )));
                    }
                    Ok(r) if r.modified_count == 0 => return Ok(Registered::Already),
                    other => other.map(|_| ()),
                }
            }
            RegisterMode::Insert => {
                let mut record = doc! {
                    s.user_field.as_str(): user_id,
                    "document_id": document_id,
                    "created_at": mongodb::bson::DateTime::now(),
                };
                if let Some(key) = object_key {
                    record.insert("object_key", key);
                }
                let hash = nested(&s.hash_field, Bson::String(sha256.to_string()));
                record.extend(hash);
                self.within(self.collection.insert_one(record))
                    .await?
                    .map(|_| ())
            }
        };
        match written {
            Ok(()) => Ok(Registered::Created),
            Err(e) if is_duplicate_key(&e) => {
                let winner = self.lookup(user_id, sha256).await?;
                if winner.as_deref() == Some(document_id) {
                    Ok(Registered::Already)
                } else {
                    Ok(Registered::Conflict {
                        document_id: winner,
                    })
                }
            }
            Err(e) => Err(DedupError::Unavailable(crate::secret::redact_url(
                &e.to_string(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_hash_fields_nest_and_ids_keep_their_forms() {
        assert_eq!(
            nested("metadata.file_hash", Bson::from("h")),
            doc! { "metadata": { "file_hash": "h" } }
        );
        assert_eq!(nested("hash", Bson::from("h")), doc! { "hash": "h" });
        let oid = "65a1b2c3d4e5f60718293a4b";
        assert_eq!(id_forms(oid).len(), 2);
        assert_eq!(id_forms("doc-1"), vec![Bson::from("doc-1")]);
        assert_eq!(id_text(&id_forms(oid)[1]).unwrap(), oid);
    }
}
