//! The daemon in-process on port 0 with paused time (as mini-redis tests its server), over
//! test doubles of the stores: a sweeper per store whose runs can be held open, and a gauge
//! whose usage the test sets. What is checked is the scheduling: timers, monitor, queue,
//! dispatcher and the API's view of them.

use std::sync::Mutex;
use std::time::SystemTime;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use super::*;
use crate::backend::sweep::{Applied, Planned, PlannedRun, SweepContext, SweepError, Sweeper};
use crate::config::{Sources, load};
use crate::plan::{Action, Batch, PlannedItem};
use crate::resource::{Priority, Usage};
use crate::runs::{RunRecord, Trigger};

const HOUR: Duration = Duration::from_secs(3600);
const TOKEN: &str = "a-test-token-of-some-length";

/// A store whose runs plan one item and apply it once the test lets them (`gate`).
struct FakeStore {
    resource: Resource,
    gate: Arc<Semaphore>,
}

struct FakeRun<'a>(&'a FakeStore);

impl Sweeper for FakeStore {
    fn resource(&self) -> Resource {
        self.resource
    }

    fn plan<'a>(&'a self, ctx: &'a SweepContext) -> BoxFuture<'a, Result<Planned<'a>, SweepError>> {
        Box::pin(async move {
            let mut plan = ctx.new_plan(self.resource)?;
            plan.store_items = 1_000;
            let item = PlannedItem {
                id: "k".into(),
                action: Action::Delete,
                detail: None,
            };
            plan.push(Batch {
                target: "all".into(),
                reason: "test".into(),
                items: vec![item],
                shard: None,
                detail: None,
            })
            .map_err(SweepError::spool)?;
            let run: Box<dyn PlannedRun + 'a> = Box::new(FakeRun(self));
            Ok((plan, run))
        })
    }

    fn unapplied<'a>(&'a self, _: &'a Batch) -> BoxFuture<'a, Result<Vec<String>, SweepError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

impl PlannedRun for FakeRun<'_> {
    fn apply<'a>(
        &'a self,
        batch: &'a Batch,
        _: &'a SweepContext,
    ) -> BoxFuture<'a, Result<Applied, SweepError>> {
        Box::pin(async move {
            let permit = self.0.gate.acquire().await.expect("gate open");
            permit.forget();
            Ok(Applied {
                deleted: batch.items.len() as u64,
                ..Applied::default()
            })
        })
    }

    fn finish<'a>(&'a self, _: &'a SweepContext) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async { Vec::new() })
    }
}

/// Usage fractions the test sets, per store.
struct FakeGauge(Mutex<PerResource<f64>>);

impl Gauge for FakeGauge {
    fn measure(
        &self,
        resource: Resource,
        _: SystemTime,
    ) -> BoxFuture<'_, Option<Result<Usage, BackendError>>> {
        let fraction = self.0.lock().unwrap()[resource];
        Box::pin(async move {
            resource.is_swept().then_some(Ok(Usage {
                total_items: 1_000,
                size_bytes: Some(1),
                usage_fraction: Some(fraction),
                ..Usage::default()
            }))
        })
    }
}

