//! The validated settings the daemon runs with, and the checks that produce them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::reader::Reader;
use super::{ConfigError, RawConfig};
use crate::resource::{PerResource, Resource, Thresholds};
use crate::secret::{Secret, SecretUrl};

const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;

/// Everything the daemon needs, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// TTLs per resource, normal and under pressure.
    pub retention: Retention,
    /// Loop intervals.
    pub intervals: Intervals,
    /// Usage fractions that map to priorities.
    pub thresholds: Thresholds,
    /// Budgets usage is measured against.
    pub budgets: Budgets,
    /// Redis connection; `None` disables Redis.
    pub redis: Option<RedisConn>,
    /// Qdrant connection; `None` disables Qdrant.
    pub qdrant: Option<QdrantConn>,
    /// S3 connection; `None` disables S3.
    pub s3: Option<S3Conn>,
    /// MongoDB connection (reference source); `None` disables it.
    pub mongo: Option<MongoConn>,
    /// Deletion caps, dry-run, audit log.
    pub safety: Safety,
    /// Queue size, jitter, backoff, timeouts.
    pub scheduling: Scheduling,
    /// The admin API.
    pub admin: Admin,
    /// Log output format.
    pub log_format: LogFormat,
    /// How long SIGTERM waits for workers.
    #[serde(with = "secs")]
    pub shutdown_timeout: Duration,
    /// The Redis sweeper's policies and pacing.
    pub redis_sweep: super::sweepers::RedisSweep,
    /// The S3 sweeper's prefixes, grace and reference source.
    pub s3_sweep: super::sweepers::S3Sweep,
    /// The Qdrant sweeper.
    pub qdrant_sweep: super::sweepers::QdrantSweep,
    /// The document lifecycle.
    pub documents: super::documents::DocumentsSweep,
    /// The SHA-256 dedup index.
    pub dedup: super::dedup::Dedup,
    /// The alert webhook.
    pub alerts: super::ops::Alerts,
    /// The leader lease.
    pub leader: super::ops::Leader,
    /// The history file and the daily report.
    pub history: super::ops::History,
}

/// TTLs of the swept stores (`None` for MongoDB, which is never swept).
#[derive(Debug, Clone, Serialize)]
pub struct Retention {
    /// Normal TTLs.
    pub ttl: PerResource<Option<Duration>>,
    /// TTLs for HIGH and CRITICAL tasks.
    pub pressure_ttl: PerResource<Option<Duration>>,
}

impl Retention {
    /// The normal TTL of `resource` (zero for a store that is not swept).
    pub fn ttl(&self, resource: Resource) -> Duration {
        self.ttl[resource].unwrap_or_default()
    }

    /// The TTL under pressure (never below the floor unless short TTLs are allowed).
    pub fn pressure_ttl(&self, resource: Resource) -> Duration {
        self.pressure_ttl[resource].unwrap_or_default()
    }
}

/// Loop intervals.
#[derive(Debug, Clone, Serialize)]
pub struct Intervals {
    /// Sweep timer intervals of the swept stores.
    pub sweep: PerResource<Option<Duration>>,
    /// Monitoring loop interval.
    #[serde(with = "secs")]
    pub monitoring: Duration,
}

/// Budgets.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Budgets {
    /// Redis used_memory budget, bytes.
    pub redis_memory_bytes: u64,
    /// Qdrant points budget.
    pub qdrant_points: u64,
    /// S3 bucket size budget, bytes.
    pub s3_bytes: u64,
    /// MongoDB reference collection size budget, bytes (optional: without, no usage).
    pub mongodb_bytes: Option<u64>,
}

