//! The Qdrant sweeper: a TTL for vectors, on an indexed timestamp payload, in bounded batches.
//!
//! Qdrant has no TTL; its maintainers recommend deleting by filter on an indexed timestamp,
//! in batches, and warn that an unindexed filtered delete scans every point and can stall
//! writes. So, per collection:
//!
//! 1. the timestamp field's payload index is checked (a suitable type: integer, float or
//!    datetime). Missing, it is created when allowed (and waited for); otherwise a
//!    collection above `JANITOR_QDRANT_UNINDEXED_MAX_POINTS` is refused with a warning, and a
//!    smaller one is swept with a scan;
//! 2. the points older than the TTL are planned as time windows of about
//!    `JANITOR_QDRANT_BATCH_SIZE` points, each deleted by its range filter (see
//!    [`windows`]); with `JANITOR_QDRANT_AUDIT_IDS=true`, or on a small collection scanned
//!    without an index, their ids are scrolled in pages of that size instead (ids only: no
//!    payload, no vectors);
//! 3. optionally, orphan vectors: points past the grace period whose document id has no
//!    document in MongoDB (any MongoDB error fails the run closed, like the S3 sweep).
//!
//! A batch of ids is applied with a delete whose filter is `has_id(batch) AND timestamp
//! older than the cutoff`, so the server re-checks every point atomically: a point refreshed
//! since planning survives, and the filter always has an id list to start from. Orphans are
//! checked in MongoDB once more before their delete. A batch's deletions are measured by
//! asking for its ids afterwards (the points still there are reported as skipped, by id),
//! and each collection is counted exactly before and after the run.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use qdrant_client::qdrant::{Condition, CreateFieldIndexCollectionBuilder, Filter, PointId};

use super::orphans::Orphans;
use super::timestamp::{self, Encoding, IndexKind};
use super::windows::{self, Deleted, Span, Window};
use super::{Qdrant, id_text, point_id};
use crate::backend::BackendError;
use crate::backend::mongo::Mongo;
use crate::backend::sweep::{Applied, Sweep, SweepContext, SweepError};
use crate::config::QdrantSweep;
use crate::plan::{Batch, Plan, PlannedItem};
use crate::resource::Resource;

/// What planning decided for one collection, used again by its batches.
#[derive(Debug, Clone)]
struct Target {
    encoding: Encoding,
    /// Points older than this are past the TTL.
    ttl_cutoff: SystemTime,
    /// Orphan candidates are in `[ttl_cutoff, grace_cutoff)`; `None`: no orphan pass.
    grace_cutoff: Option<SystemTime>,
    /// Points when planning (exact count).
    before: u64,
}

/// The Qdrant sweeper.
pub struct QdrantSweeper {
    qdrant: Qdrant,
    mongo: Option<Mongo>,
    settings: QdrantSweep,
    /// RAG_SESSION_TTL_HOURS: per-collection TTLs scale with the run's TTL against it.
    normal_ttl: Duration,
    budget_points: u64,
}

/// One Qdrant run: the collections it planned, by name.
pub struct QdrantRun {
    targets: BTreeMap<String, Target>,
}

impl QdrantSweeper {
    /// A sweeper over `qdrant`; orphan checks use `mongo` (without it, the orphan pass is
    /// refused). `normal_ttl` is RAG_SESSION_TTL_HOURS, `budget_points` MAX_QDRANT_POINTS.
    pub fn new(
        qdrant: Qdrant,
        mongo: Option<Mongo>,
        settings: QdrantSweep,
        normal_ttl: Duration,
        budget_points: u64,
    ) -> Self {
        Self {
            qdrant,
            mongo,
            settings,
            normal_ttl,
            budget_points,
        }
    }

