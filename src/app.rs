//! Wiring: builds the parts, hands each one the narrow handles it needs, and runs them.
//!
//! The daemon's shape, as [`serve`] wires it:
//! - each swept store's [`SweepTimer`] and the [`Monitor`] submit cleanup tasks to the
//!   [`Scheduler`] (the API's cleanup does too);
//! - the scheduler's dispatcher starts them by priority, one run per store, through the
//!   [`Engine`], which plans and applies through the backends' sweepers and audits every
//!   batch.
//!
//! [`run`] takes the settings, the admin listener and a shutdown future (as mini-redis's
//! server does); [`serve`] takes a ready [`Janitor`], so tests run the daemon in-process on
//! port 0, with their own sweepers and gauge, and stop it when they like. On shutdown it
//! stops new work, lets each run finish its current batch (up to
//! `JANITOR_SHUTDOWN_TIMEOUT`), then syncs the audit log.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::Alerts;
use crate::api::ApiContext;
use crate::audit::{AuditError, AuditLog};
use crate::backend::{BackendError, Backends};
use crate::breakdown::cache::BreakdownCache;
use crate::config::Settings;
use crate::dedup::DedupIndex;
use crate::drift::DriftBoard;
use crate::engine::Engine;
use crate::history::History;
use crate::leader::{LeaderHandle, Leadership, LeaseWorker};
use crate::metrics::Metrics;
use crate::monitor::{Gauge, Monitor, StoreGauge};
use crate::report::{self, ReportSource};
use crate::resource::{PerResource, Resource};
use crate::runs::RunLog;
use crate::scheduler::Scheduler;
use crate::snapshot::Snapshot;
use crate::systemd::Notifier;
use crate::timers::SweepTimer;
use crate::worker::{self, Registry, Schedule};

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

/// The parts of a janitor, built from the settings (or from a test's own sweepers and gauge).
pub struct Janitor {
    /// The settings.
    pub settings: Arc<Settings>,
    /// The backend clients (for `janitor check` and tests).
    pub backends: Backends,
    /// Runs sweeps.
    pub engine: Arc<Engine>,
    /// Measures the stores for the monitor.
    pub gauge: Arc<dyn Gauge>,
    /// Which stores are configured.
    pub configured: PerResource<bool>,
    /// Prometheus.
    pub metrics: Metrics,
    /// The leader election, if any.
    pub leader: LeaderHandle,
    /// The alert channel.
    pub alerts: Alerts,
    /// The SHA-256 dedup index (needs MongoDB).
    pub dedup: Option<Arc<DedupIndex>>,
    /// Drift between the stores, as the passes measure it.
    pub drift: DriftBoard,
    /// Runs, measurements and alerts across restarts.
    pub history: History,
    /// Fires at shutdown (the engine stops between batches on it).
    pub cancel: CancellationToken,
}

impl Janitor {
    /// The parts for `settings`, alerts only logged.
    pub async fn new(settings: Arc<Settings>) -> Result<Self, StartError> {
        let alerts = Alerts::log_only(&settings.alerts, &settings.leader.instance);
        Self::with_alerts(settings, alerts).await
    }