/// Redis connection.
#[derive(Debug, Clone, Serialize)]
pub struct RedisConn {
    /// The URL (password included; shown redacted).
    pub url: SecretUrl,
    /// CA certificates for `rediss://` (PEM file); `None`: the system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS (PEM files).
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// Qdrant connection.
#[derive(Debug, Clone, Serialize)]
pub struct QdrantConn {
    /// gRPC URL.
    pub url: String,
    /// API key.
    pub api_key: Option<Secret>,
}

/// S3 connection.
#[derive(Debug, Clone, Serialize)]
pub struct S3Conn {
    /// Endpoint URL.
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: Secret,
}

/// MongoDB connection.
#[derive(Debug, Clone, Serialize)]
pub struct MongoConn {
    /// URI (password included; shown redacted).
    pub uri: SecretUrl,
    /// Database of the application's documents.
    pub database: String,
}

/// The safety model's knobs.
#[derive(Debug, Clone, Serialize)]
pub struct Safety {
    /// Stop every sweep after its plan.
    pub dry_run: bool,
    /// A plan deleting more than this fraction of the store is not applied.
    pub max_delete_fraction: f64,
    /// A plan deleting more than this many items is not applied.
    pub max_delete_count: u64,
    /// TTLs below the floors were allowed.
    pub allow_short_ttl: bool,
    /// The append-only audit log.
    pub audit_log: PathBuf,
}

/// Scheduling knobs.
#[derive(Debug, Clone, Serialize)]
pub struct Scheduling {
    /// Most tasks the queue holds.
    pub queue_capacity: usize,
    /// Tasks processed per monitoring cycle.
    pub tasks_per_cycle: usize,
    /// Interval jitter, fraction of the interval.
    pub jitter_fraction: f64,
    /// Cap of a failing worker's backoff.
    #[serde(with = "secs")]
    pub backoff_max: Duration,
    /// Timeout of one backend request.
    #[serde(with = "secs")]
    pub backend_timeout: Duration,
}

/// The admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    /// Listen address.
    pub addr: SocketAddr,
    /// Bearer token; `None` makes mutating endpoints answer 403.
    pub token: Option<Secret>,
    /// POST cleanup calls allowed per minute.
    pub cleanup_per_minute: u32,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON unless stdout is a terminal.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Text,
}

