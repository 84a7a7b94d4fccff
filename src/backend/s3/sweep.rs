//! The S3 sweeper: orphan objects, found from the bucket, proven unreferenced in MongoDB.
//!
//! The seed walked MongoDB documents, so objects no document mentions (failed uploads,
//! deleted documents, dedup losers) were never found. This sweep starts from the bucket:
//! ListObjectsV2 page by page (streamed), and an object is deleted only when both hold:
//!
//! 1. its LastModified is older than the TTL and older than the grace floor
//!    (`JANITOR_S3_GRACE_HOURS`: an upload whose document is not written yet survives);
//! 2. no document references its key, checked with one `$in` query per page of candidates.
//!
//! It fails closed: any MongoDB error or timeout ends the run with nothing deleted
//! (`failed_closed`), and an empty or missing reference collection next to a non-empty bucket
//! is refused as misconfiguration. Before a delete batch the references are checked once
//! more, so a document written since planning saves its object, unless the run's first
//! reference check is younger than `JANITOR_S3_RECHECK_AFTER_SECONDS` (30 s): then every
//! check of the plan is that fresh, and repeating it would only double the queries (the
//! issue's budget is one query per 1000 old objects). Deletion uses DeleteObjects
//! in chunks of at most 1000 keys (AWS's limit); per-key errors are retried with backoff, then
//! recorded. On a versioned bucket DeleteObjects without version ids removes the current
//! version only (S3 keeps the older versions behind a delete marker).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::dangling::DanglingMerge;
use super::delete::{self, Throttle};
use super::{Listing, S3};
use crate::backend::BackendError;
use crate::backend::mongo::Mongo;
use crate::backend::sweep::{Applied, Sweep, SweepContext, SweepError};
use crate::config::S3Sweep;
use crate::metrics::Metrics;
use crate::plan::{Batch, Plan, PlannedItem};
use crate::resource::Resource;

const NAME: &str = "s3";
/// AWS and MinIO refuse DeleteObjects with more keys than this.
pub const DELETE_OBJECTS_MAX: usize = 1000;

/// Splits keys into DeleteObjects requests of at most [`DELETE_OBJECTS_MAX`].
pub fn delete_chunks(keys: &[String]) -> std::slice::Chunks<'_, String> {
    keys.chunks(DELETE_OBJECTS_MAX)
}

/// The S3 sweeper.
pub struct S3Sweeper {
    s3: S3,
    mongo: Option<Mongo>,
    settings: S3Sweep,
    metrics: Option<Metrics>,
    /// Where documents whose object is missing are reported.
    drift: Option<crate::drift::DriftBoard>,
}

/// One S3 run, from its plan to its finish.
#[derive(Debug)]
pub struct S3Run {
    /// When the run's first reference check was sent.
    first_check: Option<Instant>,
    /// Requests whose references were checked again / not again before their delete.
    rechecked: AtomicU64,
    not_rechecked: AtomicU64,
    /// The run's DeleteObjects concurrency (it learns across the run's batches).
    throttle: tokio::sync::Mutex<Throttle>,
}

impl S3Run {
    fn new(settings: &S3Sweep) -> Self {
        Self {
            first_check: None,
            rechecked: AtomicU64::new(0),
            not_rechecked: AtomicU64::new(0),
            throttle: tokio::sync::Mutex::new(Throttle::new(
                settings.max_inflight,
                settings.max_rps,
            )),
        }
    }
}

impl S3Sweeper {
    /// A sweeper over `s3`, checking references in `mongo` (without it, every run is refused).
    pub fn new(s3: S3, mongo: Option<Mongo>, settings: S3Sweep, metrics: Option<Metrics>) -> Self {
        Self {
            s3,
            mongo,
            settings,
            metrics,
            drift: None,
        }
    }

    /// Reports documents whose object is missing on `drift` too.
    pub fn with_drift(mut self, drift: crate::drift::DriftBoard) -> Self {
        self.drift = Some(drift);
        self
    }

    fn mongo(&self) -> Result<&Mongo, SweepError> {
        self.mongo.as_ref().ok_or_else(|| {
            SweepError::Refused(
                "MONGODB_URI is not set: without a reference source no object can be proven unreferenced".into(),
            )
        })
    }

    fn protected(&self, key: &str) -> bool {
        self.settings
            .protect
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    }

