//! Redis: connection and measurement (`INFO memory`, `DBSIZE`); the sweeper in [`sweep`].

pub mod cluster;
pub mod keys;
pub mod sweep;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use redis::aio::ConnectionManager;

use super::{BackendError, timed};
use crate::config::RedisConn;
use crate::resource::{Source, Usage};

/// Random keys whose idle time is sampled per server when measuring.
const IDLE_SAMPLE: usize = 20;

const NAME: &str = "redis";

/// A Redis client. Connects on first use and reconnects after a failure, so a server that
/// is down at startup degrades the Redis timer's runs only.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    con: Arc<Mutex<Option<ConnectionManager>>>,
    timeout: Duration,
    /// `host:port` when this client is one primary of a cluster.
    shard: Option<String>,
}

impl Redis {
    /// A client for `conn` (the URL is checked now; the server is contacted on first use).
    pub fn new(conn: &RedisConn, timeout: Duration) -> Result<Self, BackendError> {
        let config = |message: String| BackendError::Config {
            backend: NAME,
            message,
        };
        let client = if conn.url.expose().starts_with("rediss://") {
            // rustls finds two crypto providers in this build: use ring (an error only
            // says one is installed already)
            let _ = rustls::crypto::ring::default_provider().install_default();
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| config(format!("{}: {e}", p.display())))
            };
            let client_tls = match &conn.tls_client {
                Some((cert, key)) => Some(redis::ClientTlsConfig {
                    client_cert: read(cert)?,
                    client_key: read(key)?,
                }),
                None => None,
            };
            let certs = redis::TlsCertificates {
                client_tls,
                root_cert: conn.tls_ca_file.as_deref().map(read).transpose()?,
            };
            redis::Client::build_with_tls(conn.url.expose(), certs)
        } else {
            redis::Client::open(conn.url.expose())
        }
        .map_err(|e| config(e.to_string()))?;
        Ok(Self {
            client,
            con: Arc::default(),
            timeout,
            shard: None,
        })
    }

    /// The (multiplexed, auto-reconnecting) connection, established if need be.
    pub async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let mut slot = self.con.lock().await;
        if let Some(con) = slot.as_ref() {
            return Ok(con.clone());
        }
        let con = self.new_connection().await?;
        *slot = Some(con.clone());
        Ok(con)
    }

    /// A connection of its own (not shared with [`Redis::connection`]'s users): replies on
    /// it never queue behind theirs.
    pub async fn new_connection(&self) -> Result<ConnectionManager, BackendError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config);
        timed(NAME, self.timeout, manager).await
    }

    /// `host:port` of this cluster primary (`None` for a standalone server).
    pub fn shard(&self) -> Option<&str> {
        self.shard.as_deref()
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let mut con = self.connection().await?;
        timed(
            NAME,
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut con),
        )
        .await?;
        Ok(())
    }

    /// `used_memory` (bytes, from `INFO memory`) and `DBSIZE`, summed over the primaries of
    /// a cluster.
    pub async fn memory_and_size(&self) -> Result<Footprint, BackendError> {
        Self::memory_and_size_of(&self.shards().await?).await
    }

    /// `used_memory` and `DBSIZE` summed over `shards` (from [`Redis::shards`]).
    pub async fn memory_and_size_of(shards: &[Redis]) -> Result<Footprint, BackendError> {
        let mut total = Footprint::default();
        for shard in shards {
            let node = shard.node_memory_and_size().await?;
            total.used_memory += node.used_memory;
            total.keys += node.keys;
            total.lfu |= node.lfu;
        }
        Ok(total)
    }

    /// `used_memory`, `DBSIZE` and the eviction policy of this one server, in one round
    /// trip.
    async fn node_memory_and_size(&self) -> Result<Footprint, BackendError> {
        let mut con = self.connection().await?;
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
        let used = info_field(&info, "used_memory")
            .ok_or_else(|| BackendError::request(NAME, "INFO memory has no used_memory field"))?;
        Ok(Footprint {
            used_memory: used,
            keys: dbsize,
            lfu: info_text(&info, "maxmemory_policy").is_some_and(|p| p.contains("lfu")),
        })
    }

    /// `used_memory` against the budget, `DBSIZE`, and the oldest idle time among a bounded
    /// sample of random keys (as Redis's own eviction samples), marked as sampled.
    pub async fn measure(&self, budget_bytes: u64) -> Result<Usage, BackendError> {
        let shards = self.shards().await?;
        let f = Self::memory_and_size_of(&shards).await?;
        let mut usage = Usage {
            total_items: f.keys,
            size_bytes: Some(f.used_memory),
            size_source: Some(Source::Measured),
            usage_fraction: Some(f.used_memory as f64 / budget_bytes as f64),
            ..Usage::default()
        };
        if f.lfu {
            usage.notes.push(
                "oldest_age_hours: maxmemory-policy is LFU, the server tracks no idle time".into(),
            );
            return Ok(usage);
        }
        let mut oldest: Option<u64> = None;
        for shard in &shards {
            oldest = oldest.max(shard.sample_idle().await?);
        }
        usage.oldest_age_hours = oldest.map(|secs| secs as f64 / 3600.0);
        usage.oldest_source = oldest.map(|_| Source::Sampled);
        usage.notes.push(format!(
            "oldest_age_hours: the longest idle time of {IDLE_SAMPLE} random keys per server (a sample, as Redis's eviction takes)"
        ));
        Ok(usage)
    }

    /// The longest OBJECT IDLETIME among [`IDLE_SAMPLE`] RANDOMKEYs of this server, in one
    /// round trip each way (`None` for an empty database).
    async fn sample_idle(&self) -> Result<Option<u64>, BackendError> {
        let mut con = self.connection().await?;
        let mut pipe = redis::pipe();
        for _ in 0..IDLE_SAMPLE {
            pipe.cmd("RANDOMKEY");
        }
        let keys: Vec<Option<Vec<u8>>> =
            timed(NAME, self.timeout, pipe.query_async(&mut con)).await?;
        let keys: Vec<Vec<u8>> = keys.into_iter().flatten().collect();
        if keys.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("OBJECT").arg("IDLETIME").arg(k);
        }
        let idle: Vec<Option<u64>> = timed(NAME, self.timeout, pipe.query_async(&mut con)).await?;
        Ok(idle.into_iter().flatten().max())
    }
}

