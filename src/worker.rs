//! Workers: the daemon's loops, each doing one unit of work at a time.
//!
//! In the spirit of Garage's `Worker`: a worker has a name and does one unit of work per
//! call ([`Worker::work`]); the runner ([`run`]) decides when the next call happens and
//! publishes a [`WorkerStatus`] that the admin API shows. A failing unit never crashes the
//! daemon: the worker goes `failed` and backs off exponentially (capped), then tries again.
//!
//! Intervals follow load (seed 000): a store's timer at HIGH fires four times as often, at
//! CRITICAL back to back (a short pause) until its usage falls below HIGH.
//! All timing uses tokio time, so tests drive loops with paused time instead of sleeping.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::resource::Priority;

/// Pause between back-to-back runs at CRITICAL.
pub const CRITICAL_PAUSE: Duration = Duration::from_secs(5);
/// First backoff after a failure; doubles with each further failure.
pub const BACKOFF_START: Duration = Duration::from_secs(2);

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Doing a unit of work.
    Busy,
    /// Waiting for its next interval.
    Idle,
    /// Waiting a shortened interval: its resource is under pressure (HIGH / CRITICAL).
    Throttled,
    /// Its last unit failed; backing off before the next try.
    Failed,
    /// Another replica holds the leader lease: this one does not sweep.
    Standby,
}

/// What the admin API shows of a worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    /// The worker's name.
    pub name: String,
    /// Its state.
    pub state: WorkerState,
    /// Units done since start (successful or not).
    pub runs: u64,
    /// Failures in a row (0 after a success).
    pub consecutive_failures: u32,
    /// The last error, kept until the next success.
    pub last_error: Option<String>,
    /// One line about the last unit (e.g. `deleted 120 keys`).
    pub last_result: Option<String>,
    /// When the last unit started.
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub last_run_at: Option<SystemTime>,
    /// How long the last unit took.
    pub last_duration_secs: Option<f64>,
    /// When the next unit is due.
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub next_run_at: Option<SystemTime>,
}

impl WorkerStatus {
    /// A worker that has not run yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            state: WorkerState::Idle,
            runs: 0,
            consecutive_failures: 0,
            last_error: None,
            last_result: None,
            last_run_at: None,
            last_duration_secs: None,
            next_run_at: None,
        }
    }
}

/// All workers' statuses, shared with the admin API.
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Mutex<BTreeMap<String, WorkerStatus>>>);

impl Registry {
    /// Every worker's status, by name.
    pub fn snapshot(&self) -> Vec<WorkerStatus> {
        self.lock().values().cloned().collect()
    }

