//! The priority cleanup queue fed by the monitoring loop.
//!
//! Bounded (a flood of measurements cannot grow memory), ordered by priority then FIFO, and
//! merging: a resource that stays HIGH for ten cycles has one pending task, not ten, and a
//! task that escalates to CRITICAL keeps its place among the CRITICAL ones by age. When full,
//! a new task only gets in by evicting a lower-priority one.

use std::time::SystemTime;

use serde::Serialize;

use crate::resource::{Priority, Resource};

/// One unit of cleanup the monitoring loop asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CleanupTask {
    /// How urgent it is.
    pub priority: Priority,
    /// Which store.
    #[serde(rename = "resource_type", serialize_with = "as_resource_type")]
    pub resource: Resource,
    /// What within the store (`all`, or a collection / prefix).
    pub target_id: String,
    /// When it was first queued.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub created_at: SystemTime,
    /// Why, e.g. `High resource usage: 78.5%`.
    pub reason: String,
    /// FIFO order among equal priorities.
    #[serde(skip)]
    seq: u64,
}

impl CleanupTask {
    /// A new task.
    pub fn new(
        priority: Priority,
        resource: Resource,
        target_id: impl Into<String>,
        created_at: SystemTime,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            priority,
            resource,
            target_id: target_id.into(),
            created_at,
            reason: reason.into(),
            seq: 0,
        }
    }

    fn same_target(&self, other: &CleanupTask) -> bool {
        self.resource == other.resource && self.target_id == other.target_id
    }

    /// Sort key: higher priority first, then older first.
    fn rank(&self) -> (std::cmp::Reverse<Priority>, u64) {
        (std::cmp::Reverse(self.priority), self.seq)
    }
}

fn as_resource_type<S: serde::Serializer>(r: &Resource, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.resource_type())
}

/// What [`CleanupQueue::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Added as a new task.
    Queued,
    /// Merged into the pending task for the same resource and target.
    Merged,
    /// Added after evicting a lower-priority task (the queue was full).
    Evicted(Resource, String),
    /// Not added: the queue is full of tasks at least as urgent.
    Rejected,
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

    /// Adds a task, merging with a pending one for the same target (the higher priority and
    /// its reason win; the original place in line is kept).
    pub fn push(&mut self, mut task: CleanupTask) -> Pushed {
        if let Some(pending) = self.tasks.iter_mut().find(|t| t.same_target(&task)) {
            if task.priority > pending.priority {
                pending.priority = task.priority;
                pending.reason = task.reason;
            }
            return Pushed::Merged;
        }
        task.seq = self.next_seq;
        self.next_seq += 1;
        if self.tasks.len() < self.capacity {
            self.tasks.push(task);
            return Pushed::Queued;
        }
        // full: evict the least urgent (newest among equals) if the newcomer beats it
        let (worst, _) = self
            .tasks
            .iter()
            .enumerate()
            .max_by_key(|(_, t)| t.rank())
            .expect("a full queue is not empty");
        if self.tasks[worst].priority < task.priority {
            let evicted = std::mem::replace(&mut self.tasks[worst], task);
            Pushed::Evicted(evicted.resource, evicted.target_id)
        } else {
            Pushed::Rejected
        }
    }

    /// Removes and returns the most urgent task (oldest among equals).
    pub fn pop(&mut self) -> Option<CleanupTask> {
        let (best, _) = self
            .tasks
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.rank())?;
        Some(self.tasks.swap_remove(best))
    }

    /// Removes and returns the most urgent task if it is at least `priority`.
    pub fn pop_at_least(&mut self, priority: Priority) -> Option<CleanupTask> {
        let top = self.tasks.iter().min_by_key(|t| t.rank())?;
        if top.priority >= priority {
            self.pop()
        } else {
            None
        }
    }

    /// The pending tasks in the order they will run.
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
        CleanupTask::new(
            p,
            r,
            target,
            SystemTime::UNIX_EPOCH,
            format!("{p} {target}"),
        )
    }

    fn order(q: &mut CleanupQueue) -> Vec<(Priority, String)> {
        std::iter::from_fn(|| q.pop())
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
            order(&mut q),
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
    fn same_target_merges_keeping_the_higher_priority_and_place() {
        let mut q = CleanupQueue::new(10);
        assert_eq!(q.push(task(High, Redis, "all")), Pushed::Queued);
        assert_eq!(q.push(task(Critical, Qdrant, "all")), Pushed::Queued);
        assert_eq!(q.push(task(Critical, Redis, "all")), Pushed::Merged);
        assert_eq!(q.push(task(High, Redis, "all")), Pushed::Merged);
        assert_eq!(q.len(), 2);
        let first = q.pop().unwrap();
        // both CRITICAL now; Redis was queued first
        assert_eq!((first.resource, first.priority), (Redis, Critical));
        assert_eq!(
            first.reason, "CRITICAL all",
            "the escalation's reason is kept"
        );
        // a different target of the same resource is its own task
        assert_eq!(q.push(task(High, Qdrant, "docs")), Pushed::Queued);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn bounded_evicts_only_for_more_urgent_tasks() {
        let mut q = CleanupQueue::new(2);
        q.push(task(High, Redis, "a"));
        q.push(task(High, Qdrant, "b"));
        assert_eq!(q.push(task(High, S3, "c")), Pushed::Rejected);
        assert_eq!(
            q.push(task(Critical, S3, "d")),
            Pushed::Evicted(Qdrant, "b".into())
        );
        assert_eq!(q.len(), 2);
        assert_eq!(order(&mut q), [(Critical, "d".into()), (High, "a".into())]);
    }

    #[test]
    fn pop_at_least_leaves_lesser_tasks() {
        let mut q = CleanupQueue::new(4);
        q.push(task(High, Redis, "a"));
        assert!(q.pop_at_least(Critical).is_none());
        q.push(task(Critical, S3, "b"));
        assert_eq!(q.pop_at_least(Critical).unwrap().target_id, "b");
        assert!(q.pop_at_least(Critical).is_none());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn serialises_in_the_seed_shape() {
        let t = task(High, Qdrant, "all");
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["priority"], "HIGH");
        assert_eq!(v["resource_type"], "qdrant_vectors");
        assert_eq!(v["target_id"], "all");
        assert_eq!(v["created_at"], "1970-01-01T00:00:00Z");
        assert!(v.get("seq").is_none());
    }
}
