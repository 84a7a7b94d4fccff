//! The stores the janitor talks to, one file each.
//!
//! Each backend connects from its settings, answers a cheap ping (`janitor check`,
//! `/readyz`) and measures its store from the server itself: Redis `INFO memory`, Qdrant
//! collection info, the S3 bucket by listing, MongoDB `dbStats`. Nothing is estimated from
//! counts. Every request runs under the configured backend timeout, so a hung server
//! degrades its own loop and nothing else.

pub mod documents;
pub mod mongo;
pub mod qdrant;
pub mod redis;
pub mod s3;
pub mod sweep;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use self::mongo::Mongo;
use self::qdrant::Qdrant;
use self::qdrant::sweep::QdrantSweeper;
use self::redis::Redis;
use self::redis::sweep::RedisSweeper;
use self::s3::S3;
use self::s3::sweep::S3Sweeper;
use self::sweep::Sweeper;
use crate::config::Settings;
use crate::drift::DriftBoard;
use crate::metrics::Metrics;
use crate::resource::Resource;

/// A backend request that failed. One line, no secrets (URLs are never included).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The client could not be built from the settings.
    #[error("{backend}: bad configuration: {message}")]
    Config {
        /// Which backend.
        backend: &'static str,
        /// Why.
        message: String,
    },
    /// The server answered with an error or could not be reached.
    #[error("{backend}: {message}")]
    Request {
        /// Which backend.
        backend: &'static str,
        /// The error.
        message: String,
    },
    /// The server says the thing asked for does not exist (a collection deleted meanwhile).
    #[error("{backend}: {message}")]
    NotFound {
        /// Which backend.
        backend: &'static str,
        /// The server's message.
        message: String,
    },
    /// The server asked to slow down (503, SlowDown or another throttling code, an answer
    /// it could not finish): worth another try after a pause.
    #[error("{backend}: throttled: {message}")]
    Throttled {
        /// Which backend.
        backend: &'static str,
        /// What it said.
        message: String,
    },
    /// No answer within the backend timeout.
    #[error("{backend}: timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// The timeout.
        after: Duration,
    },
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
                S3::connect(c, timeout)
                    .with_measure_cache(settings.s3_sweep.measure_cache)
                    .with_list_parallelism(settings.s3_sweep.list_parallelism)
                    .with_delete_inflight(settings.s3_sweep.max_inflight)
            }),
            mongo: match &settings.mongo {
                Some(c) => Some(Mongo::connect(c, timeout).await?),
                None => None,
            },
        })
    }

    /// Whether `resource`'s backend is configured (documents are no backend of their own).
    pub fn configured(&self, resource: Resource) -> bool {
        match resource {
            Resource::Redis => self.redis.is_some(),
            Resource::Qdrant => self.qdrant.is_some(),
            Resource::S3 => self.s3.is_some(),
            Resource::MongoDb => self.mongo.is_some(),
            Resource::Documents => false,
        }
    }

    /// Pings every configured backend: (store, result), disabled ones as `None`.
    pub async fn ping_all(&self) -> Vec<(Resource, Option<Result<(), BackendError>>)> {
        vec![
            (
                Resource::Redis,
                opt(self.redis.as_ref().map(|b| b.ping())).await,
            ),
            (
                Resource::Qdrant,
                opt(self.qdrant.as_ref().map(|b| b.ping())).await,
            ),
            (Resource::S3, opt(self.s3.as_ref().map(|b| b.ping())).await),
            (
                Resource::MongoDb,
                opt(self.mongo.as_ref().map(|b| b.ping())).await,
            ),
        ]
    }

    /// The sweepers of the configured backends.
    pub fn sweepers(
        &self,
        settings: &Settings,
        metrics: &Metrics,
        drift: &DriftBoard,
    ) -> Vec<Arc<dyn Sweeper>> {
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
            sweepers.push(Arc::new(
                S3Sweeper::new(
                    s3.clone(),
                    self.mongo.clone(),
                    settings.s3_sweep.clone(),
                    Some(metrics.clone()),
                )
                .with_drift(drift.clone()),
            ));
        }
        if let (Some(mongo), true) = (&self.mongo, settings.documents.enabled) {
            let collections = settings
                .qdrant_sweep
                .collections
                .iter()
                .map(|(c, _)| c.clone())
                .collect();
            let dependents = documents::Dependents {
                s3: self.s3.clone(),
                qdrant: self.qdrant.clone().map(|q| (q, collections)),
                redis: self.redis.clone(),
                s3_limits: documents::S3Limits {
                    max_inflight: settings.s3_sweep.max_inflight,
                    max_rps: settings.s3_sweep.max_rps,
                    recheck_after: settings.s3_sweep.recheck_after,
                },
            };
            sweepers.push(Arc::new(documents::DocumentsSweeper::new(
                mongo.clone(),
                dependents,
                settings.documents.clone(),
                drift.clone(),
            )));
        }
        sweepers
    }
}

async fn opt<T>(f: Option<impl Future<Output = T>>) -> Option<T> {
    match f {
        Some(f) => Some(f.await),
        None => None,
    }
}

impl BackendError {
    pub(crate) fn request(backend: &'static str, err: impl std::fmt::Display) -> Self {
        BackendError::Request {
            backend,
            message: crate::secret::redact_url(&err.to_string()),
        }
    }
}

/// Runs a backend request under `timeout`.
pub(crate) async fn timed<T, E: std::fmt::Display>(
    backend: &'static str,
    timeout: Duration,
    fut: impl IntoFuture<Output = Result<T, E>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BackendError::request(backend, e)),
        Err(_) => Err(BackendError::Timeout {
            backend,
            after: timeout,
        }),
    }
}