    /// The parts for `settings`, raising alerts through `alerts`: backend clients (nothing
    /// is contacted yet), audit log, engine, leader lease, dedup index.
    pub async fn with_alerts(settings: Arc<Settings>, alerts: Alerts) -> Result<Self, StartError> {
        let backends = Backends::new(&settings).await?;
        let history = History::open(&settings.history);
        let alerts = alerts.with_sink(Arc::new(history.clone()));
        let runs = Arc::new(RunLog::with_sink(Arc::new(history.clone())));
        let audit = Arc::new(AuditLog::open(&settings.safety.audit_log)?);
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();
        let drift = DriftBoard::default();
        let leadership = match (&backends.redis, settings.leader.enabled) {
            (Some(redis), true) => Some(Arc::new(Leadership::new(redis.clone(), &settings.leader))),
            _ => None,
        };
        let mut engine = Engine::new(
            settings.clone(),
            backends.sweepers(&settings, &metrics, &drift),
            audit,
            metrics.clone(),
            cancel.clone(),
        )
        .with_alerts(alerts.clone())
        .with_run_log(runs);
        if let Some(lease) = &leadership {
            engine = engine.with_fence(lease.clone());
        }
        let dedup = backends.mongo.as_ref().map(|m| {
            let timeout = settings.scheduling.backend_timeout;
            Arc::new(DedupIndex::new(m, settings.dedup.clone(), timeout))
        });
        Ok(Self {
            configured: PerResource::from_fn(|r| backends.configured(r)),
            gauge: Arc::new(StoreGauge::new(
                backends.clone(),
                settings.clone(),
                metrics.clone(),
            )),
            backends,
            engine: Arc::new(engine),
            settings,
            metrics,
            leader: LeaderHandle::new(leadership),
            alerts,
            dedup,
            drift,
            history,
            cancel,
        })
    }
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    settings: Arc<Settings>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let alerts_cancel = CancellationToken::new();
    let (alerts, delivery) = Alerts::start(
        &settings.alerts,
        &settings.leader.instance,
        settings.scheduling.backend_timeout,
        alerts_cancel.clone(),
    );
    let delivery = delivery.map(tokio::spawn);
    let janitor = Janitor::with_alerts(settings, alerts).await?;
    serve(janitor, listener, shutdown).await;
    alerts_cancel.cancel();
    if let Some(delivery) = delivery {
        let _ = tokio::time::timeout(Duration::from_secs(2), delivery).await;
    }
    Ok(())
}

