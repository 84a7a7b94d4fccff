//! Wiring: the daemon's shared state, its loops, and its lifetime.
//!
//! [`run`] takes the settings, the admin listener and a shutdown future (as mini-redis's
//! server does), so tests start a daemon on port 0 and stop it when they like. On shutdown
//! it stops new work, lets each worker finish its current batch (up to
//! `JANITOR_SHUTDOWN_TIMEOUT`), then syncs the audit log.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::Alerts;
use crate::audit::{AuditError, AuditLog};
use crate::backend::BackendError;
use crate::backend::qdrant::sweep::QdrantSweeper;
use crate::backend::redis::sweep::RedisSweeper;
use crate::backend::s3::sweep::S3Sweeper;
use crate::backend::{mongo::Mongo, qdrant::Qdrant, redis::Redis, s3::S3};
use crate::config::Settings;
use crate::dedup::DedupIndex;
use crate::engine::{Engine, RunRequest};
use crate::leader::{Leadership, LeaseWorker, Role};
use crate::metrics::Metrics;
use crate::monitor::{Monitor, Snapshot};
use crate::queue::CleanupQueue;
use crate::resource::{Priority, Resource};
use crate::runs::{Outcome, Trigger};
use crate::sweep::Sweeper;
use crate::systemd::Notifier;
use crate::worker::{self, Registry, Schedule, Worker};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A backend's settings cannot make a client.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The audit log cannot be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The admin API cannot listen.
    #[error("admin API: {0}")]
    Listen(std::io::Error),
}

/// The clients of the configured backends.
#[derive(Clone, Default)]
pub struct Backends {
    /// Redis, if configured.
    pub redis: Option<Redis>,
    /// Qdrant, if configured.
    pub qdrant: Option<Qdrant>,
    /// S3, if configured.
    pub s3: Option<S3>,
    /// MongoDB, if configured.
    pub mongo: Option<Mongo>,
}

impl Backends {
    /// Builds a client for every configured backend. Nothing is contacted yet: a server
    /// that is down degrades its loop later instead of stopping the daemon here.
    pub async fn new(settings: &Settings) -> Result<Self, BackendError> {
        let timeout = settings.scheduling.backend_timeout;
        Ok(Self {
            redis: settings
                .redis
                .as_ref()
                .map(|c| Redis::new(c, timeout))
                .transpose()?,
            qdrant: settings
                .qdrant
                .as_ref()
                .map(|c| Qdrant::connect(c, timeout))
                .transpose()?,
            s3: settings.s3.as_ref().map(|c| {
                S3::connect(c, timeout).with_measure_cache(settings.s3_sweep.measure_cache)
            }),
            mongo: match &settings.mongo {
                Some(c) => Some(Mongo::connect(c, timeout).await?),
                None => None,
            },
        })
    }

    /// Pings every configured backend: (name, result), disabled ones as `None`.
    pub async fn ping_all(&self) -> Vec<(&'static str, Option<Result<(), BackendError>>)> {
        vec![
            ("redis", opt(self.redis.as_ref().map(|b| b.ping())).await),
            ("qdrant", opt(self.qdrant.as_ref().map(|b| b.ping())).await),
            ("s3", opt(self.s3.as_ref().map(|b| b.ping())).await),
            ("mongodb", opt(self.mongo.as_ref().map(|b| b.ping())).await),
        ]
    }

    /// The sweepers of the configured backends.
    pub fn sweepers(&self, settings: &Settings, metrics: &Metrics) -> Vec<Arc<dyn Sweeper>> {
        let mut sweepers: Vec<Arc<dyn Sweeper>> = Vec::new();
        if let Some(redis) = &self.redis {
            sweepers.push(Arc::new(RedisSweeper::new(
                redis.clone(),
                settings.redis_sweep.clone(),
                Some(metrics.clone()),
            )));
        }
        if let Some(qdrant) = &self.qdrant {
            sweepers.push(Arc::new(QdrantSweeper::new(
                qdrant.clone(),
                self.mongo.clone(),
                settings.qdrant_sweep.clone(),
                settings.retention.ttl(Resource::Qdrant),
                settings.budgets.qdrant_points,
            )));
        }
        if let Some(s3) = &self.s3 {
            sweepers.push(Arc::new(S3Sweeper::new(
                s3.clone(),
                self.mongo.clone(),
                settings.s3_sweep.clone(),
                Some(metrics.clone()),
            )));
        }
        sweepers
    }
}