    async fn referenced(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, SweepError> {
        self.mongo()?
            .referenced(
                &self.settings.ref_collection,
                &self.settings.ref_fields,
                keys,
            )
            .await
            .map_err(|e| SweepError::ReferenceUnavailable(e.to_string()))
    }

    /// Refuses an empty reference collection next to a non-empty bucket.
    async fn check_references_exist(&self, plan: &mut Plan) -> Result<(), SweepError> {
        let mongo = self.mongo()?;
        let coll = &self.settings.ref_collection;
        let unavailable = |e: BackendError| SweepError::ReferenceUnavailable(e.to_string());
        let documents = mongo.document_count(coll).await.map_err(unavailable)?;
        if documents == 0 && !self.settings.allow_empty_references {
            let listed = self
                .s3
                .client()
                .list_objects_v2()
                .bucket(self.s3.bucket())
                .max_keys(1)
                .send();
            let any = crate::backend::timed(NAME, self.s3.timeout(), listed)
                .await?
                .key_count()
                .unwrap_or(0)
                > 0;
            if any {
                return Err(SweepError::Refused(format!(
                    "reference collection {coll} is empty or missing while the bucket holds objects: \
                     taken for misconfiguration (JANITOR_S3_ALLOW_EMPTY_REFERENCES=true to sweep anyway)"
                )));
            }
        }
        let unindexed = mongo
            .unindexed(coll, &self.settings.ref_fields)
            .await
            .map_err(unavailable)?;
        for field in unindexed {
            plan.notes.push(format!(
                "no index on {coll}.{field}: every reference check scans the collection (create one)"
            ));
        }
        Ok(())
    }

    async fn plan_inner(&self, ctx: &SweepContext) -> Result<(Plan, S3Run), SweepError> {
        let mut run = S3Run::new(&self.settings);
        let mut plan = ctx.new_plan(Resource::S3)?;
        self.check_references_exist(&mut plan).await?;
        let min_age = ctx.ttl.max(self.settings.grace);
        let cutoff = ctx
            .now
            .checked_sub(min_age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let reason = format!(
            "no document references it, last modified over {} ago",
            humantime::format_duration(Duration::from_secs(min_age.as_secs()))
        );
        let whole_bucket = [String::new()];
        let prefixes = if self.settings.prefixes.is_empty() {
            &whole_bucket[..]
        } else {
            &self.settings.prefixes[..]
        };
        let (mut listed, mut old, mut planned) = (0u64, 0u64, 0u64);
        let (mut dangling, mut examples) = (0u64, Vec::new());
        let (mut listing, mut complete) = (Listing::default(), true);
        let unavailable =
            |e: mongodb::error::Error| SweepError::ReferenceUnavailable(e.to_string());
        'prefixes: for prefix in prefixes {
            let (mongo, coll) = (self.mongo()?, &self.settings.ref_collection);
            let mut merge = DanglingMerge::open(mongo, coll, &self.settings.ref_fields, prefix)
                .await
                .map_err(unavailable)?;
            let target = if prefix.is_empty() {
                "all".to_string()
            } else {
                prefix.clone()
            };
            // old keys awaiting their reference check, unreferenced ones awaiting a batch
            let (mut pending, mut ready): (Vec<(String, u64)>, Vec<PlannedItem>) =
                (Vec::new(), Vec::new());
            let mut pages = self.s3.list_pages(prefix);
            loop {
                if ctx.cancel.is_cancelled() {
                    plan.notes
                        .push("planning stopped by shutdown: partial plan".into());
                    complete = false;
                    break 'prefixes;
                }
                let page = match pages.recv().await {
                    Some(Ok(Some(page))) => page,
                    Some(Ok(None)) => {
                        merge.finish().await.map_err(unavailable)?;
                        break;
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => {
                        return Err(BackendError::request(
                            NAME,
                            "listing ended without its last page",
                        )
                        .into());
                    }
                };
                let mut candidates = Vec::new();
                for object in page.contents() {
                    listed += 1;
                    listing.add(object);
                    let Some(key) = object.key() else { continue };
                    merge.observe(key).await.map_err(unavailable)?;
                    let modified = object
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok());
                    // no LastModified, or newer than the cutoff: not provably old
                    if self.protected(key) || modified.is_none_or(|m| m > cutoff) {
                        continue;
                    }
                    candidates.push((key.to_string(), object.size().unwrap_or(0).max(0) as u64));
                }
                old += candidates.len() as u64;
                // reference checks go out 1000 keys at a time, across pages
                pending.extend(candidates);
                while pending.len() >= DELETE_OBJECTS_MAX {
                    let keys: Vec<(String, u64)> = pending.drain(..DELETE_OBJECTS_MAX).collect();
                    planned += self
                        .plan_unreferenced(
                            (&mut plan, &mut run),
                            (&target, &reason),
                            keys,
                            &mut ready,
                            false,
                        )
                        .await?;
                }
                if planned > ctx.cap.planning_limit() {
                    plan.notes.push(format!(
                        "planning stopped at {planned} objects: above the cap"
                    ));
                    complete = false;
                    break 'prefixes;
                }
            }
            planned += self
                .plan_unreferenced(
                    (&mut plan, &mut run),
                    (&target, &reason),
                    pending,
                    &mut ready,
                    true,
                )
                .await?;
            dangling += merge.count;
            examples.extend(merge.examples);
        }
        if let Some(m) = &self.metrics {
            m.record_dangling_references(dangling);
        }
        if let (Some(drift), true) = (&self.drift, complete) {
            let mut missing = crate::drift::DriftCount::counting(ctx.now);
            missing.add(dangling, examples.iter().cloned());
            drift.update(|d| d.missing_objects = missing);
        }
        if dangling > 0 {
            examples.truncate(20);
            plan.notes.push(format!(
                "{dangling} dangling references (documents whose object is missing; reported, never deleted), e.g. {}",
                examples.join(", ")
            ));
        }
        if complete && self.settings.prefixes.is_empty() {
            // the whole bucket was listed: the monitor can use it instead of listing again
            self.s3.remember(listing);
        }
        plan.store_items = listed;
        plan.notes.push(format!(
            "{listed} objects listed, {old} old enough, {planned} unreferenced"
        ));
        Ok((plan, run))
    }

    /// Checks `keys` against the references (one query); the unreferenced ones join `ready`,
    /// which is spooled in batches of exactly [`DELETE_OBJECTS_MAX`] (one DeleteObjects each),
    /// and, with `last`, the remainder too. Returns how many were planned.
    async fn plan_unreferenced(
        &self,
        (plan, run): (&mut Plan, &mut S3Run),
        (target, reason): (&str, &str),
        sized: Vec<(String, u64)>,
        ready: &mut Vec<PlannedItem>,
        last: bool,
    ) -> Result<u64, SweepError> {
        run.first_check.get_or_insert_with(Instant::now);
        let keys: Vec<String> = sized.iter().map(|(k, _)| k.clone()).collect();
        let referenced = self.referenced(&keys).await?;
        let before = ready.len();
        ready.extend(
            sized
                .into_iter()
                .filter(|(k, _)| !referenced.contains(k))
                .map(|(id, bytes)| PlannedItem::delete_sized(id, bytes)),
        );
        let planned = (ready.len() - before) as u64;
        // a batch (one audit intent) is as many DeleteObjects as may be in flight at once
        let batch_keys = DELETE_OBJECTS_MAX * self.settings.max_inflight;
        while ready.len() >= batch_keys || (last && !ready.is_empty()) {
            let take = ready.len().min(batch_keys);
            let items: Vec<PlannedItem> = ready.drain(..take).collect();
            let batch = Batch {
                target: target.to_string(),
                reason: reason.to_string(),
                items,
                shard: None,
                detail: None,
            };
            plan.push(batch).map_err(SweepError::spool)?;
        }
        Ok(planned)
    }

    async fn apply_inner(&self, run: &S3Run, batch: &Batch) -> Result<Applied, SweepError> {
        let keys: Vec<String> = batch.items.iter().map(|i| i.id.clone()).collect();
        let sizes: HashMap<&str, u64> = batch
            .items
            .iter()
            .filter_map(|i| Some((i.id.as_str(), i.bytes()?)))
            .collect();
        // a document written since planning saves its object: each request's keys are
        // checked again right before it goes, unless every check of this plan is still
        // fresh (they all happened after the first one)
        let check = |chunk: Vec<String>| async move {
            let fresh = run
                .first_check
                .is_some_and(|t| t.elapsed() < self.settings.recheck_after);
            if fresh {
                run.not_rechecked.fetch_add(1, Ordering::Relaxed);
                return Ok((chunk, Vec::new()));
            }
            run.rechecked.fetch_add(1, Ordering::Relaxed);
            let referenced = self.referenced(&chunk).await?;
            Ok::<_, SweepError>(chunk.into_iter().partition(|k| !referenced.contains(k)))
        };
        let mut throttle = run.throttle.lock().await;
        let (done, kept) = delete::delete_all(
            &self.s3,
            keys,
            DELETE_OBJECTS_MAX,
            &mut throttle,
            self.metrics.as_ref(),
            check,
        )
        .await?;
        Ok(Applied {
            deleted: done.deleted.len() as u64,
            bytes_freed: done
                .deleted
                .iter()
                .filter_map(|k| sizes.get(k.as_str()))
                .sum(),
            skipped: kept,
            failed: done.failed,
            // still throttled after every try: the run fails (and its timer backs off) rather
            // than reading as a success that deleted nothing
            interrupted: done.error.map(SweepError::from).or_else(|| {
                (done.throttled_out > 0).then(|| {
                    SweepError::from(BackendError::Throttled {
                        backend: NAME,
                        message: format!(
                            "{} keys still throttled after {} tries: left for the next run",
                            done.throttled_out,
                            delete::KEY_TRIES
                        ),
                    })
                })
            }),
            ..Applied::default()
        })
    }

    /// `key` if the object exists (HEAD), `None` if it does not.
    async fn still_there(&self, key: String) -> Result<Option<String>, SweepError> {
        let head = self
            .s3
            .client()
            .head_object()
            .bucket(self.s3.bucket())
            .key(&key)
            .send();
        let timeout = self.s3.timeout();
        match tokio::time::timeout(timeout, head).await {
            Ok(Ok(_)) => Ok(Some(key)),
            Ok(Err(e)) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Ok(Err(e)) => Err(BackendError::request(NAME, e).into()),
            Err(_) => Err(BackendError::Timeout {
                backend: NAME,
                after: timeout,
            }
            .into()),
        }
    }
}

impl Sweep for S3Sweeper {
    const RESOURCE: Resource = Resource::S3;
    type Run = S3Run;