/// Runs `janitor`'s loops, dispatcher and admin API on `listener` until `shutdown`.
pub async fn serve(janitor: Janitor, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let Janitor {
        settings,
        backends,
        engine,
        gauge,
        configured,
        metrics,
        leader,
        alerts,
        dedup,
        drift,
        history,
        cancel,
    } = janitor;
    let notifier = Arc::new(Notifier::from_env());
    for (resource, enabled) in configured.iter() {
        if resource.is_measured() && !enabled {
            tracing::info!(backend = %resource, "backend disabled: no URL configured");
        }
    }
    let schedule = Schedule {
        jitter_fraction: settings.scheduling.jitter_fraction,
        backoff_max: settings.scheduling.backoff_max,
    };
    let tracker = TaskTracker::new();
    let workers = Registry::default();
    let snapshot = Arc::new(Snapshot::new(&configured));
    let scheduler = Arc::new(Scheduler::new(
        settings.scheduling.queue_capacity,
        settings.scheduling.tasks_per_cycle,
        metrics.clone(),
    ));
    let swept = engine.swept();
    if let Some(dedup) = dedup.clone() {
        // checked (or created) once at startup; a register re-checks while it is not present
        tracker.spawn(async move {
            let status = dedup.ensure_index().await;
            tracing::info!(status = ?status, "dedup unique index");
        });
    }

    // the sources of work: one timer per swept store, and the monitor
    let mut wakes = Vec::new();
    for resource in Resource::SWEPT.into_iter().filter(|r| swept[*r]) {
        let Some(interval) = settings.sweep_interval(resource) else {
            continue;
        };
        let timer = SweepTimer::new(
            resource,
            interval,
            scheduler.clone(),
            snapshot.clone(),
            leader.clone(),
        );
        let wake = Arc::new(Notify::new());
        wakes.push(wake.clone());
        tracker.spawn(worker::run(
            timer,
            workers.clone(),
            schedule,
            wake,
            cancel.clone(),
        ));
    }
    if let Some(lease) = leader.lease().cloned() {
        // becoming leader wakes the timers at once
        let elected = move || wakes.iter().for_each(|w| w.notify_one());
        tracker.spawn(worker::run(
            LeaseWorker::new(lease, elected),
            workers.clone(),
            schedule,
            Arc::new(Notify::new()),
            cancel.clone(),
        ));
    }
    let monitor = Monitor {
        gauge,
        snapshot: snapshot.clone(),
        scheduler: scheduler.clone(),
        swept: swept.clone(),
        thresholds: settings.thresholds,
        interval: settings.intervals.monitoring,
        leader: leader.clone(),
        metrics: metrics.clone(),
        alerts: alerts.clone(),
        workers: workers.clone(),
        worker_failures_alert: settings.alerts.worker_failures,
        history: history.clone(),
    };
    tracker.spawn(worker::run(
        monitor,
        workers.clone(),
        schedule,
        Arc::new(Notify::new()),
        cancel.clone(),
    ));
    // the one consumer of the queue
    tracker.spawn(
        scheduler
            .clone()
            .dispatch(engine.clone(), tracker.clone(), cancel.clone()),
    );

    let walkers = crate::breakdown::Walkers::new(backends, &settings);
    let breakdown = Arc::new(BreakdownCache::new(walkers, cancel.clone()));
    let report = ReportSource {
        base: report::Inputs::from_settings(&settings, &configured, &swept),
        drift: drift.clone(),
        breakdown: Some(breakdown.clone()),
    };
    // the daily report (seed 002: 2 AM)
    let daily = report::daily::Daily {
        history: history.clone(),
        source: report.clone(),
        alerts,
        hour: settings.history.report_hour,
        tz: settings.history.tz(),
        dir: settings.history.report_dir.clone(),
    };
    tracker.spawn(daily.run(cancel.clone()));
    let started = Arc::new(AtomicBool::new(false));
    let api = crate::api::router(ApiContext {
        admin: settings.admin.clone(),
        scheduler,
        snapshot: snapshot.clone(),
        workers: workers.clone(),
        metrics,
        leader: leader.clone(),
        dedup,
        audit: engine.audit().clone(),
        drift,
        swept,
        started: started.clone(),
        started_at: std::time::Instant::now(),
        breakdown,
        history,
        report,
    });
    let server_cancel = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api)
            .with_graceful_shutdown(async move { server_cancel.cancelled().await })
            .await
    });
    started.store(true, Ordering::SeqCst);
    tracing::info!(addr = %settings.admin.addr, instance = %settings.leader.instance, "janitor started");
    let status = {
        let (leader, workers, snapshot) = (leader.clone(), workers.clone(), snapshot.clone());
        move || status_line(&leader, &workers, &snapshot)
    };
    notifier.ready(&status());
    let (watchdog, watchdog_cancel) = (notifier.clone(), cancel.clone());
    tokio::spawn(async move { watchdog.watchdog_loop(status, watchdog_cancel).await });

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
    if let Some(lease) = leader.lease() {
        lease.release().await;
    }
    if let Err(e) = engine.audit().sync() {
        tracing::error!(error = %e, "audit log sync failed");
    }
    tracing::info!("stopped");
}

/// One line for systemd's STATUS=: role, each worker's state, each store's priority.
fn status_line(leader: &LeaderHandle, workers: &Registry, snapshot: &Snapshot) -> String {
    let workers: Vec<String> = workers
        .snapshot()
        .iter()
        .map(|w| format!("{} {}", w.name, json_name(&w.state)))
        .collect();
    let stores: Vec<String> = snapshot
        .all()
        .iter()
        .filter_map(|(r, s)| {
            let fraction = s.usage.as_ref()?.usage_fraction?;
            Some(format!(
                "{} {:.0}% {}",
                r.api_key(),
                fraction * 100.0,
                s.priority
            ))
        })
        .collect();
    format!(
        "{}; {}; {}",
        json_name(&leader.role()),
        workers.join(", "),
        if stores.is_empty() {
            "not measured yet".to_string()
        } else {
            stores.join(", ")
        }
    )
}

/// The serde name of a unit enum value (`busy`, `standby`).
fn json_name(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
