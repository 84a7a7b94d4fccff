//! Planning a document pass: which documents expire and what goes with each.
//!
//! The pass holds only the expired documents' ids and the cache keys found for them (both
//! bounded by the cap): the documents themselves, their objects, the reference check and
//! the point counts are read a batch at a time and spooled with the plan, so memory does
//! not grow with the number of documents.

use std::time::SystemTime;

use serde_json::json;

use super::{Detail, DocumentsRun, DocumentsSweeper, cascade, reconcile, select, step};
use crate::backend::s3::delete::Throttle;
use crate::backend::sweep::{SweepContext, SweepError};
use crate::plan::{Action, Batch, Dependent, ItemDetail, Plan, PlannedItem};
use crate::resource::Resource;

/// What every batch of a pass plans against.
struct Pass<'a> {
    ctx: &'a SweepContext,
    cutoff: SystemTime,
    collections: &'a [String],
    keys: &'a cascade::FoundKeys,
    reason: &'a str,
}

/// What a pass deletes in each store.
#[derive(Default)]
struct Totals {
    documents: u64,
    objects: u64,
    points: u64,
    cache_keys: u64,
}

impl DocumentsSweeper {
    pub(super) async fn plan_inner(
        &self,
        ctx: &SweepContext,
    ) -> Result<(Plan, DocumentsRun), SweepError> {
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
        let ids = select::expired_ids(&self.mongo, s, cutoff, &held, limit)
            .await
            .map_err(step("document query"))?;
        if ids.len() as u64 > limit {
            plan.notes.push(format!(
                "planning stopped at {} documents: above the cap",
                ids.len()
            ));
        }
        let keys = match &self.dependents.redis {
            Some(redis) => cascade::redis_keys(redis, &s.redis_keys, &ids).await?,
            None => cascade::FoundKeys::default(),
        };
        let collections = self.collections().await?;
        let reason = format!(
            "created before {}, status {}, in no session active since {}",
            humantime::format_rfc3339_seconds(cutoff),
            s.final_statuses.join("/"),
            humantime::format_rfc3339_seconds(active_since)
        );
        let mut totals = Totals::default();
        let pass = Pass {
            ctx,
            cutoff,
            collections: &collections,
            keys: &keys,
            reason: &reason,
        };
        let size = s.batch_size.max(1);
        for (n, chunk) in ids.chunks(size).enumerate() {
            if let Some(batch) = self.plan_batch(&pass, chunk, n * size, &mut totals).await? {
                plan.push(batch).map_err(SweepError::spool)?;
            }
        }
        plan.dependents = self.dependents_caps(&collections, &totals).await?;
        plan.notes.push(format!(
            "{} documents expired with {} objects, {} points and {} cache keys; {} documents held by sessions active since {}",
            totals.documents,
            totals.objects,
            totals.points,
            totals.cache_keys,
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
                throttle: tokio::sync::Mutex::new(Throttle::new(
                    self.dependents.s3_limits.max_inflight,
                    self.dependents.s3_limits.max_rps,
                )),
            },
        ))
    }

    /// One batch of the plan: the documents among `chunk` (the pass's ids from `first`) that
    /// are still expired, each with its objects (but those another document references),
    /// its points (counted per document by a dry run, per batch otherwise) and its keys.
    async fn plan_batch(
        &self,
        pass: &Pass<'_>,
        chunk: &[String],
        first: usize,
        totals: &mut Totals,
    ) -> Result<Option<Batch>, SweepError> {
        let (s, collections) = (&self.settings, pass.collections);
        let docs = select::expired_among(&self.mongo, s, pass.cutoff, chunk)
            .await
            .map_err(step("document query"))?;
        if docs.is_empty() {
            return Ok(None);
        }
        if self.dependents.s3.is_none() && docs.iter().any(|d| !d.objects.is_empty()) {
            return Err(SweepError::Refused(
                "expired documents reference objects but S3 is not configured: their files would be left behind".into(),
            ));
        }
        let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
        let all: Vec<String> = docs.iter().flat_map(|d| d.objects.clone()).collect();
        let shared = self
            .mongo
            .referenced_by_others(&s.collection, &s.key_fields, &all, &select::id_values(&ids))
            .await
            .map_err(step("reference check"))?;
        let (per_doc, batch_points) = match &self.dependents.qdrant {
            Some((q, _)) if pass.ctx.dry_run => {
                let counts = cascade::points(q, collections, &s.qdrant_field, &ids).await?;
                let sum = counts.values().sum();
                (Some(counts), Some(sum))
            }
            // counted for the cap and the apply-time check: the delete goes by filter
            Some((q, _)) => (
                None,
                Some(cascade::count_points(q, collections, &s.qdrant_field, &ids).await?),
            ),
            None => (None, None),
        };
        totals.points += batch_points.unwrap_or(0);
        let mut items = Vec::with_capacity(docs.len());
        for d in docs {
            let Ok(at) = chunk.binary_search(&d.id) else {
                continue;
            };
            let (kept, go): (Vec<String>, Vec<String>) =
                d.objects.into_iter().partition(|o| shared.contains(o));
            let detail = Detail {
                objects: go,
                kept_objects: kept,
                points: per_doc.as_ref().map(|c| c.get(&d.id).copied().unwrap_or(0)),
                redis_keys: pass.keys.of(first + at),
            };
            totals.documents += 1;
            totals.objects += detail.objects.len() as u64;
            totals.cache_keys += detail
                .redis_keys
                .values()
                .map(|k| k.len() as u64)
                .sum::<u64>();
            items.push(PlannedItem {
                id: d.id,
                action: Action::Delete,
                detail: Some(ItemDetail::Json(json!(detail))),
            });
        }
        Ok(Some(Batch {
            target: s.collection.clone(),
            reason: pass.reason.to_string(),
            items,
            shard: None,
            detail: batch_points.map(|n| json!({ "points": n })),
        }))
    }

    /// What a pass deletes in each dependent store, with that store's size, so the cap of
    /// each store holds inside the cascade too (an unknown S3 size, when no whole-bucket
    /// listing was made yet, leaves the absolute cap).
    async fn dependents_caps(
        &self,
        collections: &[String],
        totals: &Totals,
    ) -> Result<Vec<Dependent>, SweepError> {
        let mut out = Vec::new();
        if let Some(s3) = &self.dependents.s3 {
            out.push(Dependent {
                resource: Resource::S3,
                deletions: totals.objects,
                store_items: s3.last_listed_objects(),
            });
        }
        if let Some((q, _)) = &self.dependents.qdrant {
            let all = cascade::total_points(q, collections)
                .await
                .map_err(step("counting points"))?;
            out.push(Dependent {
                resource: Resource::Qdrant,
                deletions: totals.points,
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
                deletions: totals.cache_keys,
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
}