/// The serde name of a unit enum value (`busy`, `standby`).
fn json_name(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn opt<T>(f: Option<impl Future<Output = T>>) -> Option<T> {
    match f {
        Some(f) => Some(f.await),
        None => None,
    }
}

/// Everything the loops and the API share.
pub struct State {
    /// The settings.
    pub settings: Arc<Settings>,
    /// Backend clients.
    pub backends: Backends,
    /// Runs sweeps.
    pub engine: Engine,
    /// Pending cleanup tasks.
    pub queue: Mutex<CleanupQueue>,
    /// Latest measurements.
    pub snapshot: Snapshot,
    /// Worker statuses.
    pub workers: Registry,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Wakes a resource's loop early.
    pub wake: [Arc<Notify>; 3],
    /// Set once every worker is started.
    pub started: AtomicBool,
    /// Tracks spawned runs so shutdown waits for them.
    pub tracker: TaskTracker,
    /// Fires at shutdown.
    pub cancel: CancellationToken,
    /// The SHA-256 dedup index (needs MongoDB).
    pub dedup: Option<Arc<DedupIndex>>,
    /// The leader lease, when replicas elect one sweeper.
    pub leadership: Option<Arc<Leadership>>,
    /// The alert channel.
    pub alerts: Alerts,
}

impl State {
    /// Builds the state: backend clients, audit log, engine.
    pub async fn new(settings: Arc<Settings>) -> Result<Arc<Self>, StartError> {
        let alerts = Alerts::log_only(&settings.alerts, &settings.leader.instance);
        Self::with_alerts(settings, alerts).await
    }

    /// The state, raising alerts through `alerts`.
    pub async fn with_alerts(
        settings: Arc<Settings>,
        alerts: Alerts,
    ) -> Result<Arc<Self>, StartError> {
        let backends = Backends::new(&settings).await?;
        let audit = Arc::new(AuditLog::open(&settings.safety.audit_log)?);
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();
        let mut engine = Engine::new(
            settings.clone(),
            backends.sweepers(&settings, &metrics),
            audit,
            metrics.clone(),
            cancel.clone(),
        )
        .with_alerts(alerts.clone());
        let leadership = match (&backends.redis, settings.leader.enabled) {
            (Some(redis), true) => Some(Arc::new(Leadership::new(redis.clone(), &settings.leader))),
            _ => None,
        };
        if let Some(lease) = &leadership {
            engine = engine.with_fence(lease.clone());
        }
        let snapshot = Snapshot::new(|key| match key {
            "redis" => backends.redis.is_some(),
            "qdrant" => backends.qdrant.is_some(),
            "minio" => backends.s3.is_some(),
            _ => backends.mongo.is_some(),
        });
        let dedup = backends.mongo.as_ref().map(|m| {
            let timeout = settings.scheduling.backend_timeout;
            Arc::new(DedupIndex::new(m, settings.dedup.clone(), timeout))
        });
        Ok(Arc::new(State {
            queue: Mutex::new(CleanupQueue::new(settings.scheduling.queue_capacity)),
            settings,
            backends,
            engine,
            snapshot,
            workers: Registry::default(),
            metrics,
            wake: Default::default(),
            started: AtomicBool::new(false),
            tracker: TaskTracker::new(),
            cancel,
            dedup,
            leadership,
            alerts,
        }))
    }

    /// Whether this replica may sweep: it holds the lease, or there is no election.
    pub fn may_sweep(&self) -> bool {
        self.leadership.as_ref().is_none_or(|l| l.is_leader())
    }

    /// `leader` or `standby` (always `leader` without an election).
    pub fn role(&self) -> Role {
        if self.may_sweep() {
            Role::Leader
        } else {
            Role::Standby
        }
    }

    /// One line for systemd's STATUS=: role, each worker's state, each store's priority.
    pub fn status_line(&self) -> String {
        let workers: Vec<String> = self
            .workers
            .snapshot()
            .iter()
            .map(|w| format!("{} {}", w.name, json_name(&w.state)))
            .collect();
        let stores: Vec<String> = self
            .snapshot
            .all()
            .iter()
            .filter_map(|(k, s)| {
                let u = s.usage.as_ref()?;
                Some(format!(
                    "{k} {:.0}% {}",
                    u.usage_fraction * 100.0,
                    s.priority
                ))
            })
            .collect();
        format!(
            "{}; {}; {}",
            json_name(&self.role()),
            workers.join(", "),
            if stores.is_empty() {
                "not measured yet".to_string()
            } else {
                stores.join(", ")
            }
        )
    }

    /// The queue, locked.
    pub fn lock_queue(&self) -> MutexGuard<'_, CleanupQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A resource's sweep loop.
pub struct SweepLoop {
    resource: Resource,
    state: Arc<State>,
}

impl Worker for SweepLoop {
    fn name(&self) -> &str {
        self.resource.name()
    }

    fn interval(&self) -> Duration {
        self.state.settings.sweep_interval(self.resource)
    }

    fn pressure(&self) -> Priority {
        self.state.snapshot.priority(self.resource)
    }

    fn standby(&self) -> bool {
        !self.state.may_sweep()
    }

    async fn work(&mut self, _cancel: &CancellationToken) -> Result<String, String> {
        // under pressure the loop itself uses the pressure TTL
        let priority = Some(self.pressure()).filter(|p| p.is_pressure());
        let req = RunRequest {
            id: None,
            resource: self.resource,
            trigger: Trigger::Schedule,
            dry_run: false,
            priority,
        };
        let r = self.state.engine.run(req, SystemTime::now()).await.record;
        let mut summary = format!(
            "{} {}: deleted {}, expired {}, planned {}",
            r.id,
            r.outcome.as_str(),
            r.deleted,
            r.expired,
            r.planned_deletions
        );
        // refusals are shown in /api/workers, not only in the run report
        for w in &r.warnings {
            summary.push_str("; WARNING: ");
            summary.push_str(w);
        }
        match r.outcome {
            Outcome::Succeeded | Outcome::DryRun | Outcome::Cancelled | Outcome::NotLeader => {
                Ok(summary)
            }
            _ => Err(format!("{summary}: {}", r.message.unwrap_or_default())),
        }
    }
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    settings: Arc<Settings>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let notifier = Arc::new(Notifier::from_env());
    let alerts_cancel = CancellationToken::new();
    let (alerts, delivery) = Alerts::start(
        &settings.alerts,
        &settings.leader.instance,
        settings.scheduling.backend_timeout,
        alerts_cancel.clone(),
    );
    let delivery = delivery.map(tokio::spawn);
    let state = State::with_alerts(settings.clone(), alerts).await?;
    for (name, enabled) in [
        ("redis", state.backends.redis.is_some()),
        ("qdrant", state.backends.qdrant.is_some()),
        ("s3", state.backends.s3.is_some()),
        ("mongodb", state.backends.mongo.is_some()),
    ] {
        if !enabled {
            tracing::info!(backend = name, "backend disabled: no URL configured");
        }
    }
    let schedule = Schedule {
        jitter_fraction: settings.scheduling.jitter_fraction,
        backoff_max: settings.scheduling.backoff_max,
    };
    let tracker = state.tracker.clone();
    let cancel = state.cancel.clone();
    if let Some(dedup) = state.dedup.clone() {
        // checked (or created) once at startup; a register re-checks while it is not present
        tracker.spawn(async move {
            let status = dedup.ensure_index().await;
            tracing::info!(status = ?status, "dedup unique index");
        });
    }
    if let Some(lease) = state.leadership.clone() {
        let wake = state.wake.clone();
        let elected = move || wake.iter().for_each(|w| w.notify_one());
        tracker.spawn(worker::run(
            LeaseWorker::new(lease, elected),
            state.workers.clone(),
            schedule,
            Arc::new(Notify::new()),
            cancel.clone(),
        ));
    }
    tracker.spawn(worker::run(
        Monitor::new(state.clone()),
        state.workers.clone(),
        schedule,
        Arc::new(Notify::new()),
        cancel.clone(),
    ));
    for resource in Resource::ALL {
        if state.engine.enabled(resource) {
            let w = SweepLoop {
                resource,
                state: state.clone(),
            };
            let wake = state.wake[resource.index()].clone();
            tracker.spawn(worker::run(
                w,
                state.workers.clone(),
                schedule,
                wake,
                cancel.clone(),
            ));
        }
    }
    let api = crate::api::router(state.clone());
    let server_cancel = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api)
            .with_graceful_shutdown(async move { server_cancel.cancelled().await })
            .await
    });
    state.started.store(true, Ordering::SeqCst);
    tracing::info!(addr = %settings.admin.addr, instance = %settings.leader.instance, "janitor started");
    notifier.ready(&state.status_line());
    let (watchdog, watchdog_state) = (notifier.clone(), state.clone());
    let watchdog_cancel = cancel.clone();
    tokio::spawn(async move {
        let status = move || watchdog_state.status_line();
        watchdog.watchdog_loop(status, watchdog_cancel).await;
    });

    shutdown.await;
    tracing::info!("shutting down: finishing current batches");
    notifier.stopping();
    cancel.cancel();
    tracker.close();
    let deadline = settings.shutdown_timeout;
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?deadline, "workers still busy at the shutdown deadline; exiting");
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    if let Some(lease) = &state.leadership {
        lease.release().await;
    }
    alerts_cancel.cancel();
    if let Some(delivery) = delivery {
        let _ = tokio::time::timeout(Duration::from_secs(2), delivery).await;
    }
    if let Err(e) = state.engine.audit().sync() {
        tracing::error!(error = %e, "audit log sync failed");
    }
    tracing::info!("stopped");
    Ok(())
}
