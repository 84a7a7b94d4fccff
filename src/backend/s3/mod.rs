//! S3 (Garage, MinIO, AWS): connection and measurement by listing the bucket.
//!
//! The bucket's size is the sum of the listed object sizes, page by page (ListObjectsV2,
//! 1000 keys a page): the listing is streamed, never held. The sweeper is in [`sweep`].

pub mod dangling;
pub mod sweep;

use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use super::{BackendError, timed};
use crate::config::S3Conn;
use crate::resource::Usage;

const NAME: &str = "s3";

/// An S3 client bound to the application's bucket.
#[derive(Clone)]
pub struct S3 {
    client: Client,
    bucket: String,
    timeout: Duration,
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

    /// `HeadBucket`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let req = self.client.head_bucket().bucket(&self.bucket).send();
        timed(NAME, self.timeout, req).await.map(|_| ())
    }

    /// Objects and bytes in the bucket (listed), the oldest object's age.
    pub async fn measure(&self, budget_bytes: u64, now: SystemTime) -> Result<Usage, BackendError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .into_paginator()
            .send();
        let (mut objects, mut bytes) = (0u64, 0u64);
        let mut oldest: Option<SystemTime> = None;
        loop {
            let page = match tokio::time::timeout(self.timeout, pages.next()).await {
                Err(_) => {
                    return Err(BackendError::Timeout {
                        backend: NAME,
                        after: self.timeout,
                    });
                }
                Ok(None) => break,
                Ok(Some(page)) => page.map_err(|e| BackendError::request(NAME, e))?,
            };
            for object in page.contents() {
                objects += 1;
                bytes += object.size().unwrap_or(0).max(0) as u64;
                if let Some(t) = object
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                {
                    oldest = Some(oldest.map_or(t, |o| o.min(t)));
                }
            }
        }
        Ok(Usage {
            total_items: objects,
            size_bytes: Some(bytes),
            usage_fraction: bytes as f64 / budget_bytes as f64,
            oldest_age_hours: oldest.map(|t| crate::time::hours(crate::time::age(now, t))),
        })
    }
}
