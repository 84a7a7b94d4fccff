//! The priority cleanup queue: the pending tasks, as a plain data structure.
//!
//! Every source of work (each store's timer, the monitor, the API) produces a
//! [`CleanupTask`]; the [`crate::scheduler`] holds them here until the dispatcher starts
//! them. The queue is ordered by priority, then FIFO; it merges a task into a pending one
//! for the same store, target and mode (keeping the higher priority and both reasons), and
//! it is bounded: when full, the lowest-priority oldest task is dropped.

use std::cmp::Reverse;
use std::time::SystemTime;

use serde::Serialize;

use crate::resource::{Priority, Resource};
use crate::runs::Trigger;

/// One unit of cleanup: one run of one store, once started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CleanupTask {
    /// The task's id, which is also the id of the run it becomes.
    pub id: String,
    /// How urgent it is.
    pub priority: Priority,
    /// Which store, as the seed's `resource_type`.
    #[serde(rename = "resource_type", serialize_with = "as_resource_type")]
    pub resource: Resource,
    /// What within the store (`all`, or a collection / prefix).
    pub target_id: String,
    /// When it was first queued.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: SystemTime,
    /// Why, e.g. `High resource usage: 78.5%`; merged tasks keep every reason.
    pub reason: String,
    /// Who asked first: `schedule`, `monitor`, `api` or `emergency`.
    pub source: Trigger,
    /// Plan only.
    pub dry_run: bool,
    /// FIFO order among equal priorities.
    #[serde(skip)]
    seq: u64,
}

impl CleanupTask {
    /// A new task whose run will have the id `id`.
    pub fn new(
        id: String,
        priority: Priority,
        resource: Resource,
        source: Trigger,
        created_at: SystemTime,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            id,
            priority,
            resource,
            target_id: "all".into(),
            created_at,
            reason: reason.into(),
            source,
            dry_run: false,
            seq: 0,
        }
    }

    /// The same task, planning only.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    fn same_work(&self, other: &CleanupTask) -> bool {
        self.resource == other.resource
            && self.target_id == other.target_id
            && self.dry_run == other.dry_run
    }

    /// Sort key: higher priority first, then older first.
    fn rank(&self) -> (Reverse<Priority>, u64) {
        (Reverse(self.priority), self.seq)
    }
}

fn as_resource_type<S: serde::Serializer>(r: &Resource, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.resource_type().unwrap_or(r.name()))
}

/// What [`CleanupQueue::push`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// Added as a new task with this id.
    Queued(String),
    /// Merged into the pending task with this id (same store, target and mode).
    Merged(String),
    /// Added with this id; the queue was full, so its lowest-priority oldest task was
    /// dropped to make room.
    Displaced(String, Box<CleanupTask>),
    /// Not added: the queue is full and the newcomer is less urgent than every pending task.
    Dropped(Box<CleanupTask>),
}

impl Pushed {
    /// The id of the pending task the pushed work is now part of (`None`: dropped).
    pub fn id(&self) -> Option<&str> {
        match self {
            Pushed::Queued(id) | Pushed::Merged(id) | Pushed::Displaced(id, _) => Some(id),
            Pushed::Dropped(_) => None,
        }
    }

    /// The task that was dropped, if any.
    pub fn dropped(&self) -> Option<&CleanupTask> {
        match self {
            Pushed::Displaced(_, t) | Pushed::Dropped(t) => Some(t),
            _ => None,
        }
    }
}

/// Bounded priority queue of [`CleanupTask`]s.
#[derive(Debug)]
pub struct CleanupQueue {
    tasks: Vec<CleanupTask>,
    capacity: usize,
    next_seq: u64,
}

impl CleanupQueue {
    /// An empty queue holding at most `capacity` tasks.
    pub fn new(capacity: usize) -> Self {
        Self {
            tasks: Vec::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    /// Adds a task, merging it into a pending one for the same work (the higher priority
    /// wins with its source, both reasons are kept, the original place in line is kept).
    pub fn push(&mut self, mut task: CleanupTask) -> Pushed {
        if let Some(pending) = self.tasks.iter_mut().find(|t| t.same_work(&task)) {
            if task.priority > pending.priority {
                pending.priority = task.priority;
                pending.source = task.source;
            }
            if !pending.reason.split("; ").any(|r| r == task.reason) {
                pending.reason = format!("{}; {}", pending.reason, task.reason);
            }
            return Pushed::Merged(pending.id.clone());
        }
        task.seq = self.next_seq;
        self.next_seq += 1;
        if self.tasks.len() < self.capacity {
            let id = task.id.clone();
            self.tasks.push(task);
            return Pushed::Queued(id);
        }
        // full: the lowest priority goes, the oldest among equals
        let (worst, _) = self
            .tasks
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| (t.priority, t.seq))
            .expect("a full queue is not empty");
        if task.priority < self.tasks[worst].priority {
            return Pushed::Dropped(Box::new(task));
        }
        let id = task.id.clone();
        let dropped = std::mem::replace(&mut self.tasks[worst], task);
        Pushed::Displaced(id, Box::new(dropped))
    }

    /// Removes and returns the most urgent task that may start: its store is not `busy`,
    /// and it is CRITICAL or `may_start` says so.
    pub fn pop_startable(
        &mut self,
        busy: impl Fn(Resource) -> bool,
        may_start: impl Fn(&CleanupTask) -> bool,
    ) -> Option<CleanupTask> {
        let (best, _) = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| !busy(t.resource))
            .filter(|(_, t)| t.priority == Priority::Critical || may_start(t))
            .min_by_key(|(_, t)| t.rank())?;
        Some(self.tasks.swap_remove(best))
    }

