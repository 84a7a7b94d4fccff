//! The latest measurement of every store, written by the monitor and read by everyone else.
//!
//! The API answers from it (so `/api/resources/metrics` never waits on a backend), and each
//! store's timer reads its priority to pace itself.

use std::sync::RwLock;
use std::time::SystemTime;

use serde::Serialize;

use crate::resource::{PerResource, Priority, Resource, Usage};

/// Where a store's measurement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not measured yet.
    Pending,
    /// The last measurement succeeded.
    Ok,
    /// The last measurement failed (the last good usage is kept).
    Error,
    /// The store is not configured.
    Disabled,
}

/// What is known of one store.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceState {
    /// Where its measurement stands.
    pub status: Status,
    /// The last successful measurement.
    pub usage: Option<Usage>,
    /// Its priority.
    pub priority: Priority,
    /// The last error, if the last measurement failed.
    pub error: Option<String>,
    /// When it was last measured (successfully or not).
    #[serde(serialize_with = "crate::time::rfc3339_opt")]
    pub measured_at: Option<SystemTime>,
}

impl ResourceState {
    fn new(enabled: bool) -> Self {
        Self {
            status: if enabled {
                Status::Pending
            } else {
                Status::Disabled
            },
            usage: None,
            priority: Priority::Low,
            error: None,
            measured_at: None,
        }
    }
}

/// The latest measurement of every store.
#[derive(Debug)]
pub struct Snapshot(RwLock<PerResource<ResourceState>>);

impl Snapshot {
    /// A snapshot with every store pending or disabled.
    pub fn new(enabled: &PerResource<bool>) -> Self {
        Self(RwLock::new(PerResource::from_fn(|r| {
            ResourceState::new(enabled[r])
        })))
    }

    /// Every store's state.
    pub fn all(&self) -> PerResource<ResourceState> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The priority of a store (LOW until measured).
    pub fn priority(&self, resource: Resource) -> Priority {
        self.0.read().unwrap_or_else(|e| e.into_inner())[resource].priority
    }

    /// Records a measurement: its usage and priority, or why it failed (the last good usage
    /// and its priority are kept).
    pub fn set(
        &self,
        resource: Resource,
        now: SystemTime,
        result: Result<(Usage, Priority), String>,
    ) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        let state = &mut map[resource];
        state.measured_at = Some(now);
        match result {
            Ok((usage, priority)) => {
                state.status = Status::Ok;
                state.usage = Some(usage);
                state.priority = priority;
                state.error = None;
            }
            Err(e) => {
                state.status = Status::Error;
                state.error = Some(e);
            }
        }
    }
}
