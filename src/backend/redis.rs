//! Redis: connection and measurement (`INFO memory`, `DBSIZE`).

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::{BackendError, timed};
use crate::config::RedisConn;
use crate::resource::Usage;

const NAME: &str = "redis";

/// A Redis connection (multiplexed, reconnecting).
#[derive(Clone)]
pub struct Redis {
    con: ConnectionManager,
    timeout: Duration,
}

impl Redis {
    /// Connects; fails if the server cannot be reached within `timeout`.
    pub async fn connect(conn: &RedisConn, timeout: Duration) -> Result<Self, BackendError> {
        let client = redis::Client::open(conn.url.expose()).map_err(|e| BackendError::Config {
            backend: NAME,
            message: e.to_string(),
        })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let con = timed(NAME, timeout, ConnectionManager::new_with_config(client, config)).await?;
        Ok(Self { con, timeout })
    }

    /// The connection, for sweeps.
    pub fn connection(&self) -> ConnectionManager {
        self.con.clone()
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut con = self.con.clone();
        timed(NAME, self.timeout, redis::cmd("PING").query_async::<String>(&mut con)).await?;
        Ok(())
    }

    /// `used_memory` against the budget, and `DBSIZE`.
    pub async fn measure(&self, budget_bytes: u64) -> Result<Usage, BackendError> {
        let mut con = self.con.clone();
        let (info, dbsize): (String, u64) = timed(
            NAME,
            self.timeout,
            redis::pipe()
                .cmd("INFO")
                .arg("memory")
                .cmd("DBSIZE")
                .query_async(&mut con),
        )
        .await?;
        let used = info_field(&info, "used_memory").ok_or_else(|| {
            BackendError::request(NAME, "INFO memory has no used_memory field")
        })?;
        Ok(Usage {
            total_items: dbsize,
            size_bytes: Some(used),
            usage_fraction: used as f64 / budget_bytes as f64,
            oldest_age_hours: None,
        })
    }
}

/// A numeric field of an `INFO` reply.
pub fn info_field(info: &str, field: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn info_fields_match_exactly() {
        let info = "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_rss:2\r\n";
        assert_eq!(super::info_field(info, "used_memory"), Some(1_048_576));
        assert_eq!(super::info_field(info, "used_memory_rss"), Some(2));
        assert_eq!(super::info_field(info, "maxmemory"), None);
    }
}
