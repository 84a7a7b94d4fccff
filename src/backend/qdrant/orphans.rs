//! Orphan vectors: points past a grace period whose document no longer exists in MongoDB.
//!
//! Qdrant cannot know that the document a point was embedded from is gone; MongoDB can. A
//! point is an orphan when its payload's document id (`JANITOR_QDRANT_ORPHAN_FIELD`) has no
//! document in `JANITOR_QDRANT_ORPHAN_COLLECTION`, and it is older than the grace period (a
//! document being written may not be in MongoDB yet). Every MongoDB error is
//! `ReferenceUnavailable`, so the run fails closed, and an empty document collection refuses
//! the pass (taken for misconfiguration, not for "every point is an orphan").

use std::collections::HashMap;

use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{Condition, Filter, PointId, RetrievedPoint};

use super::{Qdrant, id_text};
use crate::backend::mongo::Mongo;
use crate::backend::sweep::{SweepContext, SweepError};
use crate::config::QdrantSweep;
use crate::plan::Plan;

/// Document ids per MongoDB `$in` query.
const MONGO_IN_MAX: usize = 1000;

/// The orphan check of one sweeper: the points, the documents, and the names of both.
pub struct Orphans<'a> {
    qdrant: &'a Qdrant,
    mongo: &'a Mongo,
    settings: &'a QdrantSweep,
    /// The payload field holding the document id.
    doc_field: &'a str,
}

/// A document id held in a payload: a string or an integer.
fn doc_id(p: &mut RetrievedPoint, field: &str) -> Option<String> {
    match p.payload.remove(field)?.kind? {
        Kind::StringValue(s) if !s.is_empty() => Some(s),
        Kind::IntegerValue(n) => Some(n.to_string()),
        _ => None,
    }
}

impl<'a> Orphans<'a> {
    /// The check when the orphan pass is configured, without asking MongoDB anything.
    pub fn configured(
        qdrant: &'a Qdrant,
        mongo: Option<&'a Mongo>,
        settings: &'a QdrantSweep,
    ) -> Option<Self> {
        Some(Self {
            qdrant,
            mongo: mongo?,
            settings,
            doc_field: settings.orphan_field.as_deref()?,
        })
    }

    /// The check for a run's plan, or `None` when the orphan pass is off or refused (said
    /// in the plan): MongoDB is not configured, or the document collection is empty.
    pub async fn source(
        qdrant: &'a Qdrant,
        mongo: Option<&'a Mongo>,
        settings: &'a QdrantSweep,
        plan: &mut Plan,
    ) -> Result<Option<Self>, SweepError> {
        let Some(field) = &settings.orphan_field else {
            return Ok(None);
        };
        let Some(this) = Self::configured(qdrant, mongo, settings) else {
            plan.warnings.push(format!(
                "orphan pass refused: JANITOR_QDRANT_ORPHAN_FIELD={field} but MONGODB_URI is not set"
            ));
            return Ok(None);
        };
        let coll = &settings.orphan_collection;
        let documents = this
            .mongo
            .document_count(coll)
            .await
            .map_err(|e| SweepError::ReferenceUnavailable(e.to_string()))?;
        if documents == 0 {
            plan.warnings.push(format!(
                "orphan pass refused: the document collection {coll} is empty or missing (taken for misconfiguration)"
            ));
            return Ok(None);
        }
        Ok(Some(this))
    }

    /// Plans the points of `collection` in `range` (past the grace, not past the TTL) whose
    /// document is gone, in batches. Returns (orphans planned, points without a document id).
    pub async fn plan(
        &self,
        ctx: &SweepContext,
        collection: &str,
        range: Filter,
        plan: &mut Plan,
    ) -> Result<(u64, u64), SweepError> {
        let s = self.settings;
        let reason = format!(
            "its document ({}.{} = {}) no longer exists; older than the {} grace",
            s.orphan_collection,
            s.orphan_ref_field,
            self.doc_field,
            humantime::format_duration(s.orphan_grace)
        );
        let (mut orphaned, mut without, mut offset) = (0u64, 0u64, None);
        loop {
            let (points, next) = self
                .qdrant
                .scroll(collection, &range, &[self.doc_field], s.batch_size, offset)
                .await?;
            let (ids, missing) = self.unreferenced(points).await?;
            without += missing;
            orphaned += ids.len() as u64;
            plan.push_deletes(collection, &reason, ids)
                .map_err(SweepError::spool)?;
            offset = next;
            if offset.is_none() || plan.deletions() > ctx.cap.planning_limit() {
                break;
            }
        }
        Ok((orphaned, without))
    }

    /// The points among `ids` of `collection` in `range` that are still orphans, asked
    /// again just before their delete: a document written since planning saves its points.
    pub async fn recheck(
        &self,
        collection: &str,
        ids: &[PointId],
        range: Condition,
    ) -> Result<Vec<String>, SweepError> {
        let limit = u32::try_from(ids.len()).unwrap_or(u32::MAX).max(1);
        let filter = Filter::must([Condition::has_id(ids.to_vec()), range]);
        let (points, _) = self
            .qdrant
            .scroll(collection, &filter, &[self.doc_field], limit, None)
            .await?;
        Ok(self.unreferenced(points).await?.0)
    }

    /// The ids of `points` whose document does not exist, and how many points hold no
    /// document id. A MongoDB error is `ReferenceUnavailable`: nothing may be deleted.
    async fn unreferenced(
        &self,
        points: Vec<RetrievedPoint>,
    ) -> Result<(Vec<String>, u64), SweepError> {
        let s = self.settings;
        let mut by_doc: HashMap<String, Vec<String>> = HashMap::new();
        let mut without = 0u64;
        for mut p in points {
            let Some(id) = p.id.as_ref().and_then(id_text) else {
                continue;
            };
            match doc_id(&mut p, self.doc_field) {
                Some(doc) => by_doc.entry(doc).or_default().push(id),
                None => without += 1,
            }
        }
        let docs: Vec<String> = by_doc.keys().cloned().collect();
        for chunk in docs.chunks(MONGO_IN_MAX) {
            let existing = self
                .mongo
                .existing_ids(&s.orphan_collection, &s.orphan_ref_field, chunk)
                .await
                .map_err(|e| SweepError::ReferenceUnavailable(e.to_string()))?;
            for doc in existing {
                by_doc.remove(&doc);
            }
        }
        Ok((by_doc.into_values().flatten().collect(), without))
    }
}
