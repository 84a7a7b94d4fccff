//! The document lifecycle: the application's old documents leave with everything that hangs
//! off them.
//!
//! A document expires when it is older than the documents TTL, its status is final, and no
//! chat session active within the activity window holds it. Its cascade deletes the
//! dependents first and the document last: its object(s) in S3 (unless another document
//! still references one: dedup), its points in Qdrant (by a filter on the payload's document
//! id), its Redis cache keys (found by one SCAN per key template), then the document.
//!
//! Crash-safe: every step is idempotent, and a document is deleted only once all its
//! dependents are confirmed gone, so a document whose dependents are half gone is still
//! there, still expired, and selected again by the next pass. Fail closed: any error of the
//! session lookup, the document query or a reference check stops the pass before it
//! deletes anything more (`failed_closed`, naming the step).

mod cascade;
mod planning;
mod reconcile;
mod select;

use std::collections::HashSet;
use std::time::SystemTime;

use serde::Deserialize;

use super::BackendError;
use super::mongo::Mongo;
use super::qdrant::Qdrant;
use super::redis::Redis;
use super::s3::{self, S3};
use super::sweep::{Applied, Sweep, SweepContext, SweepError};
use crate::config::DocumentsSweep;
use crate::drift::DriftBoard;
use crate::plan::{Batch, ItemDetail, Plan, PlannedItem};
use crate::resource::Resource;

/// The stores a document's dependents live in, as configured.
#[derive(Clone, Default)]
pub struct Dependents {
    /// Files.
    pub s3: Option<S3>,
    /// Vectors, and the collections to look in (empty: every collection).
    pub qdrant: Option<(Qdrant, Vec<String>)>,
    /// Cache keys.
    pub redis: Option<Redis>,
    /// How many S3 deletions may be in flight, and how many a second (the S3 sweep's).
    pub s3_limits: S3Limits,
}

/// The S3 sweep's limits on deletions, which the cascade's deletions obey too.
#[derive(Clone, Debug, Default)]
pub struct S3Limits {
    /// DeleteObjects requests in flight at most (`JANITOR_S3_MAX_INFLIGHT`).
    pub max_inflight: usize,
    /// DeleteObjects requests a second at most, 0 for no cap (`JANITOR_S3_MAX_RPS`).
    pub max_rps: u32,
    /// A request's keys are checked for references again right before it goes once the
    /// batch's check is older than this (`JANITOR_S3_RECHECK_AFTER_SECONDS`'s setting).
    pub recheck_after: std::time::Duration,
}

/// The document lifecycle's sweeper.
pub struct DocumentsSweeper {
    mongo: Mongo,
    dependents: Dependents,
    settings: DocumentsSweep,
    drift: DriftBoard,
}

/// One pass, from its plan to its finish.
pub struct DocumentsRun {
    /// Sessions active since then hold their documents.
    active_since: SystemTime,
    /// The Qdrant collections the pass looked in.
    collections: Vec<String>,
    /// The pass's S3 deletions, adaptive as the S3 sweep's.
    throttle: tokio::sync::Mutex<s3::delete::Throttle>,
}

/// What goes with a document, as planned (the audit log's `detail` of each item).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Detail {
    objects: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    kept_objects: Vec<String>,
    /// Counted by a dry run; a real run deletes them all by filter without counting first
    /// (the batch's total is counted as it is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    points: Option<u64>,
    #[serde(default)]
    redis_keys: cascade::Keys,
}

fn step(name: &'static str) -> impl Fn(BackendError) -> SweepError {
    move |e| SweepError::ReferenceUnavailable(format!("{name}: {e}"))
}

impl DocumentsSweeper {
    /// A sweeper over the documents in `mongo`, deleting their dependents in `dependents`;
    /// the drift it counts goes on `drift`.
    pub fn new(
        mongo: Mongo,
        dependents: Dependents,
        settings: DocumentsSweep,
        drift: DriftBoard,
    ) -> Self {
        Self {
            mongo,
            dependents,
            settings,
            drift,
        }
    }