    /// The orphan check, when the orphan pass is configured.
    fn orphans(&self) -> Option<Orphans<'_>> {
        Orphans::configured(&self.qdrant, self.mongo.as_ref(), &self.settings)
    }

    /// The collection's TTL for this run: its own, scaled like the run's TTL under pressure.
    fn ttl_of(&self, collection: &str, ctx: &SweepContext) -> Duration {
        match self.settings.ttl_of(collection) {
            Some(own) => own.mul_f64(ctx.ttl.as_secs_f64() / self.normal_ttl.as_secs_f64()),
            None => ctx.ttl,
        }
    }

    async fn plan_inner(&self, ctx: &SweepContext) -> Result<(Plan, QdrantRun), SweepError> {
        let mut plan = ctx.new_plan(Resource::Qdrant)?;
        let mut targets = BTreeMap::new();
        let names = if self.settings.collections.is_empty() {
            self.qdrant.collections().await?
        } else {
            self.settings
                .collections
                .iter()
                .map(|(c, _)| c.clone())
                .collect()
        };
        let orphans =
            Orphans::source(&self.qdrant, self.mongo.as_ref(), &self.settings, &mut plan).await?;
        for name in names {
            if ctx.cancel.is_cancelled() {
                plan.notes
                    .push("planning stopped by shutdown: partial plan".into());
                break;
            }
            let planned = self
                .plan_collection(ctx, &name, orphans.as_ref(), (&mut plan, &mut targets))
                .await;
            match planned {
                Ok(()) => {}
                Err(SweepError::Backend(BackendError::NotFound { .. })) => {
                    targets.remove(&name);
                    plan.notes
                        .push(format!("collection {name}: not found (deleted?); skipped"));
                }
                Err(e) => return Err(e),
            }
            if plan.deletions() > ctx.cap.planning_limit() {
                plan.notes.push(format!(
                    "planning stopped at {} points: above the cap",
                    plan.deletions()
                ));
                break;
            }
        }
        plan.store_items = targets.values().map(|t| t.before).sum();
        Ok((plan, QdrantRun { targets }))
    }

    /// Checks the collection's timestamp index; returns the encoding and whether the field
    /// is indexed, or `None` when the collection is refused or has nothing to judge (said in
    /// the plan).
    async fn check_index(
        &self,
        ctx: &SweepContext,
        name: &str,
        plan: &mut Plan,
    ) -> Result<Option<(Encoding, bool)>, SweepError> {
        let field = &self.settings.timestamp_field;
        let info = self.qdrant.info(name).await?;
        let points = info.points_count.unwrap_or(0);
        let index = info
            .payload_schema
            .get(field)
            .map(|s| IndexKind::of(s.data_type));
        let Some(sample) = self.qdrant.sample(name, field).await? else {
            plan.notes.push(format!(
                "collection {name}: no point has a {field} payload; nothing to judge"
            ));
            return Ok(None);
        };
        let encoding = match timestamp::resolve(self.settings.timestamp_format, index, &sample) {
            Ok(e) => e,
            Err(why) => {
                plan.warnings.push(format!(
                    "collection {name} refused: {field} cannot serve as a timestamp: {why}"
                ));
                return Ok(None);
            }
        };
        if index.is_some() {
            return Ok(Some((encoding, true)));
        }
        let small = points <= self.settings.unindexed_max_points;
        if self.settings.create_index && !ctx.dry_run {
            let kind = timestamp::index_type(encoding, &sample);
            self.qdrant
                .call(|| {
                    let req = CreateFieldIndexCollectionBuilder::new(name, field, kind).wait(true);
                    self.qdrant.client().create_field_index(req)
                })
                .await?;
            let kind_name = kind.as_str_name().trim_start_matches("FieldType");
            plan.notes.push(format!(
                "collection {name}: created a payload index on {field} ({})",
                kind_name.to_lowercase()
            ));
        } else if small {
            plan.notes.push(format!(
                "collection {name}: no payload index on {field}; {points} points, at most \
                 JANITOR_QDRANT_UNINDEXED_MAX_POINTS, so it is scanned"
            ));
        } else {
            let why = if self.settings.create_index {
                "a dry run does not create the index the real run would create"
            } else {
                "create the index, or set JANITOR_QDRANT_CREATE_INDEX=true"
            };
            plan.warnings.push(format!(
                "collection {name} refused: no payload index on {field} and {points} points \
                 (more than JANITOR_QDRANT_UNINDEXED_MAX_POINTS={}): a filter on it would scan \
                 every point and can stall writes; {why}",
                self.settings.unindexed_max_points
            ));
            return Ok(None);
        }
        let indexed = self.settings.create_index && !ctx.dry_run;
        Ok(Some((encoding, indexed)))
    }

    async fn plan_collection(
        &self,
        ctx: &SweepContext,
        name: &str,
        orphans: Option<&Orphans<'_>>,
        (plan, targets): (&mut Plan, &mut BTreeMap<String, Target>),
    ) -> Result<(), SweepError> {
        let Some((encoding, indexed)) = self.check_index(ctx, name, plan).await? else {
            return Ok(());
        };
        let field = &self.settings.timestamp_field;
        let ttl = self.ttl_of(name, ctx);
        let ttl_cutoff = ctx.now.checked_sub(ttl).unwrap_or(SystemTime::UNIX_EPOCH);
        let grace_cutoff = orphans
            .and_then(|_| ctx.now.checked_sub(self.settings.orphan_grace))
            .filter(|g| *g > ttl_cutoff);
        let before = self.qdrant.count(name, None).await?;
        let target = Target {
            encoding,
            ttl_cutoff,
            grace_cutoff,
            before,
        };
        targets.insert(name.to_string(), target.clone());

        let expired = Filter::must([timestamp::between(field, encoding, None, ttl_cutoff)]);
        let reason = format!(
            "{field} older than the TTL ({})",
            humantime::format_duration(Duration::from_secs(ttl.as_secs()))
        );
        let mut note = format!("collection {name}: {before} points, ");
        note += &if indexed && !self.settings.audit_ids {
            let span = Span {
                field: field.clone(),
                encoding,
                oldest: None,
                until: ttl_cutoff,
                total: self.qdrant.count(name, Some(expired)).await?,
                per_window: u64::from(self.settings.batch_size),
            };
            self.plan_windows(ctx, name, span, &reason, plan).await?
        } else {
            self.plan_ids(ctx, name, &expired, &reason, plan).await?
        };
        if let (Some(orphans), Some(grace_cutoff)) = (orphans, grace_cutoff) {
            let range = timestamp::between(field, encoding, Some(ttl_cutoff), grace_cutoff);
            let (orphaned, without) = orphans.plan(ctx, name, Filter::must([range]), plan).await?;
            note.push_str(&format!(", {orphaned} orphans"));
            if without > 0 {
                note.push_str(&format!(
                    " ({without} points past the grace have no document id: not orphan-checked)"
                ));
            }
        }
        plan.notes.push(note);
        Ok(())
    }

    /// Plans the expired points of `name` as time windows (see [`windows`]); says how many
    /// and in how many windows.
    async fn plan_windows(
        &self,
        ctx: &SweepContext,
        name: &str,
        mut span: Span,
        reason: &str,
        plan: &mut Plan,
    ) -> Result<String, SweepError> {
        let total = span.total;
        let mut note = format!("{total} past the TTL");
        if total == 0 {
            return Ok(note);
        }
        let windows = if plan.deletions() + total > ctx.cap.planning_limit() {
            // refused by the cap anyway: one window says how many, without cutting it
            note.push_str(" (above the cap: not cut into windows)");
            let all = Window {
                field: span.field.clone(),
                encoding: span.encoding,
                from: None,
                until: span.until,
            };
            vec![(all, total)]
        } else {
            let oldest = self.qdrant.oldest(name, &span.field).await?;
            span.oldest = oldest.and_then(|v| timestamp::instant(&v, span.encoding));
            windows::plan(&self.qdrant, name, &span).await?
        };
        note.push_str(&format!(", in {} time windows", windows.len()));
        for (window, count) in windows {
            let batch = Batch {
                target: name.to_string(),
                reason: reason.to_string(),
                items: vec![window.item(name, count)],
                shard: None,
                detail: None,
            };
            plan.push(batch).map_err(SweepError::spool)?;
        }
        Ok(note)
    }

    /// Plans the expired points of `name` by id (JANITOR_QDRANT_AUDIT_IDS, or a collection
    /// scanned without an index); says how many.
    async fn plan_ids(
        &self,
        ctx: &SweepContext,
        name: &str,
        expired: &Filter,
        reason: &str,
        plan: &mut Plan,
    ) -> Result<String, SweepError> {
        let mut offset = None;
        let mut planned = 0u64;
        loop {
            let (points, next) = self
                .qdrant
                .scroll(name, expired, &[], self.settings.batch_size, offset)
                .await?;
            let ids: Vec<String> = points
                .iter()
                .filter_map(|p| p.id.as_ref().and_then(id_text))
                .collect();
            planned += ids.len() as u64;
            plan.push_deletes(name, reason, ids)
                .map_err(SweepError::spool)?;
            offset = next;
            if offset.is_none() || plan.deletions() > ctx.cap.planning_limit() {
                break;
            }
        }
        Ok(format!("{planned} past the TTL, listed by id"))
    }

    async fn apply_inner(
        &self,
        run: &QdrantRun,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> Result<Applied, SweepError> {
        let name = batch.target.as_str();
        let target = run.targets.get(name).cloned().ok_or_else(|| {
            SweepError::Refused(format!("collection {name} was not planned in this run"))
        })?;
        match self.apply_to(name, &target, batch).await {
            Err(SweepError::Backend(BackendError::NotFound { .. })) => Ok(Applied {
                skipped: batch.items.iter().map(|i| i.id.clone()).collect(),
                notes: vec![format!("collection {name} disappeared during the run")],
                ..Applied::default()
            }),
            other => {
                ctx.pause(self.settings.batch_pause).await;
                other
            }
        }
    }

    async fn apply_to(
        &self,
        name: &str,
        target: &Target,
        batch: &Batch,
    ) -> Result<Applied, SweepError> {
        if let [item] = batch.items.as_slice()
            && let Some(window) = Window::of(item)
        {
            let window = window.map_err(|e| {
                SweepError::Refused(format!("unreadable time window {}: {e}", item.id))
            })?;
            return self.apply_window(name, target, &window, item).await;
        }
        let s = &self.settings;
        let field = &s.timestamp_field;
        let ids: Vec<PointId> = batch.items.iter().map(|i| point_id(&i.id)).collect();
        let planned = ids.len() as u64;
        // a scroll over the batch's ids returns at most that many points
        let limit = u32::try_from(ids.len()).unwrap_or(u32::MAX).max(1);
        // orphans are checked in MongoDB once more: a document written since planning
        // saves its points
        let mut orphans = Vec::new();
        if let (Some(grace_cutoff), Some(check)) = (target.grace_cutoff, self.orphans()) {
            let range = timestamp::between(
                field,
                target.encoding,
                Some(target.ttl_cutoff),
                grace_cutoff,
            );
            orphans = check.recheck(name, &ids, range).await?;
        }
        let expired = Filter::must([
            Condition::has_id(ids.clone()),
            timestamp::between(field, target.encoding, None, target.ttl_cutoff),
        ]);
        self.qdrant.delete(name, expired).await?;
        if let Some(grace_cutoff) = target.grace_cutoff.filter(|_| !orphans.is_empty()) {
            let orphaned = Filter::must([
                Condition::has_id(orphans.iter().map(|o| point_id(o)).collect::<Vec<_>>()),
                timestamp::between(field, target.encoding, None, grace_cutoff),
            ]);
            self.qdrant.delete(name, orphaned).await?;
        }
        // measured, not assumed: the batch's points still there after the delete are the
        // ones the server-side re-check saved (usually none, so the answer is empty)
        let batch = Filter::must([Condition::has_id(ids)]);
        let (left, _) = self.qdrant.scroll(name, &batch, &[], limit, None).await?;
        let skipped: Vec<String> = left
            .iter()
            .filter_map(|p| p.id.as_ref().and_then(id_text))
            .collect();
        Ok(Applied {
            deleted: planned - skipped.len() as u64,
            skipped,
            ..Applied::default()
        })
    }

    async fn apply_window(
        &self,
        name: &str,
        target: &Target,
        window: &Window,
        item: &PlannedItem,
    ) -> Result<Applied, SweepError> {
        // the window read back from the spool must be one this run planned
        let field = &self.settings.timestamp_field;
        if window.until > target.ttl_cutoff
            || &window.field != field
            || window.encoding != target.encoding
        {
            return Err(SweepError::Refused(format!(
                "time window {} does not match the run's cutoff, field or encoding",
                item.id
            )));
        }
        let planned = item.count();
        Ok(
            match windows::delete(&self.qdrant, name, window, planned).await? {
                Deleted::Points(n) => Applied {
                    deleted: n,
                    ..Applied::default()
                },
                Deleted::Grown(n) => Applied {
                    skipped: vec![item.id.clone()],
                    notes: vec![format!(
                        "collection {name}: time window {} holds {n} points, {planned} planned \
                     (written since planning with old timestamps?): left alone, the cap \
                     weighed {planned}; the next run plans it again",
                        item.id
                    )],
                    ..Applied::default()
                },
            },
        )
    }

    async fn finish_inner(&self, run: &QdrantRun, ctx: &SweepContext) -> Vec<String> {
        let mut notes = Vec::new();
        for (name, t) in &run.targets {
            match self.qdrant.count(name, None).await {
                Ok(after) => notes.push(format!(
                    "collection {name}: {} points before the run, {after} after ({} fewer; exact counts, the application may write meanwhile)",
                    t.before,
                    t.before as i64 - after as i64
                )),
                Err(e) => notes.push(format!("collection {name}: count after the run failed: {e}")),
            }
        }
        if ctx.priority.is_some_and(|p| p.is_pressure()) {
            match self.qdrant.measure(self.budget_points, &self.settings.timestamp_field, self.settings.timestamp_format, ctx.now).await {
                Ok((usage, _)) if usage.total_items > self.budget_points => notes.push(format!(
                    "points budget still exceeded by {} ({} points, MAX_QDRANT_POINTS={}) after the pressure TTL; live points are not deleted: raise the budget or shorten the TTL",
                    usage.total_items - self.budget_points,
                    usage.total_items,
                    self.budget_points
                )),
                Ok((usage, _)) => notes.push(format!(
                    "points within budget after the pressure TTL: {} of {}",
                    usage.total_items, self.budget_points
                )),
                Err(e) => notes.push(format!("points budget check failed: {e}")),
            }
        }
        notes
    }
}