    async fn plan(&self, ctx: &SweepContext) -> Result<(Plan, S3Run), SweepError> {
        self.plan_inner(ctx).await
    }

    async fn apply(
        &self,
        run: &S3Run,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> Result<Applied, SweepError> {
        let _ = ctx;
        self.apply_inner(run, batch).await
    }

    /// Objects still there (a HEAD each, 16 at a time).
    async fn unapplied(&self, batch: &Batch) -> Result<Vec<String>, SweepError> {
        use futures::{StreamExt, TryStreamExt};
        let keys: Vec<String> = batch.items.iter().map(|i| i.id.clone()).collect();
        let found: Vec<Option<String>> = futures::stream::iter(keys)
            .map(|key| self.still_there(key))
            .buffered(16)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn finish(&self, run: &S3Run, _ctx: &SweepContext) -> Vec<String> {
        let (again, fresh) = (
            run.rechecked.load(Ordering::Relaxed),
            run.not_rechecked.load(Ordering::Relaxed),
        );
        if again + fresh == 0 {
            return Vec::new();
        }
        let throttle = run.throttle.lock().await;
        if let Some(m) = &self.metrics {
            m.record_s3_throttles(throttle.throttles());
        }
        vec![
            format!(
                "references checked again before {again} of {} DeleteObjects requests (not again while the plan's checks were under {} s old)",
                again + fresh,
                self.settings.recheck_after.as_secs()
            ),
            format!(
                "DeleteObjects: up to {} allowed in flight (of {}), {} throttle signals",
                throttle.peak(),
                self.settings.max_inflight,
                throttle.throttles()
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_objects_requests_never_exceed_a_thousand_keys() {
        for n in [0usize, 1, 999, 1000, 1001, 2500, 10_000] {
            let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
            let chunks: Vec<&[String]> = delete_chunks(&keys).collect();
            assert!(
                chunks
                    .iter()
                    .all(|c| !c.is_empty() && c.len() <= DELETE_OBJECTS_MAX),
                "{n}"
            );
            assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), n);
            assert_eq!(chunks.len(), n.div_ceil(DELETE_OBJECTS_MAX));
            let rejoined: Vec<&String> = chunks.iter().flat_map(|c| c.iter()).collect();
            assert_eq!(
                rejoined,
                keys.iter().collect::<Vec<_>>(),
                "order and content kept"
            );
        }
    }
}