    async fn apply_inner(
        &self,
        run: &DocumentsRun,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> Result<Applied, SweepError> {
        let s = &self.settings;
        let ids: Vec<String> = batch.items.iter().map(|i| i.id.clone()).collect();
        // points written since planning (the document indexed again?): the whole batch
        // waits for the next pass, which plans it again, rather than deleting more than
        // the cap weighed
        if let Some(note) = self.points_grown(run, batch, &ids).await? {
            return Ok(Applied {
                skipped: ids,
                notes: vec![note],
                ..Applied::default()
            });
        }
        // fail closed: a session that picked a document up since planning keeps it
        let held = select::held(&self.mongo, s, run.active_since, Some(&ids))
            .await
            .map_err(step("session re-check"))?;
        let (skipped, go): (Vec<&PlannedItem>, Vec<&PlannedItem>) =
            batch.items.iter().partition(|i| held.contains(&i.id));
        // a document whose dependents cannot be read from the plan is not touched (its
        // files would be left behind): doubt keeps it
        let mut unreadable = Vec::new();
        let (mut go_ids, mut details) = (Vec::new(), Vec::new());
        for item in go {
            // read in place: a batch's details are a thousand documents' dependents
            match item
                .detail
                .as_ref()
                .and_then(ItemDetail::json)
                .map(Detail::deserialize)
            {
                Some(Ok(detail)) => {
                    go_ids.push(item.id.clone());
                    details.push(detail);
                }
                _ => unreadable.push(item.id.clone()),
            }
        }
        select::mark(&self.mongo, s, &go_ids, Some(ctx.now))
            .await
            .map_err(step("marking"))?;
        let objects: Vec<String> = details.iter().flat_map(|d| d.objects.clone()).collect();
        let shared = self
            .mongo
            .referenced_by_others(
                &s.collection,
                &s.key_fields,
                &objects,
                &select::id_values(&go_ids),
            )
            .await
            .map_err(step("reference re-check"))?;

        // the dependents, then the documents
        let mut applied = Applied {
            skipped: skipped.iter().map(|i| i.id.clone()).collect(),
            ..Applied::default()
        };
        let mut failed: HashSet<String> = unreadable.into_iter().collect();
        let dependents = self
            .delete_dependents(run, &go_ids, &details, &shared)
            .await;
        let (gone_objects, gone_points, gone_keys) = match dependents {
            Ok((not_gone, counts)) => {
                failed.extend(not_gone);
                counts
            }
            Err(e) => {
                // the documents stay: the next pass selects them again and finishes
                failed.extend(go_ids);
                applied.failed = failed.into_iter().collect();
                applied.interrupted = Some(e);
                return Ok(applied);
            }
        };
        let confirmed: Vec<String> = go_ids
            .iter()
            .filter(|id| !failed.contains(*id))
            .cloned()
            .collect();
        match select::delete(&self.mongo, s, &confirmed).await {
            Ok(n) => applied.deleted = n,
            Err(e) => {
                failed.extend(go_ids);
                applied.failed = failed.into_iter().collect();
                applied.interrupted = Some(step("deleting documents")(e));
                return Ok(applied);
            }
        }
        applied.failed = failed.into_iter().collect();
        if let Err(e) = select::mark(&self.mongo, s, &applied.skipped, None).await {
            applied
                .notes
                .push(format!("documents kept by a session stay marked: {e}"));
        }
        applied.notes.push(format!(
            "documents batch: {} documents, {gone_objects} objects, {gone_points} points, {gone_keys} cache keys deleted",
            applied.deleted
        ));
        Ok(applied)
    }

    /// A note when the documents `ids` of `batch` have more points than it planned, `None`
    /// otherwise (or when the plan counted none: no Qdrant).
    async fn points_grown(
        &self,
        run: &DocumentsRun,
        batch: &Batch,
        ids: &[String],
    ) -> Result<Option<String>, SweepError> {
        let planned = batch.detail.as_ref().and_then(|d| d.get("points"));
        let (Some((q, _)), Some(planned)) = (&self.dependents.qdrant, planned) else {
            return Ok(None);
        };
        let Some(planned) = planned.as_u64() else {
            return Err(SweepError::Refused(format!(
                "unreadable point count in the plan: {planned}"
            )));
        };
        let now =
            cascade::count_points(q, &run.collections, &self.settings.qdrant_field, ids).await?;
        Ok((now > planned).then(|| {
            format!(
                "documents batch left for the next pass: its {} documents have {now} points, {planned} when planned",
                ids.len()
            )
        }))
    }

    /// Deletes the objects (but `shared`), points and keys of the documents `ids`, the
    /// three stores at once. Returns the documents whose dependents are not all confirmed
    /// gone, and the counts deleted.
    async fn delete_dependents(
        &self,
        run: &DocumentsRun,
        ids: &[String],
        details: &[Detail],
        shared: &HashSet<String>,
    ) -> Result<(HashSet<String>, (u64, u64, u64)), SweepError> {
        let (objects, points, keys) = tokio::join!(
            self.delete_objects(run, ids, details, shared),
            self.delete_points(run, ids),
            self.unlink_keys(details),
        );
        let ((mut not_gone, objects), (left, points), keys) = (objects?, points?, keys?);
        not_gone.extend(left);
        Ok((not_gone, (objects, points, keys)))
    }

    /// The documents' objects but `shared` ones: the documents whose object S3 did not
    /// confirm deleted, and how many went.
    async fn delete_objects(
        &self,
        run: &DocumentsRun,
        ids: &[String],
        details: &[Detail],
        shared: &HashSet<String>,
    ) -> Result<(HashSet<String>, u64), SweepError> {
        let Some(s3) = &self.dependents.s3 else {
            return Ok((HashSet::new(), 0));
        };
        let doomed: Vec<String> = details
            .iter()
            .flat_map(|d| d.objects.iter())
            .filter(|o| !shared.contains(*o))
            .cloned()
            .collect();
        // one batch's keys spread over the requests allowed in flight: a single
        // DeleteObjects of 1,000 keys keeps one server core busy (Garage: 1.8 s for 3,334
        // keys in 1,000s, 1.1 s in 125s, 8 at once)
        let (limits, mut throttle) = (&self.dependents.s3_limits, run.throttle.lock().await);
        let chunk = doomed.len().div_ceil(limits.max_inflight.max(1));
        // a document written since the batch's reference check saves its object: once that
        // check is old (throttled requests wait and are sent again), each request's keys
        // are checked again right before it goes
        let (checked, excluding) = (tokio::time::Instant::now(), select::id_values(ids));
        let s = &self.settings;
        let check = |chunk: Vec<String>| {
            let excluding = &excluding;
            async move {
                if checked.elapsed() < limits.recheck_after {
                    return Ok((chunk, Vec::new()));
                }
                let referenced = self
                    .mongo
                    .referenced_by_others(&s.collection, &s.key_fields, &chunk, excluding)
                    .await
                    .map_err(step("reference re-check"))?;
                Ok::<_, SweepError>(chunk.into_iter().partition(|k| !referenced.contains(k)))
            }
        };
        let (done, _) =
            s3::delete::delete_all(s3, doomed, chunk, &mut throttle, None, check).await?;
        if let Some(e) = done.error {
            return Err(e.into());
        }
        let failed_keys: HashSet<String> = done.failed.into_iter().collect();
        let deleted = done.deleted.len() as u64;
        let not_gone = ids
            .iter()
            .zip(details)
            .filter(|(_, d)| d.objects.iter().any(|o| failed_keys.contains(o)))
            .map(|(id, _)| id.clone())
            .collect();
        Ok((not_gone, deleted))
    }

    /// The documents' points: the documents that still have some, and how many went.
    async fn delete_points(
        &self,
        run: &DocumentsRun,
        ids: &[String],
    ) -> Result<(HashSet<String>, u64), SweepError> {
        let Some((q, _)) = &self.dependents.qdrant else {
            return Ok((HashSet::new(), 0));
        };
        let field = &self.settings.qdrant_field;
        let (deleted, left) = cascade::delete_points(q, &run.collections, field, ids).await?;
        Ok((left, deleted))
    }

    /// Every document's keys together: UNLINKs of 1000 keys, not one per document.
    async fn unlink_keys(&self, details: &[Detail]) -> Result<u64, SweepError> {
        let Some(redis) = &self.dependents.redis else {
            return Ok(0);
        };
        let mut all = cascade::Keys::new();
        for d in details {
            for (server, k) in &d.redis_keys {
                all.entry(server.clone())
                    .or_default()
                    .extend(k.iter().cloned());
            }
        }
        Ok(cascade::unlink(redis, &all).await?)
    }
}

impl Sweep for DocumentsSweeper {
    const RESOURCE: Resource = Resource::Documents;
    type Run = DocumentsRun;

    async fn plan(&self, ctx: &SweepContext) -> Result<(Plan, DocumentsRun), SweepError> {
        self.plan_inner(ctx).await
    }

    async fn apply(
        &self,
        run: &DocumentsRun,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> Result<Applied, SweepError> {
        self.apply_inner(run, batch, ctx).await
    }

    /// Documents still there (a document goes last, once its dependents are gone).
    async fn unapplied(&self, batch: &Batch) -> Result<Vec<String>, SweepError> {
        let ids: Vec<String> = batch.items.iter().map(|i| i.id.clone()).collect();
        let existing = self
            .mongo
            .existing_ids(&self.settings.collection, "_id", &ids)
            .await
            .map_err(step("recovery check"))?;
        Ok(ids.into_iter().filter(|id| existing.contains(id)).collect())
    }
}
