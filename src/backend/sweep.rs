//! What a backend's sweeper implements, and the errors that decide a run's outcome.
//!
//! A sweeper only plans and applies batches; the engine owns the safety model
//! around it (cap, dry-run, audit, shutdown between batches, run records), so no backend can
//! skip a step.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::BackendError;
use crate::plan::{Batch, Cap, Plan};
use crate::resource::{Priority, Resource};

/// What a sweeper plans and applies with.
#[derive(Debug, Clone)]
pub struct SweepContext {
    /// "Now" for every age computation of this run.
    pub now: SystemTime,
    /// The TTL in force (normal, or the pressure TTL for HIGH / CRITICAL tasks).
    pub ttl: Duration,
    /// A dry run: the plan is all that counts, and planning must not change the store
    /// either (no index is created).
    pub dry_run: bool,
    /// The priority of the task that asked for the run, if any.
    pub priority: Option<Priority>,
    /// The deletion cap: planners stop collecting past [`Cap::planning_limit`].
    pub cap: Cap,
    /// The daemon's shutdown: long planning passes stop early when it fires.
    pub cancel: CancellationToken,
    /// Where plans spool their batches (the audit log's directory).
    pub spool_dir: PathBuf,
}

impl SweepContext {
    /// An empty plan for `resource` with this run's TTL, spooled in `spool_dir`.
    pub fn new_plan(&self, resource: Resource) -> Result<Plan, SweepError> {
        Plan::new(resource, self.ttl, &self.spool_dir).map_err(SweepError::spool)
    }

    /// The pacing pause between two batches: `pause`, cut short by shutdown. A zero pause
    /// does not wait at all (a zero `sleep` would still wait for the timer's next tick,
    /// a millisecond, which adds up over thousands of batches).
    pub async fn pause(&self, pause: Duration) {
        if pause.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = self.cancel.cancelled() => {}
        }
    }
}

/// What applying one batch did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Items removed.
    pub deleted: u64,
    /// Items given a TTL.
    pub expired: u64,
    /// Bytes the deleted items held, as measured (S3 object sizes from the listing, Redis
    /// MEMORY USAGE as each key is unlinked); 0 where the store cannot say (Qdrant points).
    pub bytes_freed: u64,
    /// Items left alone because they changed since planning (a key that got a TTL or was
    /// read, an object already gone).
    pub skipped: Vec<String>,
    /// Items the backend reported as failed.
    pub failed: Vec<String>,
    /// Backend facts worth reporting (bytes freed, ...).
    pub notes: Vec<String>,
    /// The batch stopped partway on this error: what is counted above was applied, the
    /// items not reached are in `failed`. The engine audits the batch as it is, then ends
    /// the run with the error (so a deletion is never left out of the audit log).
    pub interrupted: Option<SweepError>,
}

/// Why a sweep could not go on. The variant decides the run's outcome.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SweepError {
    /// The store failed: the run is `failed`, the worker backs off.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The reference source (MongoDB) errored or timed out: nothing may be deleted, the run
    /// is `failed_closed`.
    #[error("reference source unavailable, nothing deleted: {0}")]
    ReferenceUnavailable(String),
    /// The plan spool (a local file) failed: `failed`, nothing applied.
    #[error("plan spool: {0}")]
    Spool(String),
    /// The sweep refuses to run as configured (empty reference collection, unindexed
    /// filter on a large collection, ...): `failed_closed`.
    #[error("refused: {0}")]
    Refused(String),
}

impl SweepError {
    /// A spool I/O error.
    pub fn spool(e: std::io::Error) -> Self {
        SweepError::Spool(e.to_string())
    }
}