    /// One worker's status.
    pub fn get(&self, name: &str) -> Option<WorkerStatus> {
        self.lock().get(name).cloned()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut WorkerStatus)) {
        let mut map = self.lock();
        f(map
            .entry(name.to_string())
            .or_insert_with(|| WorkerStatus::new(name)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, WorkerStatus>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A loop of the daemon.
pub trait Worker: Send + 'static {
    /// Why a unit failed: each worker's own typed error, shown by its message.
    type Error: std::fmt::Display + Send;

    /// Stable name (`redis`, `qdrant`, `s3`, `monitor`).
    fn name(&self) -> &str;

    /// The interval between units when all is well.
    fn interval(&self) -> Duration;

    /// How loaded the worker's resource is now (drives the interval). Default: LOW.
    fn pressure(&self) -> Priority {
        Priority::Low
    }

    /// Whether the worker must sit this unit out (another replica leads). Default: never.
    fn standby(&self) -> bool {
        false
    }

    /// One unit of work. `Ok` carries a one-line summary. The unit should check `cancel`
    /// between its batches and return early once it is cancelled.
    fn work(
        &mut self,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;
}

/// Scheduling parameters of the runner.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Random extra delay, fraction of the delay.
    pub jitter_fraction: f64,
    /// Cap of the failure backoff.
    pub backoff_max: Duration,
}

/// The delay before the next unit and the state to show while waiting.
pub fn next_delay(
    interval: Duration,
    pressure: Priority,
    consecutive_failures: u32,
    schedule: &Schedule,
    unit_random: f64,
) -> (Duration, WorkerState) {
    let (delay, state) = if consecutive_failures > 0 {
        let exp = consecutive_failures.saturating_sub(1).min(30);
        let backoff = BACKOFF_START.saturating_mul(1u32 << exp);
        (backoff.min(schedule.backoff_max), WorkerState::Failed)
    } else {
        match pressure {
            Priority::Critical => (CRITICAL_PAUSE.min(interval), WorkerState::Throttled),
            Priority::High => (interval / 4, WorkerState::Throttled),
            _ => (interval, WorkerState::Idle),
        }
    };
    let jitter = delay.mul_f64(schedule.jitter_fraction * unit_random.clamp(0.0, 1.0));
    (delay + jitter, state)
}

/// Runs `worker` until `cancel` fires. `wake` cuts a wait short (a queued CRITICAL task, a
/// manual trigger). The first unit runs at once.
pub async fn run<W: Worker>(
    mut worker: W,
    registry: Registry,
    schedule: Schedule,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let name = worker.name().to_string();
    registry.update(&name, |_| {});
    let mut failures: u32 = 0;
    while !cancel.is_cancelled() {
        if worker.standby() {
            // becoming leader wakes the loop; until then it waits like an idle one
            let delay = worker.interval();
            registry.update(&name, |s| {
                s.state = WorkerState::Standby;
                s.next_run_at = Some(SystemTime::now() + delay);
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wake.notified() => {}
                () = cancel.cancelled() => break,
            }
            continue;
        }
        let started = SystemTime::now();
        let clock = tokio::time::Instant::now();
        registry.update(&name, |s| {
            s.state = WorkerState::Busy;
            s.last_run_at = Some(started);
            s.next_run_at = None;
        });
        let result = worker.work(&cancel).await;
        let took = clock.elapsed();
        match &result {
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(worker = %name, failures, error = %e, "worker unit failed; backing off");
            }
        }
        let (delay, state) = next_delay(
            worker.interval(),
            worker.pressure(),
            failures,
            &schedule,
            fastrand::f64(),
        );
        registry.update(&name, |s| {
            s.runs += 1;
            s.state = state;
            s.consecutive_failures = failures;
            s.last_duration_secs = Some(took.as_secs_f64());
            s.next_run_at = Some(SystemTime::now() + delay);
            match result {
                Ok(summary) => {
                    s.last_result = Some(summary);
                    s.last_error = None;
                }
                Err(e) => s.last_error = Some(e.to_string()),
            }
        });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
            () = cancel.cancelled() => break,
        }
    }
    registry.update(&name, |s| {
        s.state = WorkerState::Idle;
        s.next_run_at = None;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const SCHEDULE: Schedule = Schedule {
        jitter_fraction: 0.0,
        backoff_max: Duration::from_secs(60),
    };
    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn load_driven_intervals() {
        let d = |p| next_delay(HOUR, p, 0, &SCHEDULE, 0.5);
        assert_eq!(d(Priority::Low), (HOUR, WorkerState::Idle));
        assert_eq!(d(Priority::Medium), (HOUR, WorkerState::Idle));
        assert_eq!(d(Priority::High), (HOUR / 4, WorkerState::Throttled));
        assert_eq!(
            d(Priority::Critical),
            (CRITICAL_PAUSE, WorkerState::Throttled)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_ignores_pressure() {
        let d = |n| {
            next_delay(HOUR, Priority::Critical, n, &SCHEDULE, 0.0)
                .0
                .as_secs()
        };
        assert_eq!(
            [d(1), d(2), d(3), d(4), d(5), d(6), d(40)],
            [2, 4, 8, 16, 32, 60, 60]
        );
        assert_eq!(
            next_delay(HOUR, Priority::Low, 1, &SCHEDULE, 0.0).1,
            WorkerState::Failed
        );
    }

    #[test]
    fn jitter_only_adds_up_to_its_fraction() {
        let s = Schedule {
            jitter_fraction: 0.1,
            ..SCHEDULE
        };
        assert_eq!(next_delay(HOUR, Priority::Low, 0, &s, 0.0).0, HOUR);
        assert_eq!(
            next_delay(HOUR, Priority::Low, 0, &s, 1.0).0,
            HOUR.mul_f64(1.1)
        );
    }

    /// Counts its units; fails while `fail_until` is above the count; reports a pressure.
    struct Probe {
        count: Arc<AtomicU32>,
        fail_until: u32,
        pressure: Arc<Mutex<Priority>>,
    }

    impl Worker for Probe {
        type Error = String;

        fn name(&self) -> &str {
            "probe"
        }
        fn interval(&self) -> Duration {
            HOUR
        }
        fn pressure(&self) -> Priority {
            *self.pressure.lock().unwrap()
        }
        async fn work(&mut self, _: &CancellationToken) -> Result<String, String> {
            let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= self.fail_until {
                Err(format!("boom {n}"))
            } else {
                Ok(format!("unit {n}"))
            }
        }
    }

    fn spawn_probe(
        fail_until: u32,
    ) -> (
        Arc<AtomicU32>,
        Arc<Mutex<Priority>>,
        Registry,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let count = Arc::new(AtomicU32::new(0));
        let pressure = Arc::new(Mutex::new(Priority::Low));
        let registry = Registry::default();
        let cancel = CancellationToken::new();
        let probe = Probe {
            count: count.clone(),
            fail_until,
            pressure: pressure.clone(),
        };
        let handle = tokio::spawn(run(
            probe,
            registry.clone(),
            SCHEDULE,
            Arc::new(Notify::new()),
            cancel.clone(),
        ));
        (count, pressure, registry, cancel, handle)
    }

    async fn advance(d: Duration) {
        tokio::time::advance(d).await;
        tokio::task::yield_now().await;
    }

    #[tokio::test(start_paused = true)]
    async fn loop_speeds_up_under_pressure_and_slows_down_after() {
        let (count, pressure, registry, cancel, handle) = spawn_probe(0);
        advance(Duration::from_millis(1)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "first unit at once");
        advance(HOUR).await;
        assert_eq!(count.load(Ordering::SeqCst), 2);

        *pressure.lock().unwrap() = Priority::High;
        advance(HOUR).await; // the wait in progress was a full hour
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert_eq!(registry.get("probe").unwrap().state, WorkerState::Throttled);
        for _ in 0..4 {
            advance(HOUR / 4).await;
        }
        assert_eq!(count.load(Ordering::SeqCst), 7, "four runs an hour at HIGH");

        *pressure.lock().unwrap() = Priority::Critical;
        advance(HOUR / 4).await;
        let before = count.load(Ordering::SeqCst);
        for _ in 0..12 {
            advance(CRITICAL_PAUSE).await;
        }
        assert_eq!(
            count.load(Ordering::SeqCst),
            before + 12,
            "back to back at CRITICAL"
        );

        *pressure.lock().unwrap() = Priority::Low;
        advance(CRITICAL_PAUSE).await;
        let before = count.load(Ordering::SeqCst);
        advance(HOUR / 2).await;
        assert_eq!(
            count.load(Ordering::SeqCst),
            before,
            "back to the normal interval"
        );
        cancel.cancel();
        handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_then_recover() {
        let (count, _, registry, cancel, handle) = spawn_probe(3);
        advance(Duration::from_millis(1)).await;
        let status = registry.get("probe").unwrap();
        assert_eq!(status.state, WorkerState::Failed);
        assert_eq!(status.last_error.as_deref(), Some("boom 1"));
        advance(Duration::from_secs(2)).await; // 2 s
        assert_eq!(count.load(Ordering::SeqCst), 2);
        advance(Duration::from_secs(4)).await; // 4 s
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert_eq!(registry.get("probe").unwrap().consecutive_failures, 3);
        advance(Duration::from_secs(8)).await; // 8 s: succeeds
        let status = registry.get("probe").unwrap();
        assert_eq!(
            (status.state, status.consecutive_failures),
            (WorkerState::Idle, 0)
        );
        assert_eq!(status.last_error, None);
        assert_eq!(status.last_result.as_deref(), Some("unit 4"));
        assert_eq!(status.runs, 4);
        cancel.cancel();
        handle.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_a_waiting_worker_at_once() {
        let (_, _, _, cancel, handle) = spawn_probe(0);
        advance(Duration::from_millis(1)).await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_millis(10), handle)
            .await
            .expect("stopped without waiting for the interval")
            .unwrap();
    }
}