    /// The pending tasks in the order they will run (stores permitting).
    pub fn snapshot(&self) -> Vec<CleanupTask> {
        let mut tasks = self.tasks.clone();
        tasks.sort_by_key(CleanupTask::rank);
        tasks
    }

    /// Number of pending tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::*;
    use Resource::*;

    fn task(p: Priority, r: Resource, target: &str) -> CleanupTask {
        let mut t = CleanupTask::new(
            format!("{r}-{target}"),
            p,
            r,
            Trigger::Monitor,
            SystemTime::UNIX_EPOCH,
            format!("{p} {target}"),
        );
        t.target_id = target.into();
        t
    }

    fn drain(q: &mut CleanupQueue) -> Vec<(Priority, String)> {
        std::iter::from_fn(|| q.pop_startable(|_| false, |_| true))
            .map(|t| (t.priority, t.target_id))
            .collect()
    }

    #[test]
    fn priority_first_then_fifo() {
        let mut q = CleanupQueue::new(10);
        q.push(task(High, Redis, "a"));
        q.push(task(Critical, Qdrant, "b"));
        q.push(task(High, S3, "c"));
        q.push(task(Critical, S3, "d"));
        q.push(task(Medium, Redis, "e"));
        let snap: Vec<_> = q.snapshot().into_iter().map(|t| t.target_id).collect();
        assert_eq!(snap, ["b", "d", "a", "c", "e"]);
        assert_eq!(
            drain(&mut q),
            [
                (Critical, "b".into()),
                (Critical, "d".into()),
                (High, "a".into()),
                (High, "c".into()),
                (Medium, "e".into())
            ]
        );
    }

    #[test]
    fn same_work_merges_keeping_the_higher_priority_both_reasons_and_place() {
        let mut q = CleanupQueue::new(10);
        assert_eq!(
            q.push(task(High, Redis, "all")),
            Pushed::Queued("redis-all".into())
        );
        q.push(task(Critical, Qdrant, "all"));
        let mut escalation = task(Critical, Redis, "all");
        escalation.id = "another".into();
        assert_eq!(q.push(escalation), Pushed::Merged("redis-all".into()));
        assert_eq!(
            q.push(task(High, Redis, "all")),
            Pushed::Merged("redis-all".into())
        );
        assert_eq!(q.len(), 2);
        let first = q.pop_startable(|_| false, |_| true).unwrap();
        // both CRITICAL now; Redis was queued first
        assert_eq!((first.resource, first.priority), (Redis, Critical));
        assert_eq!(
            first.reason, "HIGH all; CRITICAL all",
            "both reasons, once each"
        );
        assert_eq!(first.id, "redis-all", "the pending task's id is kept");
        // another target, or a dry run, of the same store is work of its own
        q.push(task(High, Qdrant, "docs"));
        q.push(task(High, Qdrant, "all").dry_run(true));
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn a_full_queue_drops_the_lowest_priority_oldest_task() {
        let mut q = CleanupQueue::new(3);
        q.push(task(Medium, Redis, "old"));
        q.push(task(High, Qdrant, "b"));
        q.push(task(Medium, S3, "young"));
        let pushed = q.push(task(High, S3, "c"));
        assert_eq!(pushed.id(), Some("s3-c"));
        assert_eq!(pushed.dropped().unwrap().target_id, "old");
        // a newcomer below everything pending is the one dropped
        let pushed = q.push(task(Low, Redis, "low"));
        assert_eq!(pushed.id(), None);
        assert_eq!(pushed.dropped().unwrap().target_id, "low");
        // at the lowest priority, the oldest pending one goes, not the newcomer
        let pushed = q.push(task(Medium, Qdrant, "new"));
        assert_eq!(pushed.dropped().unwrap().target_id, "young");
        assert_eq!(q.len(), 3);
        assert_eq!(
            drain(&mut q),
            [
                (High, "b".into()),
                (High, "c".into()),
                (Medium, "new".into())
            ]
        );
    }

    #[test]
    fn busy_stores_and_the_cycle_budget_hold_tasks_back_but_not_critical_ones() {
        let mut q = CleanupQueue::new(8);
        q.push(task(High, Redis, "a"));
        q.push(task(Medium, Qdrant, "b"));
        q.push(task(Critical, Redis, "c"));
        // Redis is running: its tasks wait, Qdrant's may go
        let t = q.pop_startable(|r| r == Redis, |_| true).unwrap();
        assert_eq!(t.target_id, "b");
        // no budget left: only CRITICAL starts
        let t = q.pop_startable(|_| false, |_| false).unwrap();
        assert_eq!(t.target_id, "c");
        assert!(q.pop_startable(|_| false, |_| false).is_none());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn serialises_in_the_seed_shape_plus_id_and_source() {
        let t = task(High, Qdrant, "all");
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["priority"], "HIGH");
        assert_eq!(v["resource_type"], "qdrant_vectors");
        assert_eq!(v["target_id"], "all");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["reason"], "HIGH all");
        assert_eq!(v["id"], "qdrant-all");
        assert_eq!(v["source"], "monitor");
        assert!(v.get("seq").is_none());
    }
}
