//! The last breakdown of each store, so the API walks a store at most once per
//! [`MAX_AGE`] however often it is asked, and two requests that arrive together share one
//! walk. A walk runs in a task of its own: a client that gives up does not stop it, and the
//! next request gets its result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Breakdown, BreakdownError, MAX_TOP, Options, Walkers};
use crate::resource::Resource;

/// How long a breakdown is served before the store is walked again.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// A walk's result, shared by everyone waiting for it.
pub type Walked = Result<Arc<Breakdown>, Arc<BreakdownError>>;

enum Entry {
    Ready(Instant, Arc<Breakdown>),
    Running(Shared<BoxFuture<'static, Walked>>),
}

/// Breakdowns by store and depth (each walked with the largest `top`, cut per request).
pub struct BreakdownCache {
    walkers: Walkers,
    cancel: CancellationToken,
    entries: Mutex<HashMap<(Resource, usize), Entry>>,
}

impl BreakdownCache {
    /// A cache walking through `walkers`; `cancel` (shutdown) stops a walk.
    pub fn new(walkers: Walkers, cancel: CancellationToken) -> Self {
        Self {
            walkers,
            cancel,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The breakdown of `resource` by `opts`: the cached one unless it is older than
    /// [`MAX_AGE`] or `refresh`, else a walk (joined if one is running). `within` bounds the
    /// wait: `None` when the walk is still running then (ask again later).
    pub async fn get(
        self: &Arc<Self>,
        resource: Resource,
        opts: Options,
        refresh: bool,
        within: Duration,
    ) -> Option<Walked> {
        let walk = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            match entries.get(&(resource, opts.depth)) {
                Some(Entry::Ready(at, b)) if !refresh && at.elapsed() < MAX_AGE => {
                    return Some(Ok(Arc::new(b.truncated(opts.top))));
                }
                Some(Entry::Running(walk)) => walk.clone(),
                _ => {
                    let walk = self.start(resource, opts.depth);
                    entries.insert((resource, opts.depth), Entry::Running(walk.clone()));
                    walk
                }
            }
        };
        let walked = tokio::time::timeout(within, walk).await.ok()?;
        Some(walked.map(|b| Arc::new(b.truncated(opts.top))))
    }

    /// The last breakdown of `resource` by `opts`, however old, without walking.
    pub fn cached(&self, resource: Resource, opts: Options) -> Option<Arc<Breakdown>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&(resource, opts.depth)) {
            Some(Entry::Ready(_, b)) => Some(Arc::new(b.truncated(opts.top))),
            _ => None,
        }
    }

    /// Spawns the walk; when it ends it replaces its own entry (a success is kept, a failure
    /// is forgotten so the next request tries again).
    fn start(
        self: &Arc<Self>,
        resource: Resource,
        depth: usize,
    ) -> Shared<BoxFuture<'static, Walked>> {
        let cache = Arc::clone(self);
        let task = tokio::spawn(async move {
            let opts = Options {
                depth,
                top: MAX_TOP,
            };
            let walked = cache
                .walkers
                .walk(resource, opts, &cache.cancel)
                .await
                .map(Arc::new)
                .map_err(Arc::new);
            let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
            match &walked {
                Ok(b) => entries.insert((resource, depth), Entry::Ready(Instant::now(), b.clone())),
                Err(_) => entries.remove(&(resource, depth)),
            };
            walked
        });
        async move {
            task.await
                .unwrap_or_else(|_| Err(Arc::new(BreakdownError::Lost)))
        }
        .boxed()
        .shared()
    }
}
