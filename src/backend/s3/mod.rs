//! S3 (Garage, MinIO, AWS): connection and measurement by listing the bucket.
//!
//! The bucket's size is the sum of the listed object sizes, page by page (ListObjectsV2,
//! 1000 keys a page): the listing is streamed, never held. The sweeper is in [`sweep`].

pub mod dangling;
pub mod delete;
pub mod list;
pub mod sweep;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

pub use delete::DeleteAnswer;
pub use list::Page;
use tokio::sync::mpsc::Receiver;

use super::{BackendError, timed};
use crate::config::S3Conn;
use crate::resource::{Source, Usage};

const NAME: &str = "s3";

/// An S3 client bound to the application's bucket.
#[derive(Clone)]
pub struct S3 {
    client: Client,
    bucket: String,
    timeout: Duration,
    /// The last whole-bucket listing and when it was made.
    cache: Arc<Mutex<Option<(Instant, Listing)>>>,
    cache_ttl: Duration,
    /// Sub-prefixes listed at once (1: one sorted listing).
    list_parallelism: usize,
    /// DeleteObjects requests in flight on the bucket, whoever sends them: the S3 sweep and
    /// the document cascade are separate runs, each with its own adaptive window, and may
    /// overlap; together they stay within `JANITOR_S3_MAX_INFLIGHT`.
    deletes: Arc<tokio::sync::Semaphore>,
}

/// One of the bucket's DeleteObjects slots (`JANITOR_S3_MAX_INFLIGHT`), held by a request
/// from before its keys' last reference check until its answer.
#[derive(Debug)]
pub struct DeleteSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// What a listing of the whole bucket found.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Listing {
    /// Objects.
    pub objects: u64,
    /// Their sizes, summed.
    pub bytes: u64,
    /// The oldest LastModified.
    pub oldest: Option<SystemTime>,
}

impl Listing {
    /// Counts one listed object.
    pub fn add(&mut self, object: &aws_sdk_s3::types::Object) {
        self.objects += 1;
        self.bytes += object.size().unwrap_or(0).max(0) as u64;
        if let Some(t) = object
            .last_modified()
            .and_then(|t| SystemTime::try_from(*t).ok())
        {
            self.oldest = Some(self.oldest.map_or(t, |o| o.min(t)));
        }
    }

    fn usage(&self, budget_bytes: u64, now: SystemTime) -> Usage {
        Usage {
            total_items: self.objects,
            size_bytes: Some(self.bytes),
            size_source: Some(Source::Measured),
            usage_fraction: Some(self.bytes as f64 / budget_bytes as f64),
            oldest_age_hours: self
                .oldest
                .map(|t| crate::time::hours(crate::time::age(now, t))),
            oldest_source: self.oldest.map(|_| Source::Measured),
            notes: Vec::new(),
        }
    }
}

/// A DeleteObjects failure, by kind: throttling and transport trouble are worth a retry
/// after a pause; a refusal (access denied, no such bucket) is not.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, HttpResponse>,
) -> BackendError {
    let throttled = |message: String| BackendError::Throttled {
        backend: NAME,
        message,
    };
    match &e {
        SdkError::TimeoutError(_) => throttled("the request timed out".into()),
        SdkError::DispatchFailure(_) => throttled("the connection failed or was dropped".into()),
        SdkError::ResponseError(_) => throttled("the answer could not be read".into()),
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            let slow = matches!(
                code,
                "SlowDown"
                    | "ServiceUnavailable"
                    | "InternalError"
                    | "RequestTimeout"
                    | "Throttling"
            );
            let message = crate::secret::redact_url(&format!(
                "{code}: {}",
                se.err().message().unwrap_or_default()
            ));
            if slow || se.raw().status().as_u16() == 503 {
                throttled(message)
            } else {
                BackendError::Request {
                    backend: NAME,
                    message,
                }
            }
        }
        _ => BackendError::request(NAME, DisplayErrorContext(&e)),
    }
}

