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
mod reconcile;
mod select;

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use serde_json::json;

use super::BackendError;
use super::mongo::Mongo;
use super::qdrant::Qdrant;
use super::redis::Redis;
use super::s3::S3;
use super::sweep::{Applied, Sweep, SweepContext, SweepError};
use crate::config::DocumentsSweep;
use crate::drift::DriftBoard;
use crate::plan::{Action, Batch, Dependent, Plan, PlannedItem};
use crate::resource::Resource;

/// Documents per batch (one audit record, one query per step per store, one DeleteObjects
/// when each has one object).
const BATCH_DOCS: usize = 1000;

/// The stores a document's dependents live in, as configured.
#[derive(Clone, Default)]
pub struct Dependents {
    /// Files.
    pub s3: Option<S3>,
    /// Vectors, and the collections to look in (empty: every collection).
    pub qdrant: Option<(Qdrant, Vec<String>)>,
    /// Cache keys.
    pub redis: Option<Redis>,
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

    /// Counts the drift between the stores into `plan` and onto the board.
    async fn reconcile(&self, plan: &mut Plan, collections: &[String], now: SystemTime) {
        let qdrant = self
            .dependents
            .qdrant
            .as_ref()
            .map(|(q, _)| (q, collections));
        let redis = self.dependents.redis.as_ref();
        let mut drift = reconcile::measure(&self.mongo, qdrant, redis, &self.settings, now).await;
        self.drift.update(|board| {
            // the S3 pass measures missing objects
            drift.missing_objects = board.missing_objects.clone();
            *board = drift.clone();
        });
        let counts: Vec<String> = drift
            .kinds()
            .iter()
            .map(|(kind, c)| match c.count {
                Some(n) => format!("{kind} {n}"),
                None => format!("{kind} unchecked"),
            })
            .collect();
        plan.notes.push(format!("drift: {}", counts.join(", ")));
        plan.drift = Some(drift);
    }

    /// What a pass deletes in each dependent store, with that store's size, so the cap of
    /// each store holds inside the cascade too (an unknown S3 size, when no whole-bucket
    /// listing was made yet, leaves the absolute cap).
    async fn dependents_caps(
        &self,
        collections: &[String],
        objects: u64,
        points: u64,
        keys: u64,
    ) -> Result<Vec<Dependent>, SweepError> {
        let mut out = Vec::new();
        if let Some(s3) = &self.dependents.s3 {
            out.push(Dependent {
                resource: Resource::S3,
                deletions: objects,
                store_items: s3.last_listed_objects(),
            });
        }
        if let Some((q, _)) = &self.dependents.qdrant {
            let all = cascade::total_points(q, collections)
                .await
                .map_err(step("counting points"))?;
            out.push(Dependent {
                resource: Resource::Qdrant,
                deletions: points,
                store_items: Some(all),
            });
        }
        if let Some(redis) = &self.dependents.redis {
            let size = redis
                .memory_and_size()
                .await
                .map_err(step("counting cache keys"))?;
            out.push(Dependent {
                resource: Resource::Redis,
                deletions: keys,
                store_items: Some(size.keys),
            });
        }
        Ok(out)
    }

    async fn collections(&self) -> Result<Vec<String>, SweepError> {
        match &self.dependents.qdrant {
            None => Ok(Vec::new()),
            Some((_, named)) if !named.is_empty() => Ok(named.clone()),
            Some((q, _)) => Ok(q.collections().await?),
        }
    }