/// SCAN pages read ahead of the planner, on their own connection.
const SCAN_AHEAD: usize = 2;

/// Runs `scan(cursor)` (a `SCAN` command) page by page in a task of its own, on `con`, up
/// to `SCAN_AHEAD` (2) pages ahead of the reader; it stops at the end of the keyspace, after
/// an error (handed to the reader), or when the reader is gone.
pub fn scan_ahead(
    mut con: ConnectionManager,
    scan: impl Fn(u64) -> redis::Cmd + Send + 'static,
    timeout: Duration,
) -> tokio::sync::mpsc::Receiver<Result<Vec<Vec<u8>>, BackendError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(SCAN_AHEAD);
    tokio::spawn(async move {
        let mut cursor = 0;
        loop {
            let cmd = scan(cursor);
            let reply = timed(NAME, timeout, cmd.query_async(&mut con)).await;
            let (next, keys): (u64, Vec<Vec<u8>>) = match reply {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if tx.send(Ok(keys)).await.is_err() || next == 0 {
                return;
            }
            cursor = next;
        }
    });
    rx
}

/// Spaces out commands to at most `per_sec` a second (0: no limit).
pub struct Pacer {
    per_sec: u64,
    start: Instant,
    sent: u64,
}

impl Pacer {
    /// A pacer starting now.
    pub fn new(per_sec: u64) -> Self {
        Self {
            per_sec,
            start: Instant::now(),
            sent: 0,
        }
    }

    /// Accounts for `ops` commands; waits until they are due, or until shutdown.
    pub async fn take(&mut self, ops: u64, cancel: &CancellationToken) {
        self.sent += ops;
        if self.per_sec == 0 {
            return;
        }
        let due = self.start + Duration::from_secs_f64(self.sent as f64 / self.per_sec as f64);
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = cancel.cancelled() => {}
        }
    }
}

/// The keys matching a pattern on every primary, a SCAN page at a time:
/// `while let Some((server, keys)) = pages.next().await? { ... }`.
pub struct KeyPages {
    shards: std::vec::IntoIter<Redis>,
    current: Option<(Redis, ConnectionManager, u64)>,
    pattern: String,
    count: u64,
}

impl KeyPages {
    /// Pages of the keys matching `pattern` (a SCAN MATCH glob) on `redis`'s primaries,
    /// about `count` keys examined per page.
    pub async fn new(redis: &Redis, pattern: String, count: u64) -> Result<Self, BackendError> {
        Ok(Self {
            shards: redis.shards().await?.into_iter(),
            current: None,
            pattern,
            count,
        })
    }

    /// The next page: the server it came from (`""` outside a cluster) and its keys.
    pub async fn next(&mut self) -> Result<Option<(String, Vec<Vec<u8>>)>, BackendError> {
        loop {
            let (shard, con, cursor) = match &mut self.current {
                Some(current) => current,
                None => {
                    let Some(shard) = self.shards.next() else {
                        return Ok(None);
                    };
                    let con = shard.connection().await?;
                    self.current.insert((shard, con, 0))
                }
            };
            let mut scan = redis::cmd("SCAN");
            scan.arg(*cursor)
                .arg("MATCH")
                .arg(&self.pattern)
                .arg("COUNT")
                .arg(self.count);
            let (next, keys): (u64, Vec<Vec<u8>>) =
                timed(NAME, shard.timeout, scan.query_async(con)).await?;
            let addr = shard.shard().unwrap_or_default().to_string();
            if next == 0 {
                self.current = None;
            } else {
                *cursor = next;
            }
            if !keys.is_empty() {
                return Ok(Some((addr, keys)));
            }
        }
    }
}

/// What a server (or a cluster's primaries together) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// `used_memory`, bytes.
    pub used_memory: u64,
    /// `DBSIZE`.
    pub keys: u64,
    /// The eviction policy is LFU: the server refuses `OBJECT IDLETIME`.
    pub lfu: bool,
}

/// A field of an `INFO` reply, as text.
fn info_text<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// A numeric field of an `INFO` reply.
pub fn info_field(info: &str, field: &str) -> Option<u64> {
    info_text(info, field).and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn info_fields_match_exactly() {
        let info =
            "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_rss:2\r\n";
        assert_eq!(super::info_field(info, "used_memory"), Some(1_048_576));
        assert_eq!(super::info_field(info, "used_memory_rss"), Some(2));
        assert_eq!(super::info_field(info, "maxmemory"), None);
        let info = "maxmemory_policy:allkeys-lfu\r\n";
        assert_eq!(
            super::info_text(info, "maxmemory_policy"),
            Some("allkeys-lfu")
        );
    }
}
