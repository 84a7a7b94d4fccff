//! Qdrant: connection, retried calls, and measurement (points, segments and the oldest
//! point per collection, from the server itself).

pub mod orphans;
pub mod sweep;
pub mod timestamp;
pub mod windows;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use qdrant_client::qdrant::{
    CollectionInfo, Condition, CountPointsBuilder, Datatype, DeletePointsBuilder, Direction,
    Filter, OrderByBuilder, PayloadIncludeSelector, RetrievedPoint, ScrollPointsBuilder, Value,
    VectorParams, vectors_config,
};
use qdrant_client::{Qdrant as Client, QdrantError};

use self::timestamp::IndexKind;
use super::BackendError;
use crate::config::{QdrantConn, TimestampFormat};
use crate::resource::{Source, Usage};

const NAME: &str = "qdrant";
/// Retries of a call that failed transiently (server unavailable, timeout, overloaded).
const RETRIES: usize = 2;

/// A Qdrant gRPC client.
#[derive(Clone)]
pub struct Qdrant {
    client: Arc<Client>,
    timeout: Duration,
}

pub use crate::resource::CollectionStats;

/// See [`Qdrant::pages`].
pub struct Pages<'a> {
    qdrant: &'a Qdrant,
    collection: &'a str,
    filter: &'a Filter,
    fields: &'a [&'a str],
    page: u32,
    offset: Option<qdrant_client::qdrant::PointId>,
    done: bool,
}

impl Pages<'_> {
    /// The next page of points, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<RetrievedPoint>>, BackendError> {
        if self.done {
            return Ok(None);
        }
        let offset = self.offset.take();
        let scrolled = self
            .qdrant
            .scroll(self.collection, self.filter, self.fields, self.page, offset)
            .await;
        let (points, next) = match scrolled {
            Ok(page) => page,
            Err(BackendError::NotFound { .. }) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.done = next.is_none();
        self.offset = next;
        Ok(Some(points))
    }
}

struct Failure {
    error: BackendError,
    transient: bool,
}

fn failure(e: QdrantError) -> Failure {
    use tonic::Code;
    let (code, message) = match &e {
        QdrantError::ResponseError { status } => (Some(status.code()), status.message()),
        QdrantError::ResourceExhaustedError { status, .. } => {
            (Some(status.code()), status.message())
        }
        _ => (None, ""),
    };
    let error = match code {
        Some(Code::NotFound) => BackendError::NotFound {
            backend: NAME,
            message: message.to_string(),
        },
        Some(_) if !message.is_empty() => BackendError::request(NAME, message),
        _ => BackendError::request(NAME, e),
    };
    let transient = matches!(
        code,
        Some(Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted)
    );
    Failure { error, transient }
}