    async fn plan_inner(&self, ctx: &SweepContext) -> Result<(Plan, DocumentsRun), SweepError> {
        let s = &self.settings;
        let mut plan = ctx.new_plan(Resource::Documents)?;
        let cutoff = ctx
            .now
            .checked_sub(ctx.ttl)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let active_since = ctx
            .now
            .checked_sub(s.activity_window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        plan.store_items = self
            .mongo
            .document_count(&s.collection)
            .await
            .map_err(step("counting documents"))?;
        let held = select::held(&self.mongo, s, active_since, None)
            .await
            .map_err(step("session lookup"))?;
        let limit = ctx.cap.planning_limit();
        let mut expired = select::expired(&self.mongo, s, cutoff, &held, limit)
            .await
            .map_err(step("document query"))?;
        if expired.len() as u64 > limit {
            plan.notes.push(format!(
                "planning stopped at {} documents: above the cap",
                expired.len()
            ));
        }
        if self.dependents.s3.is_none() && expired.iter().any(|d| !d.objects.is_empty()) {
            return Err(SweepError::Refused(
                "expired documents reference objects but S3 is not configured: their files would be left behind".into(),
            ));
        }
        expired.truncate(usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX));
        let ids: HashSet<String> = expired.iter().map(|d| d.id.clone()).collect();
        let mut keys = match &self.dependents.redis {
            Some(redis) => cascade::redis_keys(redis, &s.redis_keys, &ids).await?,
            None => HashMap::new(),
        };
        let collections = self.collections().await?;
        let reason = format!(
            "created before {}, status {}, in no session active since {}",
            humantime::format_rfc3339_seconds(cutoff),
            s.final_statuses.join("/"),
            humantime::format_rfc3339_seconds(active_since)
        );
        let (mut objects, mut points, mut cache_keys) = (0u64, 0u64, 0u64);
        for chunk in expired.chunks(BATCH_DOCS) {
            let ids: Vec<String> = chunk.iter().map(|d| d.id.clone()).collect();
            let all: Vec<String> = chunk.iter().flat_map(|d| d.objects.clone()).collect();
            let shared = self
                .mongo
                .referenced_by_others(&s.collection, &s.key_fields, &all, &select::id_values(&ids))
                .await
                .map_err(step("reference check"))?;
            let counts = match &self.dependents.qdrant {
                Some((q, _)) if ctx.dry_run => {
                    Some(cascade::points(q, &collections, &s.qdrant_field, &ids).await?)
                }
                Some((q, _)) => {
                    // counted for the cap only: the delete itself goes by filter
                    points += cascade::count_points(q, &collections, &s.qdrant_field, &ids).await?;
                    None
                }
                _ => None,
            };
            let mut items = Vec::with_capacity(chunk.len());
            for d in chunk {
                let (kept, go): (Vec<String>, Vec<String>) =
                    d.objects.iter().cloned().partition(|o| shared.contains(o));
                let detail = Detail {
                    objects: go,
                    kept_objects: kept,
                    points: counts.as_ref().map(|c| c.get(&d.id).copied().unwrap_or(0)),
                    redis_keys: keys.remove(&d.id).unwrap_or_default(),
                };
                objects += detail.objects.len() as u64;
                points += detail.points.unwrap_or(0);
                cache_keys += detail
                    .redis_keys
                    .values()
                    .map(|k| k.len() as u64)
                    .sum::<u64>();
                items.push(PlannedItem {
                    id: d.id.clone(),
                    action: Action::Delete,
                    detail: Some(json!(detail)),
                });
            }
            plan.push(Batch {
                target: s.collection.clone(),
                reason: reason.clone(),
                items,
                shard: None,
            })
            .map_err(SweepError::spool)?;
        }
        plan.dependents = self
            .dependents_caps(&collections, objects, points, cache_keys)
            .await?;
        plan.notes.push(format!(
            "{} documents expired with {objects} objects, {points} points and {cache_keys} cache keys; {} documents held by sessions active since {}",
            expired.len(),
            held.len(),
            humantime::format_rfc3339_seconds(active_since)
        ));
        if s.reconcile {
            self.reconcile(&mut plan, &collections, ctx.now).await;
        }
        Ok((
            plan,
            DocumentsRun {
                active_since,
                collections,
            },
        ))
    }

    async fn apply_inner(
        &self,
        run: &DocumentsRun,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> Result<Applied, SweepError> {
        let s = &self.settings;
        let ids: Vec<String> = batch.items.iter().map(|i| i.id.clone()).collect();
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
            match item.detail.clone().map(serde_json::from_value::<Detail>) {
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
            self.delete_objects(ids, details, shared),
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
        let (mut failed_keys, mut deleted) = (HashSet::new(), 0);
        for chunk in doomed.chunks(1000) {
            let answer = s3.delete_objects(chunk).await?;
            deleted += answer.deleted.len() as u64;
            failed_keys.extend(answer.unanswered);
            failed_keys.extend(answer.errors.into_iter().map(|(k, _)| k));
        }
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
