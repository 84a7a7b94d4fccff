//! Qdrant: connection and measurement (points per collection from collection info).

use std::time::Duration;

use qdrant_client::Qdrant as Client;

use super::{BackendError, timed};
use crate::config::QdrantConn;
use crate::resource::Usage;

const NAME: &str = "qdrant";

/// A Qdrant gRPC client.
#[derive(Clone)]
pub struct Qdrant {
    client: std::sync::Arc<Client>,
    timeout: Duration,
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
            client: std::sync::Arc::new(client),
            timeout,
        })
    }

    /// The client, for sweeps.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `HealthCheck`, then `ListCollections` (which needs the API key when one is required).
    pub async fn ping(&self) -> Result<(), BackendError> {
        timed(NAME, self.timeout, self.client.health_check()).await?;
        timed(NAME, self.timeout, self.client.list_collections()).await?;
        Ok(())
    }

    /// Points in every collection, against the points budget.
    pub async fn measure(&self, budget_points: u64) -> Result<Usage, BackendError> {
        let list = timed(NAME, self.timeout, self.client.list_collections()).await?;
        let mut total = 0u64;
        for c in list.collections {
            match timed(NAME, self.timeout, self.client.collection_info(&c.name)).await {
                Ok(info) => total += info.result.and_then(|r| r.points_count).unwrap_or(0),
                // deleted between list and info: not an error
                Err(BackendError::Request { message, .. }) if message.contains("Not found") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Usage {
            total_items: total,
            // the server reports no byte size over gRPC; it is not estimated from counts
            size_bytes: None,
            usage_fraction: total as f64 / budget_points as f64,
            oldest_age_hours: None,
        })
    }
}