impl Qdrant {
    /// Builds the client (gRPC connects lazily; [`Qdrant::ping`] checks reachability).
    pub fn connect(conn: &QdrantConn, timeout: Duration) -> Result<Self, BackendError> {
        let mut builder = Client::from_url(&conn.url)
            .timeout(timeout)
            .connect_timeout(timeout)
            .skip_compatibility_check();
        if let Some(key) = &conn.api_key {
            builder = builder.api_key(key.expose().to_string());
        }
        let client = builder.build().map_err(|e| BackendError::Config {
            backend: NAME,
            message: e.to_string(),
        })?;
        Ok(Self {
            client: Arc::new(client),
            timeout,
        })
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one request under the timeout, retrying transient failures with exponential
    /// backoff. `request` builds the call afresh for each try; only idempotent calls (reads,
    /// deletes by filter or id) go through here.
    pub async fn call<T, F, Fut>(&self, mut request: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QdrantError>>,
    {
        let timeout = self.timeout;
        let attempt = || {
            let fut = request();
            async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(failure(e)),
                    Err(_) => Err(Failure {
                        error: BackendError::Timeout {
                            backend: NAME,
                            after: timeout,
                        },
                        transient: true,
                    }),
                }
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_times(RETRIES)
            .with_jitter();
        attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|f: &Failure| f.transient)
            .await
            .map_err(|f| f.error)
    }

    /// `HealthCheck`, then `ListCollections` (which needs the API key when one is required).
    pub async fn ping(&self) -> Result<(), BackendError> {
        self.call(|| self.client.health_check()).await?;
        self.collections().await?;
        Ok(())
    }

    /// The names of every collection.
    pub async fn collections(&self) -> Result<Vec<String>, BackendError> {
        let list = self.call(|| self.client.list_collections()).await?;
        Ok(list.collections.into_iter().map(|c| c.name).collect())
    }

    /// A collection's info.
    pub async fn info(&self, collection: &str) -> Result<CollectionInfo, BackendError> {
        let info = self
            .call(|| self.client.collection_info(collection))
            .await?;
        info.result.ok_or_else(|| BackendError::NotFound {
            backend: NAME,
            message: format!("collection {collection} has no info"),
        })
    }

    /// Exact count of the points matching `filter` (all points without one).
    pub async fn count(
        &self,
        collection: &str,
        filter: Option<Filter>,
    ) -> Result<u64, BackendError> {
        let r = self
            .call(|| {
                let mut req = CountPointsBuilder::new(collection).exact(true);
                if let Some(f) = &filter {
                    req = req.filter(f.clone());
                }
                self.client.count(req)
            })
            .await?;
        Ok(r.result.map_or(0, |c| c.count))
    }

    /// Deletes the points matching `filter` and waits until the server applied it.
    pub async fn delete(&self, collection: &str, filter: Filter) -> Result<(), BackendError> {
        self.call(|| {
            let req = DeletePointsBuilder::new(collection)
                .points(filter.clone())
                .wait(true);
            self.client.delete_points(req)
        })
        .await?;
        Ok(())
    }

    /// One page of a scroll: points matching `filter` from `offset`, with the payload
    /// `fields` only (no vectors). Returns the points and the next page's offset.
    pub async fn scroll(
        &self,
        collection: &str,
        filter: &Filter,
        fields: &[&str],
        limit: u32,
        offset: Option<qdrant_client::qdrant::PointId>,
    ) -> Result<(Vec<RetrievedPoint>, Option<qdrant_client::qdrant::PointId>), BackendError> {
        let r = self
            .call(|| {
                let mut req = ScrollPointsBuilder::new(collection)
                    .filter(filter.clone())
                    .limit(limit)
                    .with_vectors(false)
                    .with_payload(payload(fields));
                if let Some(o) = &offset {
                    req = req.offset(o.clone());
                }
                self.client.scroll(req)
            })
            .await?;
        Ok((r.result, r.next_page_offset))
    }

    /// Every point matching `filter` in `collection`, a scroll page at a time, with the
    /// payload `fields` only. A collection that does not exist has no page.
    pub fn pages<'a>(
        &'a self,
        collection: &'a str,
        filter: &'a Filter,
        fields: &'a [&'a str],
        page: u32,
    ) -> Pages<'a> {
        Pages {
            qdrant: self,
            collection,
            filter,
            fields,
            page,
            offset: None,
            done: false,
        }
    }

    /// The value of `field` on one point that has it (any point), if one does.
    pub async fn sample(
        &self,
        collection: &str,
        field: &str,
    ) -> Result<Option<Value>, BackendError> {
        let has = Filter::must_not([Condition::is_empty(field)]);
        let (points, _) = self.scroll(collection, &has, &[field], 1, None).await?;
        Ok(points
            .into_iter()
            .next()
            .and_then(|mut p| p.payload.remove(field)))
    }

    /// The smallest value of an indexed `field` (`order_by` ascending, limit 1).
    pub async fn oldest(
        &self,
        collection: &str,
        field: &str,
    ) -> Result<Option<Value>, BackendError> {
        let r = self
            .call(|| {
                let order = OrderByBuilder::new(field).direction(Direction::Asc.into());
                let req = ScrollPointsBuilder::new(collection)
                    .limit(1)
                    .order_by(order)
                    .with_vectors(false)
                    .with_payload(payload(&[field]));
                self.client.scroll(req)
            })
            .await?;
        Ok(r.result
            .into_iter()
            .next()
            .and_then(|mut p| p.payload.remove(field)))
    }

    /// Points in every collection against the points budget, and each collection's facts.
    /// A collection deleted while measuring is skipped.
    pub async fn measure(
        &self,
        budget_points: u64,
        timestamp_field: &str,
        format: TimestampFormat,
        now: SystemTime,
    ) -> Result<(Usage, Vec<CollectionStats>), BackendError> {
        let mut stats = Vec::new();
        for name in self.collections().await? {
            match self
                .collection_stats(&name, timestamp_field, format, now)
                .await
            {
                Ok(s) => stats.push(s),
                Err(BackendError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let total: u64 = stats.iter().map(|s| s.points).sum();
        let oldest = stats.iter().filter_map(|s| s.oldest_age).max();
        // the server reports no byte size over gRPC: the vectors' size is estimated
        let bytes: Option<u64> = stats.iter().map(|s| s.vector_bytes).sum();
        let mut notes = vec![
            "size_mb: estimated from points x dimension x bytes per element of every named vector (payloads and indexes not counted)".to_string(),
        ];
        let unindexed: Vec<&str> = stats
            .iter()
            .filter(|s| s.oldest_age.is_none())
            .map(|s| s.name.as_str())
            .collect();
        if stats.is_empty() {
            notes.push("oldest_age_hours: no collections".to_string());
        } else if oldest.is_none() || !unindexed.is_empty() {
            notes.push(format!(
                "oldest_age_hours: only from collections with a range index on the timestamp field (not: {})",
                unindexed.join(", ")
            ));
        }
        let usage = Usage {
            total_items: total,
            size_bytes: bytes,
            size_source: bytes.map(|_| Source::Estimated),
            usage_fraction: Some(total as f64 / budget_points as f64),
            oldest_age_hours: oldest.map(|a| a.as_secs_f64() / 3600.0),
            oldest_source: oldest.map(|_| Source::Measured),
            notes,
        };
        Ok((usage, stats))
    }

    async fn collection_stats(
        &self,
        name: &str,
        field: &str,
        format: TimestampFormat,
        now: SystemTime,
    ) -> Result<CollectionStats, BackendError> {
        let info = self.info(name).await?;
        let index = info
            .payload_schema
            .get(field)
            .map(|s| IndexKind::of(s.data_type));
        let indexed = matches!(index, Some(IndexKind::Numeric | IndexKind::Datetime));
        let mut oldest_age = None;
        if indexed && let Some(value) = self.oldest(name, field).await? {
            let encoding = timestamp::resolve(format, index, &value).ok();
            oldest_age = encoding
                .and_then(|e| timestamp::instant(&value, e))
                .and_then(|t| now.duration_since(t).ok());
        }
        let points = info.points_count.unwrap_or(0);
        let per_point = info
            .config
            .as_ref()
            .and_then(|c| c.params.as_ref())
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref())
            .map(|config| match config {
                vectors_config::Config::Params(p) => vector_bytes(p),
                vectors_config::Config::ParamsMap(m) => m.map.values().map(vector_bytes).sum(),
            });
        Ok(CollectionStats {
            name: name.to_string(),
            points,
            segments: info.segments_count,
            indexed_vectors: info.indexed_vectors_count.unwrap_or(0),
            timestamp_indexed: indexed,
            oldest_age,
            vector_bytes: per_point.map(|b| b.saturating_mul(points)),
        })
    }
}

/// A point id as plan text: its number, or its UUID.
pub fn id_text(id: &qdrant_client::qdrant::PointId) -> Option<String> {
    use qdrant_client::qdrant::point_id::PointIdOptions;
    match id.point_id_options.as_ref()? {
        PointIdOptions::Num(n) => Some(n.to_string()),
        PointIdOptions::Uuid(u) => Some(u.clone()),
    }
}

/// The point id a plan's text stands for (see [`id_text`]).
pub fn point_id(text: &str) -> qdrant_client::qdrant::PointId {
    match text.parse::<u64>() {
        Ok(n) => n.into(),
        Err(_) => text.to_string().into(),
    }
}

/// Bytes of one vector: dimension x bytes per element (float32 by default).
fn vector_bytes(p: &VectorParams) -> u64 {
    let element = match p.datatype.and_then(|d| Datatype::try_from(d).ok()) {
        Some(Datatype::Uint8) => 1,
        Some(Datatype::Float16) => 2,
        _ => 4,
    };
    p.size * element
}

/// A payload selector for `fields` (none: no payload).
fn payload(fields: &[&str]) -> qdrant_client::qdrant::with_payload_selector::SelectorOptions {
    if fields.is_empty() {
        false.into()
    } else {
        PayloadIncludeSelector {
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::PointId;

    #[test]
    fn point_ids_round_trip_through_plan_text() {
        for id in [
            PointId::from(42u64),
            PointId::from("0b9c6f1e-2f0a-4a53-9d8b-3c1e5a7f9e21".to_string()),
        ] {
            let text = id_text(&id).unwrap();
            assert_eq!(point_id(&text), id);
        }
    }
}