impl Sweep for QdrantSweeper {
    const RESOURCE: Resource = Resource::Qdrant;

    type Run = QdrantRun;

    async fn plan(&self, ctx: &SweepContext) -> Result<(Plan, QdrantRun), SweepError> {
        self.plan_inner(ctx).await
    }

    async fn apply(
        &self,
        run: &QdrantRun,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> Result<Applied, SweepError> {
        self.apply_inner(run, batch, ctx).await
    }

    /// Points of the batch still in its collection (a deleted collection holds none).
    async fn unapplied(&self, batch: &Batch) -> Result<Vec<String>, SweepError> {
        if let [item] = batch.items.as_slice()
            && let Some(window) = Window::of(item)
        {
            let window = window.map_err(|e| {
                SweepError::Refused(format!("unreadable time window {}: {e}", item.id))
            })?;
            // a window is applied once nothing is left in it
            return match self
                .qdrant
                .count(&batch.target, Some(window.filter()))
                .await
            {
                Ok(0) | Err(BackendError::NotFound { .. }) => Ok(Vec::new()),
                Ok(_) => Ok(vec![item.id.clone()]),
                Err(e) => Err(e.into()),
            };
        }
        let ids: Vec<PointId> = batch.items.iter().map(|i| point_id(&i.id)).collect();
        let limit = u32::try_from(ids.len()).unwrap_or(u32::MAX).max(1);
        let filter = Filter::must([Condition::has_id(ids)]);
        match self
            .qdrant
            .scroll(&batch.target, &filter, &[], limit, None)
            .await
        {
            Ok((left, _)) => Ok(left
                .iter()
                .filter_map(|p| p.id.as_ref().and_then(id_text))
                .collect()),
            Err(BackendError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    async fn finish(&self, run: &QdrantRun, ctx: &SweepContext) -> Vec<String> {
        self.finish_inner(run, ctx).await
    }
}