struct Daemon {
    addr: std::net::SocketAddr,
    gauge: Arc<FakeGauge>,
    gates: PerResource<Arc<Semaphore>>,
    engine: Arc<Engine>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Redis, Qdrant and S3 doubles, every run held until opened; `env` on top of quiet
    /// defaults (timers every hour, the monitor every minute, no jitter).
    async fn start(env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut environment: Vec<(String, String)> = [
            (
                "JANITOR_AUDIT_LOG",
                dir.path().join("a.jsonl").display().to_string(),
            ),
            ("JANITOR_ADMIN_TOKEN", TOKEN.into()),
            ("JANITOR_JITTER_FRACTION", "0".into()),
            ("RESOURCE_MONITORING_INTERVAL_SECONDS", "60".into()),
            ("JANITOR_CLEANUP_RATE_LIMIT_PER_MINUTE", "1000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        environment.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Arc::new(
            load(&Sources {
                environment,
                ..Sources::default()
            })
            .unwrap(),
        );
        let gates = PerResource::from_fn(|_| Arc::new(Semaphore::new(0)));
        let stores = [Resource::Redis, Resource::Qdrant, Resource::S3];
        let sweepers: Vec<Arc<dyn Sweeper>> = stores
            .into_iter()
            .map(|resource| {
                let store = FakeStore {
                    resource,
                    gate: gates[resource].clone(),
                };
                Arc::new(store) as Arc<dyn Sweeper>
            })
            .collect();
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();
        let audit = Arc::new(AuditLog::open(&settings.safety.audit_log).unwrap());
        let history = History::in_memory(Duration::from_secs(30 * 86_400));
        let runs = Arc::new(RunLog::with_sink(Arc::new(history.clone())));
        let engine = Arc::new(
            Engine::new(
                settings.clone(),
                sweepers,
                audit,
                metrics.clone(),
                cancel.clone(),
            )
            .with_run_log(runs),
        );
        let gauge = Arc::new(FakeGauge(Mutex::new(PerResource::from_fn(|_| 0.1))));
        let janitor = Janitor {
            alerts: Alerts::log_only(&settings.alerts, "test"),
            settings,
            backends: Backends::default(),
            engine: engine.clone(),
            gauge: gauge.clone(),
            configured: PerResource::from_fn(|r| stores.contains(&r)),
            metrics,
            leader: LeaderHandle::default(),
            dedup: None,
            drift: Default::default(),
            history,
            cancel,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(serve(janitor, listener, async move {
            let _ = stopped.await;
        }));
        Daemon {
            addr,
            gauge,
            gates,
            engine,
            stop: Some(stop),
            handle,
            _dir: dir,
        }
    }

    fn set_usage(&self, resource: Resource, fraction: f64) {
        self.gauge.0.lock().unwrap()[resource] = fraction;
    }

    /// Lets `n` held batches of `resource` through.
    fn open(&self, resource: Resource, n: usize) {
        self.gates[resource].add_permits(n);
    }

    fn runs(&self) -> Vec<RunRecord> {
        self.engine.runs().list()
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("http://{}{path}", self.addr);
        let client = reqwest::Client::new();
        let r = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// POSTs `body` to `path` (`?async=true`: the cleanup answers at once).
    async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let url = format!("http://{}{path}?async=true", self.addr);
        let client = reqwest::Client::new();
        let r = client
            .post(url)
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The queue's tasks as (resource_type, priority, source, state).
    async fn tasks(&self) -> Vec<(String, String, String, String)> {
        let q = self.get("/api/resources/queue").await;
        q["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                (s("resource_type"), s("priority"), s("source"), s("state"))
            })
            .collect()
    }

    async fn stop(mut self) {
        for (_, gate) in self.gates.iter() {
            if !gate.is_closed() {
                gate.add_permits(1_000);
            }
        }
        let _ = self.stop.take().unwrap().send(());
        self.handle.await.unwrap();
    }
}

fn task(rt: &str, p: &str, source: &str, state: &str) -> (String, String, String, String) {
    (rt.into(), p.into(), source.into(), state.into())
}

/// Lets the daemon's tasks run, time standing still. A run's audit append and plan reads
/// happen on blocking threads, which paused time does not wait for: a few real instants
/// between the yields let them finish.
async fn settle() {
    for _ in 0..25 {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Advances paused time by `d` in at most 400 steps (of a second at least), letting every
/// task react after each.
async fn advance(d: Duration) {
    let mut left = d;
    let step = (d / 400).max(Duration::from_secs(1));
    while !left.is_zero() {
        let step = left.min(step);
        tokio::time::advance(step).await;
        settle().await;
        left -= step;
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_at_high_gets_a_task_that_waits_behind_its_running_run() {
    let d = Daemon::start(&[]).await;
    settle().await;
    // every timer fired at start; each run is held open by its gate
    let running = d.tasks().await;
    assert_eq!(running.len(), 3, "{running:?}");
    assert!(
        running
            .iter()
            .all(|t| t.2 == "schedule" && t.3 == "running")
    );

    d.set_usage(Resource::Redis, 0.8);
    advance(Duration::from_secs(61)).await;
    let tasks = d.tasks().await;
    assert!(
        tasks.contains(&task("redis_cache", "HIGH", "monitor", "pending")),
        "the monitor's task waits behind the running Redis run: {tasks:?}"
    );
    assert!(tasks.contains(&task("redis_cache", "LOW", "schedule", "running")));

    d.open(Resource::Redis, 2);
    advance(Duration::from_secs(1)).await;
    let redis: Vec<_> = d
        .runs()
        .into_iter()
        .filter(|r| r.resource == Resource::Redis)
        .map(|r| (r.trigger, r.priority))
        .collect();
    assert_eq!(
        redis,
        [
            (Trigger::Monitor, Some(Priority::High)),
            (Trigger::Schedule, Some(Priority::Low))
        ],
        "newest first: the monitor's run followed the timer's"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn timers_fire_at_their_interval_and_four_times_as_often_at_high() {
    // the monitor hourly: its own HIGH tasks stay few (the run log keeps the last 100 runs)
    let d = Daemon::start(&[
        ("REDIS_CLEANUP_INTERVAL_SECONDS", "3600"),
        ("RESOURCE_MONITORING_INTERVAL_SECONDS", "3600"),
    ])
    .await;
    d.open(Resource::Redis, 1_000);
    // every firing of the timer is one run whose reasons include it (at HIGH it may merge
    // into the monitor's pending task)
    let scheduled = |d: &Daemon| {
        d.runs()
            .iter()
            .filter(|r| r.resource == Resource::Redis)
            .filter(|r| {
                r.reason
                    .as_deref()
                    .unwrap_or_default()
                    .contains("scheduled")
            })
            .count()
    };
    settle().await;
    assert_eq!(scheduled(&d), 1, "the first run at once");
    // each wait starts when the run before it ends, up to a few steps of paused time (27 s
    // each) after it began: five minutes of slack for three waits
    advance(3 * HOUR + Duration::from_secs(300)).await;
    assert_eq!(scheduled(&d), 4, "then one an hour");

    d.set_usage(Resource::Redis, 0.8);
    // the monitor sees it within the hour; the timer's wait in progress is a full hour
    advance(2 * HOUR).await;
    let before = scheduled(&d);
    advance(2 * HOUR).await;
    let at_high = scheduled(&d) - before;
    assert!(
        (7..=8).contains(&at_high),
        "four an hour at HIGH: {at_high} in 2 h"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_critical_task_starts_ahead_of_pending_medium_ones() {
    let d = Daemon::start(&[]).await;
    settle().await;
    // Redis is busy with its timer's run; an operator queues a MEDIUM dry run behind it
    let (status, _) = d
        .post(
            "/api/resources/cleanup",
            serde_json::json!({"resource_type": "redis_cache", "dry_run": true}),
        )
        .await;
    assert_eq!(status, 202);
    d.set_usage(Resource::Redis, 0.95);
    advance(Duration::from_secs(61)).await;
    let tasks = d.tasks().await;
    let pending: Vec<_> = tasks.iter().filter(|t| t.3 == "pending").collect();
    assert_eq!(
        pending,
        [
            &task("redis_cache", "CRITICAL", "monitor", "pending"),
            &task("redis_cache", "MEDIUM", "api", "pending")
        ],
        "CRITICAL first, though queued later"
    );
    d.open(Resource::Redis, 1); // the timer's run ends: the CRITICAL one starts
    advance(Duration::from_secs(1)).await;
    let tasks = d.tasks().await;
    assert!(tasks.contains(&task("redis_cache", "CRITICAL", "monitor", "running")));
    assert!(tasks.contains(&task("redis_cache", "MEDIUM", "api", "pending")));
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_manual_cleanup_is_a_task_visible_while_it_runs() {
    let d = Daemon::start(&[]).await;
    settle().await;
    d.open(Resource::S3, 1); // the timer's S3 run ends
    advance(Duration::from_secs(1)).await;
    let (status, body) = d
        .post(
            "/api/resources/cleanup",
            serde_json::json!({"resource_type": "minio_files"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["run_ids"][0].as_str().unwrap().to_string();
    advance(Duration::from_secs(1)).await;
    let q = d.get("/api/resources/queue").await;
    let t = q["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap_or_else(|| panic!("task {id} not listed: {q}"))
        .clone();
    assert_eq!(t["state"], "running");
    assert_eq!(t["source"], "api");
    assert_eq!(t["resource_type"], "minio_files");
    assert_eq!(t["reason"], "manual cleanup via API");
    assert!(t["started_at"].is_string());
    d.open(Resource::S3, 1);
    advance(Duration::from_secs(1)).await;
    let run = d.runs().into_iter().find(|r| r.id == id).unwrap();
    assert_eq!((run.trigger, run.deleted), (Trigger::Api, 1));
    assert_eq!(run.reason.as_deref(), Some("manual cleanup via API"));
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_the_lowest_priority_oldest_task_and_counts_it() {
    let d = Daemon::start(&[("JANITOR_QUEUE_CAPACITY", "2")]).await;
    // the three timers queue at once: the third displaces the first, whose timer retries
    // after its backoff; then every store is busy with its timer's run
    advance(Duration::from_secs(3)).await;
    let running = d.tasks().await;
    assert!(
        running.iter().all(|t| t.3 == "running") && running.len() == 3,
        "{running:?}"
    );
    let queue = async |rt: &str, p: &str| {
        let body = serde_json::json!({"resource_type": rt, "priority": p});
        d.post("/api/resources/cleanup", body).await.0
    };
    assert_eq!(queue("redis_cache", "MEDIUM").await, 202);
    assert_eq!(queue("qdrant_vectors", "MEDIUM").await, 202);
    // full: a LOW newcomer is the lowest, so it is the one dropped (503: nothing queued)
    assert_eq!(queue("minio_files", "LOW").await, 503);
    // a HIGH newcomer displaces the oldest MEDIUM task
    assert_eq!(queue("minio_files", "HIGH").await, 202);
    let pending: Vec<_> = d
        .tasks()
        .await
        .into_iter()
        .filter(|t| t.3 == "pending")
        .collect();
    assert_eq!(
        pending,
        [
            task("minio_files", "HIGH", "api", "pending"),
            task("qdrant_vectors", "MEDIUM", "api", "pending")
        ]
    );
    let url = format!("http://{}/metrics", d.addr);
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert!(text.contains("janitor_queue_dropped_total 3"), "{text}");
    assert!(text.contains("janitor_queue_size 2"), "{text}");
    assert!(text.contains("janitor_queue_running 3"), "{text}");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cleanup_whose_run_panicked_is_reported_as_failed() {
    let d = Daemon::start(&[]).await;
    settle().await;
    // a closed gate makes the double's apply panic: the timer's S3 run, then the API's
    d.gates[Resource::S3].close();
    advance(Duration::from_secs(1)).await;
    let url = format!("http://{}/api/resources/cleanup", d.addr);
    let answer = reqwest::Client::new()
        .post(url)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"resource_type": "minio_files"}))
        .send();
    let answer = tokio::spawn(answer);
    // the timer's panicked run left its intent open: the API's run first waits out a
    // request that might still be in flight (twice the backend timeout), then recovers
    advance(Duration::from_secs(30)).await;
    let r = answer.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("s3: its run ended without a result"),
        "{message}"
    );
    // the API's task is gone from the queue (the timer's next one may be there)
    let tasks = d.tasks().await;
    assert!(
        !tasks.iter().any(|t| t.0 == "minio_files" && t.2 == "api"),
        "{tasks:?}"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_emergency_queues_a_critical_task_for_every_store() {
    let d = Daemon::start(&[]).await;
    settle().await; // every store busy with its timer's run
    let url = format!("http://{}/api/resources/emergency", d.addr);
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"reason": "Memory usage critical"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["run_ids"].as_array().unwrap().len(), 3);
    let pending: Vec<_> = d
        .tasks()
        .await
        .into_iter()
        .filter(|t| t.3 == "pending")
        .collect();
    assert_eq!(pending.len(), 3, "{pending:?}");
    assert!(
        pending
            .iter()
            .all(|t| t.1 == "CRITICAL" && t.2 == "emergency")
    );
    let q = d.get("/api/resources/queue").await;
    assert_eq!(
        q["tasks"][3]["reason"],
        "emergency via API: Memory usage critical"
    );
    // each starts as soon as its store is free, ahead of anything else
    d.open(Resource::Redis, 1);
    advance(Duration::from_secs(1)).await;
    assert!(
        d.tasks()
            .await
            .contains(&task("redis_cache", "CRITICAL", "emergency", "running"))
    );
    let url = format!("http://{}/metrics", d.addr);
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    assert!(
        text.contains("janitor_emergency_cleanups_total{resource=\"redis\"} 1"),
        "{text}"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn every_error_is_json_with_a_request_id_even_axums_own() {
    let d = Daemon::start(&[]).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", d.addr);
    for (method, path) in [
        (reqwest::Method::DELETE, "/api/workers"),
        (reqwest::Method::POST, "/api/resources/cleanup?wait=null"),
        (reqwest::Method::GET, "/no/such/route"),
    ] {
        let r = client
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .header("x-request-id", "req-42")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{method} {path}");
        assert_eq!(r.headers()["x-request-id"], "req-42");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["success"], false, "{method} {path}: {body}");
        assert_eq!(body["request_id"], "req-42");
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    }
    // an answer that is no error gets the header only, with an id of its own
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 16);
    d.stop().await;
}
