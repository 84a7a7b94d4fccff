//! Test support: the real servers started by `scripts/services.sh up`.
//!
//! Every integration test asks [`services`] for the endpoints. When the env file is missing
//! (servers not started) the test is skipped with a message saying how to start them, unless
//! `JANITOR_REQUIRE_SERVICES=1` (CI), where a missing server fails the test.
//!
//! Tests run in parallel against the shared servers, so each takes a [`Namespace`]: its own
//! Redis database index and key prefix, bucket prefix, Mongo database and Qdrant collection
//! name. Tests that stop a server, or need Garage's clock shifted, start a private instance
//! with [`process`].

#![allow(dead_code)]

pub mod daemon;
pub mod process;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Endpoints and credentials from the services env file.
#[derive(Debug)]
pub struct Services {
    vars: HashMap<String, String>,
}

impl Services {
    /// A variable from the env file; panics with the file's name when it is absent.
    pub fn get(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {}", env_file().display()))
    }

    /// All variables, e.g. to hand to a `janitor` child process.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    pub fn redis_url(&self, db: u32) -> String {
        let base = self.get("REDIS_URL");
        let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
        format!("{base}/{db}")
    }
}

/// Where `scripts/services.sh up` writes the env file.
pub fn env_file() -> PathBuf {
    std::env::var_os("JANITOR_SERVICES_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".services/services.env"))
}

fn required() -> bool {
    std::env::var("JANITOR_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The servers, or `None` when they are not up and not required (the caller skips).
pub fn services() -> Option<&'static Services> {
    static SERVICES: OnceLock<Option<Services>> = OnceLock::new();
    let found = SERVICES.get_or_init(|| {
        let path = env_file();
        let vars: HashMap<String, String> = match dotenvy::from_path_iter(&path) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(err) => {
                if required() {
                    panic!(
                        "JANITOR_REQUIRE_SERVICES=1 but {} is unreadable ({err}): \
                         run scripts/services.sh up",
                        path.display()
                    );
                }
                return None;
            }
        };
        Some(Services { vars })
    });
    if found.is_none() {
        eprintln!(
            "skipped: the test servers are not running (start them with \
             `scripts/services.sh up`; set JANITOR_REQUIRE_SERVICES=1 to fail instead)"
        );
    }
    found.as_ref()
}

/// `let svc = require_services!();` returns from the test when the servers are not up.
#[macro_export]
macro_rules! require_services {
    () => {
        match $crate::support::services() {
            Some(s) => s,
            None => return,
        }
    };
}

/// A test's own corner of every shared server.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Unique, lowercase, `[a-z0-9-]`: usable in keys, prefixes and names.
    pub id: String,
    /// Redis database index 1..=63 (database 0 is left to people poking by hand).
    pub redis_db: u32,
}

impl Namespace {
    pub fn new(test: &str) -> Self {
        static NEXT_DB: AtomicU32 = AtomicU32::new(0);
        let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
        let test: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(24)
            .collect();
        Self {
            id: format!("{test}-{:08x}", fastrand::u32(..)),
            redis_db: 1 + n % 63,
        }
    }

    /// The URL of this namespace's Redis database, emptied first (databases are reused
    /// across test runs).
    pub async fn fresh_redis(&self, svc: &Services) -> String {
        let url = svc.redis_url(self.redis_db);
        let client = redis::Client::open(url.as_str()).expect("redis url");
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis up");
        redis::cmd("FLUSHDB")
            .query_async::<()>(&mut con)
            .await
            .expect("FLUSHDB");
        url
    }

    /// Prefix for Redis keys.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.id)
    }

    /// Prefix for S3 object keys (ends with `/`).
    pub fn s3_prefix(&self) -> String {
        format!("{}/", self.id)
    }

    /// Mongo database name (`-` is not welcome there).
    pub fn mongo_db(&self) -> String {
        self.id.replace('-', "_")
    }

    /// Qdrant collection name.
    pub fn collection(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.id.replace('-', "_"))
    }
}

/// A connection to the Redis server at `url`.
pub async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// How many keys of the Redis database at `url` match `pattern` (KEYS: small test data).
pub async fn count_keys(url: &str, pattern: &str) -> usize {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut redis_con(url).await)
        .await
        .unwrap();
    keys.len()
}

/// `n` string keys `{prefix}{i}` in the Redis database at `url`, pipelined.
pub async fn fill_redis(url: &str, prefix: &str, n: usize) {
    let mut con = redis_con(url).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("{prefix}{i}"))
                .arg("v")
                .ignore();
        }
        pipe.query_async::<()>(&mut con).await.unwrap();
    }
}

/// A run of `resource` asked from the command line, no priority.
pub fn cli_request(
    resource: resource_janitor::resource::Resource,
    dry_run: bool,
) -> resource_janitor::engine::RunRequest {
    resource_janitor::engine::RunRequest {
        id: None,
        resource,
        trigger: resource_janitor::runs::Trigger::Cli,
        dry_run,
        priority: None,
        reason: None,
    }
}

/// One run of the engine as of now.
pub async fn run_once(
    state: &resource_janitor::app::Janitor,
    req: resource_janitor::engine::RunRequest,
) -> resource_janitor::engine::RunResult {
    state.engine.run(req, std::time::SystemTime::now()).await
}

/// A context for driving a sweeper by hand: now, `ttl`, not a dry run, a cap of 1000
/// items (any fraction), plans spooled in `spool_dir`.
pub fn sweep_ctx(
    ttl: std::time::Duration,
    spool_dir: &std::path::Path,
) -> resource_janitor::backend::sweep::SweepContext {
    resource_janitor::backend::sweep::SweepContext {
        now: std::time::SystemTime::now(),
        ttl,
        dry_run: false,
        priority: None,
        cap: resource_janitor::plan::Cap {
            max_fraction: 1.0,
            max_count: 1000,
        },
        cancel: tokio_util::sync::CancellationToken::new(),
        spool_dir: spool_dir.to_path_buf(),
    }
}

/// Validated settings from `pairs`, with the audit log at `audit` and `extra` on top.
pub fn settings(
    pairs: &[(&str, &str)],
    audit: &std::path::Path,
    extra: &[(&str, &str)],
) -> std::sync::Arc<resource_janitor::config::Settings> {
    let mut environment: Vec<(String, String)> = pairs
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    environment.push(("JANITOR_AUDIT_LOG".into(), audit.display().to_string()));
    let sources = resource_janitor::config::Sources {
        environment,
        ..Default::default()
    };
    std::sync::Arc::new(resource_janitor::config::load(&sources).unwrap())
}

/// The audit log's applied batches: each `intent` record with the fields of its `applied`
/// record merged in (`deleted`, `failed`, `skipped`, `recovered`, ...). Intents without an
/// outcome and dry runs are left out.
pub fn applied_batches(audit: &std::path::Path) -> Vec<serde_json::Value> {
    let records: Vec<serde_json::Value> = std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is whole JSON"))
        .collect();
    let key = |r: &serde_json::Value| (r["run_id"].clone(), r["batch_seq"].clone());
    records
        .iter()
        .filter(|r| r["kind"] == "intent")
        .filter_map(|intent| {
            let outcome = records
                .iter()
                .find(|r| r["kind"] == "applied" && key(r) == key(intent))?;
            let mut merged = intent.clone();
            for (k, v) in outcome.as_object()? {
                if !["v", "kind", "time"].contains(&k.as_str()) {
                    merged[k] = v.clone();
                }
            }
            Some(merged)
        })
        .collect()
}