impl Settings {
    /// Parses and checks every value of the merged configuration.
    pub fn from_raw(raw: &RawConfig) -> Result<Settings, ConfigError> {
        let r = Reader(raw);
        let allow_short_ttl = r.boolean("JANITOR_ALLOW_SHORT_TTL")?;
        let ttl_vars = [
            (
                Resource::Redis,
                "REDIS_CACHE_TTL_HOURS",
                HOUR,
                "JANITOR_REDIS_PRESSURE_TTL_HOURS",
            ),
            (
                Resource::Qdrant,
                "RAG_SESSION_TTL_HOURS",
                HOUR,
                "JANITOR_QDRANT_PRESSURE_TTL_HOURS",
            ),
            (
                Resource::S3,
                "FILES_TTL_DAYS",
                DAY,
                "JANITOR_S3_PRESSURE_TTL_DAYS",
            ),
        ];
        let mut retention = Retention {
            ttl: PerResource::default(),
            pressure_ttl: PerResource::default(),
        };
        for (resource, name, unit, pressure_name) in ttl_vars {
            let floor = resource.ttl_floor();
            let below_floor = |n: &str| {
                r.invalid(
                    n,
                    format!(
                        "at least {} (the safety floor), or JANITOR_ALLOW_SHORT_TTL=true",
                        humantime::format_duration(floor)
                    ),
                )
            };
            let ttl = r.duration(name, unit)?;
            if ttl < floor && !allow_short_ttl {
                return Err(below_floor(name));
            }
            let pressure_ttl = match r.optional(pressure_name) {
                Some(_) => {
                    let p = r.duration(pressure_name, unit)?;
                    if p > ttl {
                        return Err(r.invalid(pressure_name, format!("at most {name}")));
                    }
                    if p < floor && !allow_short_ttl {
                        return Err(below_floor(pressure_name));
                    }
                    p
                }
                // default: half the TTL, never below the floor (nor above the TTL)
                None if allow_short_ttl => ttl / 2,
                None => (ttl / 2).max(floor).min(ttl),
            };
            retention.ttl[resource] = Some(ttl);
            retention.pressure_ttl[resource] = Some(pressure_ttl);
        }

        let thresholds = Thresholds {
            medium: r.fraction("CLEANUP_THRESHOLD_MEDIUM")?,
            high: r.fraction("CLEANUP_THRESHOLD_HIGH")?,
            critical: r.fraction("CLEANUP_THRESHOLD_CRITICAL")?,
        };
        if thresholds.high <= thresholds.medium {
            return Err(r.invalid(
                "CLEANUP_THRESHOLD_HIGH",
                format!(
                    "a value above CLEANUP_THRESHOLD_MEDIUM ({})",
                    thresholds.medium
                ),
            ));
        }
        if thresholds.critical <= thresholds.high {
            return Err(r.invalid(
                "CLEANUP_THRESHOLD_CRITICAL",
                format!(
                    "a value above CLEANUP_THRESHOLD_HIGH ({}) and at most 1",
                    thresholds.high
                ),
            ));
        }

        const MIB: f64 = 1024.0 * 1024.0;
        let budgets = Budgets {
            redis_memory_bytes: (r.positive("MAX_REDIS_MEMORY_MB")? * MIB) as u64,
            qdrant_points: r.count("MAX_QDRANT_POINTS")?,
            s3_bytes: (r.positive("MAX_MINIO_STORAGE_GB")? * MIB * 1024.0) as u64,
            mongodb_bytes: match r.optional("MAX_MONGODB_STORAGE_MB") {
                Some(_) => Some((r.positive("MAX_MONGODB_STORAGE_MB")? * MIB) as u64),
                None => None,
            },
        };

        let redis = r
            .url("REDIS_URL", &["redis", "rediss", "redis+unix", "unix"])?
            .map(|url| redis_conn(&r, url))
            .transpose()?;
        let redis_configured = redis.is_some();
        let qdrant = r
            .url("QDRANT_URL", &["http", "https"])?
            .map(|url| QdrantConn {
                url,
                api_key: r.optional("QDRANT_API_KEY").map(Secret::new),
            });
        let s3 = match r.url("S3_ENDPOINT", &["http", "https"])? {
            None => None,
            Some(endpoint) => Some(S3Conn {
                endpoint,
                bucket: r
                    .optional("S3_BUCKET")
                    .ok_or_else(|| r.invalid("S3_BUCKET", "a bucket name (S3_ENDPOINT is set)"))?,
                region: r
                    .optional("AWS_REGION")
                    .unwrap_or_else(|| "us-east-1".into()),
                access_key_id: r.optional("AWS_ACCESS_KEY_ID").ok_or_else(|| {
                    r.invalid("AWS_ACCESS_KEY_ID", "an access key id (S3_ENDPOINT is set)")
                })?,
                secret_access_key: r
                    .optional("AWS_SECRET_ACCESS_KEY")
                    .map(Secret::new)
                    .ok_or_else(|| {
                        r.invalid("AWS_SECRET_ACCESS_KEY", "a secret key (S3_ENDPOINT is set)")
                    })?,
            }),
        };
        let mongo = r
            .url("MONGODB_URI", &["mongodb", "mongodb+srv"])?
            .map(|uri| -> Result<MongoConn, ConfigError> {
                Ok(MongoConn {
                    uri: SecretUrl::new(uri),
                    database: r
                        .optional("MONGODB_DATABASE")
                        .ok_or_else(|| r.invalid("MONGODB_DATABASE", "a database name"))?,
                })
            })
            .transpose()?;

        let safety = Safety {
            dry_run: r.boolean("JANITOR_DRY_RUN")?,
            max_delete_fraction: r.fraction("JANITOR_MAX_DELETE_FRACTION")?,
            max_delete_count: r.count("JANITOR_MAX_DELETE_COUNT")?,
            allow_short_ttl,
            audit_log: r
                .optional("JANITOR_AUDIT_LOG")
                .map(PathBuf::from)
                // a device or a directory cannot hold records to recover from
                .filter(|p| std::fs::metadata(p).map_or(true, |m| m.is_file()))
                .ok_or_else(|| r.invalid("JANITOR_AUDIT_LOG", "a regular file's path"))?,
        };

        let jitter_fraction = match r.text("JANITOR_JITTER_FRACTION").parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => return Err(r.invalid("JANITOR_JITTER_FRACTION", "a fraction from 0 to 1")),
        };
        let scheduling = Scheduling {
            queue_capacity: r.count("JANITOR_QUEUE_CAPACITY")? as usize,
            tasks_per_cycle: r.count("JANITOR_QUEUE_TASKS_PER_CYCLE")? as usize,
            jitter_fraction,
            backoff_max: r.duration("JANITOR_BACKOFF_MAX_SECONDS", 1.0)?,
            backend_timeout: r.duration("JANITOR_BACKEND_TIMEOUT_SECONDS", 1.0)?,
        };

        let admin = Admin {
            addr: r.text("JANITOR_ADMIN_ADDR").parse().map_err(|_| {
                r.invalid("JANITOR_ADMIN_ADDR", "an address such as 127.0.0.1:8089")
            })?,
            token: admin_token(&r)?,
            cleanup_per_minute: u32::try_from(r.count("JANITOR_CLEANUP_RATE_LIMIT_PER_MINUTE")?)
                .map_err(|_| {
                    r.invalid("JANITOR_CLEANUP_RATE_LIMIT_PER_MINUTE", "a smaller number")
                })?,
        };

        let log_format = match r.text("JANITOR_LOG_FORMAT").to_ascii_lowercase().as_str() {
            "auto" | "" => LogFormat::Auto,
            "json" => LogFormat::Json,
            "text" | "pretty" => LogFormat::Text,
            _ => return Err(r.invalid("JANITOR_LOG_FORMAT", "auto, json or text")),
        };
        let shutdown_timeout = match r.text("JANITOR_SHUTDOWN_TIMEOUT") {
            t if t.ends_with(|c: char| c.is_ascii_alphabetic()) => humantime::parse_duration(t)
                .map_err(|_| {
                    r.invalid(
                        "JANITOR_SHUTDOWN_TIMEOUT",
                        "seconds, or a duration like 10s",
                    )
                })?,
            _ => r.duration("JANITOR_SHUTDOWN_TIMEOUT", 1.0)?,
        };

