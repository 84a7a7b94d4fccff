//! The stores the janitor talks to, one file each.
//!
//! Each backend connects from its settings, answers a cheap ping (`janitor check`,
//! `/readyz`) and measures its store from the server itself: Redis `INFO memory`, Qdrant
//! collection info, the S3 bucket by listing, MongoDB `dbStats`. Nothing is estimated from
//! counts. Every request runs under the configured backend timeout, so a hung server
//! degrades its own loop and nothing else.

pub mod mongo;
pub mod qdrant;
pub mod redis;
pub mod s3;

use std::future::IntoFuture;
use std::time::Duration;

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
    /// No answer within the backend timeout.
    #[error("{backend}: timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// The timeout.
        after: Duration,
    },
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
