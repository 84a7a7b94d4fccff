//! The scheduler: the one priority cleanup queue at the centre of the daemon, and the
//! dispatcher that starts its tasks.
//!
//! Every source of work submits a [`CleanupTask`] here: each store's timer, the monitor
//! for a store at HIGH or CRITICAL, and the API. The dispatcher ([`Scheduler::dispatch`])
//! takes tasks by priority, then FIFO, and runs them through the [`Engine`]:
//! - one run per store at a time: a task for a busy store waits in the queue, visible;
//! - CRITICAL tasks start as soon as their store is free;
//! - other tasks from the timers and the monitor start at most `tasks_per_cycle` per
//!   monitoring cycle (the seed's 5); an operator's API task is not held to that budget
//!   (the API rate-limits it instead).
//!
//! A submitter may wait for the run its task becomes (the API's cleanup, the timers); a
//! task merged into a pending one waits for that one's run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{Engine, RunRequest};
use crate::metrics::Metrics;
use crate::queue::{CleanupQueue, CleanupTask, Pushed};
use crate::resource::{PerResource, Priority, Resource};
use crate::runs::{RunRecord, Trigger};

/// A task as `GET /api/resources/queue` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// The task.
    #[serde(flatten)]
    pub task: CleanupTask,
    /// `pending` or `running`.
    pub state: TaskState,
    /// When its run started.
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub started_at: Option<SystemTime>,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// In the queue.
    Pending,
    /// Its run is under way.
    Running,
}

/// Why a task that was queued never became a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRun {
    /// A more urgent task took its place in the full queue.
    #[error("dropped from the full cleanup queue")]
    Dropped,
    /// The daemon stopped before it started.
    #[error("the daemon stopped before the task started")]
    Shutdown,
}

/// How a waited-for task ended: its run's record, or why it never ran.
pub type TaskResult = Result<RunRecord, NotRun>;

/// What a submitter gets back.
#[derive(Debug)]
pub struct Submitted {
    /// What the queue did with the task.
    pub pushed: Pushed,
    /// How the task ends (`None` when the task was dropped at once, or nobody waits). A
    /// closed channel means its run ended without a record: the run panicked.
    pub done: Option<oneshot::Receiver<TaskResult>>,
}

struct Running {
    task: CleanupTask,
    started_at: SystemTime,
}

struct Inner {
    queue: CleanupQueue,
    running: PerResource<Option<Running>>,
    /// Non-critical timer and monitor tasks that may still start this monitoring cycle.
    budget: usize,
    waiters: HashMap<String, Vec<oneshot::Sender<TaskResult>>>,
}

/// The queue, the running tasks and the dispatcher's wake-up.
pub struct Scheduler {
    inner: Mutex<Inner>,
    wake: Notify,
    tasks_per_cycle: usize,
    metrics: Metrics,
}

impl Scheduler {
    /// A scheduler holding at most `capacity` pending tasks and starting at most
    /// `tasks_per_cycle` non-critical timer and monitor tasks per monitoring cycle.
    pub fn new(capacity: usize, tasks_per_cycle: usize, metrics: Metrics) -> Self {
        Self {
            inner: Mutex::new(Inner {
                queue: CleanupQueue::new(capacity),
                running: PerResource::default(),
                budget: tasks_per_cycle,
                waiters: HashMap::new(),
            }),
            wake: Notify::new(),
            tasks_per_cycle,
            metrics,
        }
    }

    /// Queues `task`; with `wait`, `done` receives its run's record.
    pub fn submit(&self, task: CleanupTask, wait: bool) -> Submitted {
        let (resource, priority, source) = (task.resource, task.priority, task.source);
        let mut inner = self.lock();
        let pushed = inner.queue.push(task);
        if let Some(dropped) = pushed.dropped() {
            for tx in inner.waiters.remove(&dropped.id).into_iter().flatten() {
                let _ = tx.send(Err(NotRun::Dropped));
            }
            self.metrics.record_queue_dropped(1);
            tracing::warn!(task = %dropped.id, resource = %dropped.resource, priority = %dropped.priority, "cleanup queue full: task dropped");
        }
        let done = match (pushed.id(), wait) {
            (Some(id), true) => {
                let (tx, rx) = oneshot::channel();
                inner.waiters.entry(id.to_string()).or_default().push(tx);
                Some(rx)
            }
            _ => None,
        };
        self.publish(&inner);
        drop(inner);
        tracing::debug!(%resource, %priority, ?source, pushed = ?pushed.id(), "cleanup task submitted");
        self.wake.notify_one();
        Submitted { pushed, done }
    }