        let mut sweep = PerResource::default();
        for (resource, name) in [
            (Resource::Redis, "REDIS_CLEANUP_INTERVAL_SECONDS"),
            (Resource::Qdrant, "QDRANT_CLEANUP_INTERVAL_SECONDS"),
            (Resource::S3, "MINIO_CLEANUP_INTERVAL_SECONDS"),
        ] {
            sweep[resource] = Some(r.duration(name, 1.0)?);
        }

        let redis_ttl = retention.ttl(Resource::Redis);
        let s3_sweep = super::sweepers::s3_sweep(&r, allow_short_ttl)?;
        let documents = super::documents::documents(
            &r,
            retention.ttl(Resource::S3),
            &s3_sweep,
            allow_short_ttl,
        )?;
        // documents are the application's data: no shorter TTL under pressure
        retention.ttl[Resource::Documents] = Some(documents.ttl);
        retention.pressure_ttl[Resource::Documents] = Some(documents.ttl);
        sweep[Resource::Documents] = Some(documents.interval);
        let history = super::ops::history(&r, &safety.audit_log)?;
        Ok(Settings {
            retention,
            intervals: Intervals {
                sweep,
                monitoring: r.duration("RESOURCE_MONITORING_INTERVAL_SECONDS", 1.0)?,
            },
            thresholds,
            budgets,
            redis,
            qdrant,
            s3,
            mongo,
            safety,
            scheduling,
            admin,
            log_format,
            shutdown_timeout,
            redis_sweep: super::sweepers::redis_sweep(&r, redis_ttl, allow_short_ttl)?,
            documents,
            s3_sweep,
            qdrant_sweep: super::sweepers::qdrant_sweep(&r, allow_short_ttl)?,
            dedup: super::dedup::dedup(&r)?,
            alerts: super::ops::alerts(&r)?,
            leader: super::ops::leader(&r, redis_configured)?,
            history,
        })
    }

    /// The interval of a swept store's timer (`None` for a store that is not swept).
    pub fn sweep_interval(&self, resource: Resource) -> Option<Duration> {
        self.intervals.sweep[resource]
    }
}

fn redis_conn(r: &Reader<'_>, url: String) -> Result<RedisConn, ConfigError> {
    let tls = url.starts_with("rediss://");
    let file = |name: &str| -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = r.optional(name) else {
            return Ok(None);
        };
        if !tls {
            return Err(r.invalid(name, "empty: REDIS_URL is not rediss://"));
        }
        std::fs::File::open(&path)
            .map_err(|e| r.invalid(name, format!("a readable PEM file ({e})")))?;
        Ok(Some(PathBuf::from(path)))
    };
    let tls_ca_file = file("REDIS_TLS_CA_FILE")?;
    let tls_client = match (file("REDIS_TLS_CERT_FILE")?, file("REDIS_TLS_KEY_FILE")?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(r.invalid("REDIS_TLS_KEY_FILE", "the key of REDIS_TLS_CERT_FILE"));
        }
        (None, Some(_)) => {
            return Err(r.invalid("REDIS_TLS_CERT_FILE", "set with REDIS_TLS_KEY_FILE"));
        }
    };
    Ok(RedisConn {
        url: SecretUrl::new(url),
        tls_ca_file,
        tls_client,
    })
}

fn admin_token(r: &Reader<'_>) -> Result<Option<Secret>, ConfigError> {
    if let Some(token) = r.optional_not_blank("JANITOR_ADMIN_TOKEN")? {
        if token.len() < 16 {
            return Err(r.invalid("JANITOR_ADMIN_TOKEN", "a token of at least 16 characters"));
        }
        return Ok(Some(Secret::new(token)));
    }
    let Some(path) = r.optional_not_blank("JANITOR_ADMIN_TOKEN_FILE")? else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(&path)
        .map_err(|e| r.invalid("JANITOR_ADMIN_TOKEN_FILE", format!("a readable file ({e})")))?;
    let token = token.trim();
    if token.len() < 16 {
        return Err(r.invalid(
            "JANITOR_ADMIN_TOKEN_FILE",
            "a file holding a token of at least 16 characters",
        ));
    }
    Ok(Some(Secret::new(token)))
}

/// Durations as (fractional) seconds in `config show` and the API.
pub(super) mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