impl S3 {
    /// Builds the client (path-style addressing, as MinIO and Garage want).
    pub fn connect(conn: &S3Conn, timeout: Duration) -> Self {
        let credentials = Credentials::new(
            &conn.access_key_id,
            conn.secret_access_key.expose(),
            None,
            None,
            "janitor-settings",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&conn.endpoint)
            .region(Region::new(conn.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(true)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(timeout)
                    .connect_timeout(timeout)
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(config),
            bucket: conn.bucket.clone(),
            timeout,
            cache: Arc::default(),
            cache_ttl: Duration::ZERO,
            list_parallelism: 1,
            deletes: Arc::new(tokio::sync::Semaphore::new(
                tokio::sync::Semaphore::MAX_PERMITS,
            )),
        }
    }

    /// The client, for sweeps.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The pages of `ListObjectsV2` under `prefix` in key order, fetched by tasks up to two
    /// pages ahead of the reader, so listing overlaps with what the reader does with each
    /// page (the sweeper's reference checks), and across sub-prefixes in parallel when the
    /// client was built with a list parallelism above 1 (see [`list`]). Each page is under
    /// the request timeout. The end of the listing is an explicit `Ok(None)`, so a task that
    /// died is never taken for a complete listing; the tasks end after an error, at the end,
    /// or when the receiver is dropped.
    pub fn list_pages(&self, prefix: &str) -> Receiver<Page> {
        if self.list_parallelism <= 1 {
            return self.sequential(prefix);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let (this, prefix) = (self.clone(), prefix.to_string());
        tokio::spawn(async move { this.fan_out(&prefix, this.list_parallelism, tx).await });
        rx
    }

    /// The same client, listing up to `n` sub-prefixes at once.
    pub fn with_list_parallelism(mut self, n: usize) -> Self {
        self.list_parallelism = n.max(1);
        self
    }

    /// The same client, with at most `n` DeleteObjects requests in flight on the bucket
    /// across all its clones (every run that deletes from it).
    pub fn with_delete_inflight(mut self, n: usize) -> Self {
        self.deletes = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// A free slot for one DeleteObjects request on the bucket, if there is one now.
    pub fn try_delete_slot(&self) -> Option<DeleteSlot> {
        let permit = self.deletes.clone().try_acquire_owned().ok()?;
        Some(DeleteSlot { _permit: permit })
    }

    /// Waits for a slot for one DeleteObjects request on the bucket.
    pub async fn delete_slot(&self) -> DeleteSlot {
        let permit = self.deletes.clone().acquire_owned().await;
        DeleteSlot {
            _permit: permit.expect("the bucket's delete semaphore is never closed"),
        }
    }

    /// One DeleteObjects request (at most 1000 keys) in the bucket's `slot`, verbose so
    /// every key is accounted for, with the SDK's retries off (the caller's throttle
    /// decides). A 503, a throttling code, a timeout, a dropped connection or an answer that
    /// cannot be read is [`BackendError::Throttled`] (or `Timeout`); a 200 that lists no key
    /// leaves them all in `unanswered`.
    pub async fn delete_objects(
        &self,
        slot: DeleteSlot,
        keys: &[String],
    ) -> Result<DeleteAnswer, BackendError> {
        debug_assert!(keys.len() <= 1000);
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BackendError::request(NAME, e))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(false)
            .build()
            .map_err(|e| BackendError::request(NAME, e))?;
        let request = self
            .client()
            .delete_objects()
            .bucket(self.bucket())
            .delete(delete)
            .customize()
            .config_override(
                aws_sdk_s3::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send();
        let out = match tokio::time::timeout(self.timeout, request).await {
            Err(_) => {
                return Err(BackendError::Timeout {
                    backend: NAME,
                    after: self.timeout,
                });
            }
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(out)) => out,
        };
        drop(slot);
        let mut answer = DeleteAnswer {
            deleted: out
                .deleted()
                .iter()
                .filter_map(|d| d.key().map(str::to_owned))
                .collect(),
            errors: out
                .errors()
                .iter()
                .filter_map(|e| Some((e.key()?.to_owned(), e.code().unwrap_or("").to_owned())))
                .collect(),
            unanswered: Vec::new(),
        };
        let mentioned: std::collections::HashSet<&str> = answer
            .deleted
            .iter()
            .chain(answer.errors.iter().map(|(k, _)| k))
            .map(String::as_str)
            .collect();
        let unanswered = keys
            .iter()
            .filter(|k| !mentioned.contains(k.as_str()))
            .cloned()
            .collect();
        answer.unanswered = unanswered;
        Ok(answer)
    }

    /// `HeadBucket`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let req = self.client.head_bucket().bucket(&self.bucket).send();
        timed(NAME, self.timeout, req).await.map(|_| ())
    }

    /// Keeps a whole-bucket listing (the sweep's) for [`S3::measure`].
    pub fn remember(&self, listing: Listing) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), listing));
    }

    /// Objects in the bucket at its last whole listing (the sweep's or the monitor's), if
    /// there was one.
    pub fn last_listed_objects(&self) -> Option<u64> {
        let cached = *self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cached.map(|(_, listing)| listing.objects)
    }

    /// The same client, reusing whole-bucket listings younger than `ttl` (0: never).
    pub fn with_measure_cache(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Objects and bytes in the bucket (listed, or a listing younger than the cache TTL),
    /// the oldest object's age.
    pub async fn measure(&self, budget_bytes: u64, now: SystemTime) -> Result<Usage, BackendError> {
        let cached = *self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, listing)) = cached
            && at.elapsed() < self.cache_ttl
        {
            return Ok(listing.usage(budget_bytes, now));
        }
        let mut pages = self.list_pages("");
        let mut listing = Listing::default();
        loop {
            let page = match pages.recv().await {
                Some(Ok(Some(page))) => page,
                Some(Ok(None)) => break,
                Some(Err(e)) => return Err(e),
                None => return Err(BackendError::request(NAME, "listing ended early")),
            };
            for object in page.contents() {
                listing.add(object);
            }
        }
        self.remember(listing);
        Ok(listing.usage(budget_bytes, now))
    }
}