    /// A new monitoring cycle: the budget of non-critical tasks is full again.
    pub fn new_cycle(&self) {
        self.lock().budget = self.tasks_per_cycle;
        self.wake.notify_one();
    }

    /// Running tasks first (by store), then the pending ones in the order they will run.
    pub fn snapshot(&self) -> Vec<TaskView> {
        let inner = self.lock();
        let running = inner.running.iter().filter_map(|(_, r)| r.as_ref());
        let running = running.map(|r| TaskView {
            task: r.task.clone(),
            state: TaskState::Running,
            started_at: Some(r.started_at),
        });
        let pending = inner.queue.snapshot().into_iter().map(|task| TaskView {
            task,
            state: TaskState::Pending,
            started_at: None,
        });
        running.chain(pending).collect()
    }

    /// Pending tasks.
    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }

    /// The dispatcher: starts every task that may start, then waits for a change (a task
    /// submitted, a run ended, a new cycle), until `cancel` fires. Runs are spawned on
    /// `tracker`, so shutdown waits for them.
    pub async fn dispatch(
        self: Arc<Self>,
        engine: Arc<Engine>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) {
        loop {
            while !cancel.is_cancelled()
                && let Some(task) = self.next_startable()
            {
                let run = self.start(task, engine.clone());
                tracker.spawn(run);
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = cancel.cancelled() => break,
            }
        }
        // pending tasks will not run
        for tx in self.lock().waiters.drain().flat_map(|(_, w)| w) {
            let _ = tx.send(Err(NotRun::Shutdown));
        }
    }

    /// Takes the next task that may start and marks its store busy.
    fn next_startable(&self) -> Option<CleanupTask> {
        let mut inner = self.lock();
        let Inner {
            queue,
            running,
            budget,
            ..
        } = &mut *inner;
        let task = queue.pop_startable(
            |r| running[r].is_some(),
            |t| t.source == Trigger::Api || *budget > 0,
        )?;
        if task.priority != Priority::Critical && task.source != Trigger::Api {
            *budget = budget.saturating_sub(1);
        }
        running[task.resource] = Some(Running {
            task: task.clone(),
            started_at: SystemTime::now(),
        });
        self.publish(&inner);
        Some(task)
    }

    /// The run of `task`; when it ends (or panics) the store is free again.
    fn start(
        self: &Arc<Self>,
        task: CleanupTask,
        engine: Arc<Engine>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let release = Release {
            scheduler: self.clone(),
            resource: task.resource,
            id: task.id.clone(),
        };
        if task.priority == Priority::Critical {
            self.metrics.record_emergency(task.resource);
        }
        tracing::info!(task = %task.id, resource = %task.resource, priority = %task.priority, source = ?task.source, reason = %task.reason, "cleanup task started");
        let req = RunRequest {
            id: Some(task.id),
            resource: task.resource,
            trigger: task.source,
            dry_run: task.dry_run,
            priority: Some(task.priority),
            reason: Some(task.reason),
        };
        async move {
            let result = engine.run(req, SystemTime::now()).await;
            release.done(result.record);
        }
    }

    fn publish(&self, inner: &Inner) {
        let running = inner.running.iter().filter(|(_, r)| r.is_some()).count();
        self.metrics.set_queue(inner.queue.len(), running);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Frees a store when its run ends, and hands the record to the task's waiters. Dropped
/// without a record (the run panicked), it still frees the store; the waiters then see a
/// closed channel.
struct Release {
    scheduler: Arc<Scheduler>,
    resource: Resource,
    id: String,
}

impl Release {
    fn done(self, record: RunRecord) {
        let waiters = self.scheduler.lock().waiters.remove(&self.id);
        for tx in waiters.into_iter().flatten() {
            let _ = tx.send(Ok(record.clone()));
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut inner = self.scheduler.lock();
        inner.running[self.resource] = None;
        inner.waiters.remove(&self.id);
        self.scheduler.publish(&inner);
        drop(inner);
        self.scheduler.wake.notify_one();
    }
}