/// A backend's sweep: plan everything, then apply batch by batch. Backends implement it
/// with plain `async fn`s; the engine holds them as [`Sweeper`] objects, which every `Sweep`
/// is.
///
/// What one run learns while planning (the servers it planned on, when it first checked
/// references, counters for its report) is its [`Sweep::Run`]: `plan` returns it, `apply`
/// and `finish` receive it. A sweeper itself holds only what outlives a run (clients,
/// settings), so two runs could never mix their state.
pub trait Sweep: Send + Sync + 'static {
    /// The resource it sweeps.
    const RESOURCE: Resource;

    /// The state of one run, from its plan to its finish.
    type Run: Send + Sync + 'static;

    /// Plans the run: reads the store (and reference source), deletes nothing.
    fn plan(
        &self,
        ctx: &SweepContext,
    ) -> impl Future<Output = Result<(Plan, Self::Run), SweepError>> + Send;

    /// Applies one batch of the plan. Must re-check what can have changed since planning
    /// (a Redis key that got a TTL) and be idempotent (a batch may be retried).
    fn apply(
        &self,
        run: &Self::Run,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> impl Future<Output = Result<Applied, SweepError>> + Send;

    /// After the last batch of an applied run: facts for the run report (bytes freed, ...).
    fn finish(
        &self,
        _run: &Self::Run,
        _ctx: &SweepContext,
    ) -> impl Future<Output = Vec<String>> + Send {
        async { Vec::new() }
    }

    /// The items of a batch that was about to be applied when the janitor stopped (an
    /// intent without an outcome in the audit log) that the store still holds as planned:
    /// a key or object still there, a key still without TTL. The others were applied.
    fn unapplied(
        &self,
        batch: &Batch,
    ) -> impl Future<Output = Result<Vec<String>, SweepError>> + Send;
}

/// A plan and the run that applies it, as [`Sweeper::plan`] gives them.
pub type Planned<'a> = (Plan, Box<dyn PlannedRun + 'a>);

/// A [`Sweep`] as a trait object: planning gives a [`PlannedRun`] that applies the plan.
pub trait Sweeper: Send + Sync + 'static {
    /// The resource it sweeps.
    fn resource(&self) -> Resource;

    /// See [`Sweep::plan`].
    fn plan<'a>(&'a self, ctx: &'a SweepContext) -> BoxFuture<'a, Result<Planned<'a>, SweepError>>;

    /// See [`Sweep::unapplied`].
    fn unapplied<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Vec<String>, SweepError>>;
}

/// One planned run of a [`Sweeper`]: its state bound to the sweeper that made it.
pub trait PlannedRun: Send + Sync {
    /// See [`Sweep::apply`].
    fn apply<'a>(
        &'a self,
        batch: &'a Batch,
        ctx: &'a SweepContext,
    ) -> BoxFuture<'a, Result<Applied, SweepError>>;

    /// See [`Sweep::finish`].
    fn finish<'a>(&'a self, ctx: &'a SweepContext) -> BoxFuture<'a, Vec<String>>;
}

struct Bound<'a, T: Sweep> {
    sweeper: &'a T,
    run: T::Run,
}

impl<T: Sweep> PlannedRun for Bound<'_, T> {
    fn apply<'a>(
        &'a self,
        batch: &'a Batch,
        ctx: &'a SweepContext,
    ) -> BoxFuture<'a, Result<Applied, SweepError>> {
        Box::pin(self.sweeper.apply(&self.run, batch, ctx))
    }

    fn finish<'a>(&'a self, ctx: &'a SweepContext) -> BoxFuture<'a, Vec<String>> {
        Box::pin(self.sweeper.finish(&self.run, ctx))
    }
}

impl<T: Sweep> Sweeper for T {
    fn resource(&self) -> Resource {
        T::RESOURCE
    }

    fn plan<'a>(&'a self, ctx: &'a SweepContext) -> BoxFuture<'a, Result<Planned<'a>, SweepError>> {
        Box::pin(async move {
            let (plan, run) = Sweep::plan(self, ctx).await?;
            let bound: Box<dyn PlannedRun + 'a> = Box::new(Bound { sweeper: self, run });
            Ok((plan, bound))
        })
    }

    fn unapplied<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Vec<String>, SweepError>> {
        Box::pin(Sweep::unapplied(self, batch))
    }
}
