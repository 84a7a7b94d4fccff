//! Settings of the backends' sweepers (policies, protection, pacing).

use std::time::Duration;

use serde::Serialize;

use super::ConfigError;
use super::policy::{self, Policy};
use super::reader::Reader;
use crate::resource::Resource;

/// The S3 sweeper.
#[derive(Debug, Clone, Serialize)]
pub struct S3Sweep {
    /// Prefixes to sweep, each ending in `/`; empty = the whole bucket.
    pub prefixes: Vec<String>,
    /// Prefixes never touched, each ending in `/`.
    pub protect: Vec<String>,
    /// Objects younger than this are never deleted.
    #[serde(with = "super::settings::secs")]
    pub grace: Duration,
    /// The reference collection.
    pub ref_collection: String,
    /// The fields holding object keys.
    pub ref_fields: Vec<String>,
    /// Sweep even with an empty reference collection.
    pub allow_empty_references: bool,
    /// How long the monitor reuses a whole-bucket listing.
    #[serde(with = "super::settings::secs")]
    pub measure_cache: Duration,
    /// Reference checks younger than this are not repeated before deleting.
    #[serde(with = "super::settings::secs")]
    pub recheck_after: Duration,
    /// Most DeleteObjects requests in flight (the adaptive limit's ceiling).
    pub max_inflight: usize,
    /// Sub-prefixes listed at once (1: one sorted listing).
    pub list_parallelism: usize,
    /// Most DeleteObjects requests a second (0: no cap).
    pub max_rps: u32,
}

/// A prefix as swept: `uploads/u1` becomes `uploads/u1/` so it never matches `uploads/u10/`;
/// an empty prefix (the whole bucket) stays empty.
pub fn normalise_prefix(prefix: &str) -> String {
    let p = prefix.trim().trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

pub(super) fn list(r: &Reader<'_>, name: &str) -> Vec<String> {
    r.text(name)
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A prefix list: set, it names prefixes. An empty entry or `/` would mean the whole
/// bucket, which is what leaving the variable unset says: refused as a mistake.
fn prefixes(r: &Reader<'_>, name: &str) -> Result<Vec<String>, ConfigError> {
    let raw = r.0.get(name).map(String::as_str).unwrap_or_default();
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<&str> = raw.split(',').map(str::trim).collect();
    let normalised: Vec<String> = entries.iter().map(|p| normalise_prefix(p)).collect();
    if normalised.iter().any(String::is_empty) {
        return Err(r.invalid(
            name,
            "prefixes, comma-separated, none empty or / (unset it for the whole bucket)",
        ));
    }
    Ok(normalised)
}

pub(super) fn s3_sweep(r: &Reader<'_>, allow_short: bool) -> Result<S3Sweep, ConfigError> {
    let grace = r.duration("JANITOR_S3_GRACE_HOURS", 3600.0)?;
    if grace < Resource::S3.ttl_floor() && !allow_short {
        return Err(r.invalid(
            "JANITOR_S3_GRACE_HOURS",
            "at least 1 hour (the safety floor), or JANITOR_ALLOW_SHORT_TTL=true",
        ));
    }
    let ref_fields = list(r, "JANITOR_S3_REF_FIELDS");
    if ref_fields.is_empty() || ref_fields.iter().any(|f| f.starts_with('$')) {
        return Err(r.invalid("JANITOR_S3_REF_FIELDS", "field names, comma-separated"));
    }
    Ok(S3Sweep {
        prefixes: prefixes(r, "JANITOR_S3_PREFIXES")?,
        protect: prefixes(r, "JANITOR_S3_PROTECT")?,
        grace,
        ref_collection: r
            .optional("JANITOR_S3_REF_COLLECTION")
            .ok_or_else(|| r.invalid("JANITOR_S3_REF_COLLECTION", "a collection name"))?,
        ref_fields,
        allow_empty_references: r.boolean("JANITOR_S3_ALLOW_EMPTY_REFERENCES")?,
        measure_cache: r
            .text("JANITOR_S3_MEASURE_CACHE_SECONDS")
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| {
                r.invalid(
                    "JANITOR_S3_MEASURE_CACHE_SECONDS",
                    "a whole number of seconds (0: list every time)",
                )
            })?,
        recheck_after: Duration::from_secs(r.whole(
            "JANITOR_S3_RECHECK_AFTER_SECONDS",
            "a whole number of seconds (0: check again before every batch)",
        )?),
        max_inflight: match r.count("JANITOR_S3_MAX_INFLIGHT")? {
            n @ 1..=64 => n as usize,
            _ => return Err(r.invalid("JANITOR_S3_MAX_INFLIGHT", "1 to 64")),
        },
        list_parallelism: match r.count("JANITOR_S3_LIST_PARALLELISM")? {
            n @ 1..=64 => n as usize,
            _ => return Err(r.invalid("JANITOR_S3_LIST_PARALLELISM", "1 to 64")),
        },
        max_rps: u32::try_from(r.whole(
            "JANITOR_S3_MAX_RPS",
            "a whole number of requests a second (0: no cap)",
        )?)
        .map_err(|_| r.invalid("JANITOR_S3_MAX_RPS", "a smaller number"))?,
    })
}

/// The Redis sweeper.
#[derive(Debug, Clone, Serialize)]
pub struct RedisSweep {
    /// Policies, in order (a key is handled by the first pattern that SCAN returns it for).
    pub policies: Vec<Policy>,
    /// Patterns never touched.
    pub protect: Vec<String>,
    /// SCAN COUNT.
    pub scan_count: u64,
    /// SCAN TYPE filter.
    pub key_type: Option<String>,
    /// Commands per second; 0 = unpaced.
    pub max_ops_per_sec: u64,
    /// Pause between batches.
    #[serde(with = "super::settings::secs")]
    pub batch_pause: Duration,
}

const KEY_TYPES: [&str; 6] = ["string", "list", "set", "zset", "hash", "stream"];

pub(super) fn redis_sweep(
    r: &Reader<'_>,
    cache_ttl: Duration,
    allow_short: bool,
) -> Result<RedisSweep, ConfigError> {
    let floor = if allow_short {
        Duration::ZERO
    } else {
        Resource::Redis.ttl_floor()
    };
    let text = r
        .optional("JANITOR_REDIS_POLICIES")
        .unwrap_or_else(|| "doc_segments:*=expire".into());
    let policies = policy::parse(&text, cache_ttl, floor).map_err(|e| {
        r.invalid(
            "JANITOR_REDIS_POLICIES",
            format!("pattern=expire|delete_idle|delete[:duration];... ({e})"),
        )
    })?;
    let protect = r
        .text("JANITOR_REDIS_PROTECT")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let key_type = r
        .optional("JANITOR_REDIS_TYPE")
        .map(|t| t.to_ascii_lowercase());
    if let Some(t) = &key_type
        && !KEY_TYPES.contains(&t.as_str())
    {
        return Err(r.invalid(
            "JANITOR_REDIS_TYPE",
            format!("one of {}", KEY_TYPES.join(", ")),
        ));
    }
    let max_ops_per_sec = r
        .text("JANITOR_REDIS_MAX_OPS_PER_SEC")
        .parse::<u64>()
        .map_err(|_| {
            r.invalid(
                "JANITOR_REDIS_MAX_OPS_PER_SEC",
                "a whole number (0: unpaced)",
            )
        })?;
    let batch_pause = r
        .text("JANITOR_REDIS_BATCH_PAUSE_MS")
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            r.invalid(
                "JANITOR_REDIS_BATCH_PAUSE_MS",
                "a whole number of milliseconds",
            )
        })?;
    Ok(RedisSweep {
        policies,
        protect,
        scan_count: r.count("JANITOR_REDIS_SCAN_COUNT")?,
        key_type,
        max_ops_per_sec,
        batch_pause,
    })
}

/// How a Qdrant timestamp payload encodes time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// Decided per collection from the payload index type and the values.
    Auto,
    /// Unix seconds (integer or float).
    UnixSeconds,
    /// Unix milliseconds.
    UnixMillis,
    /// RFC 3339 datetime strings, on a datetime index.
    Rfc3339,
}

/// The Qdrant sweeper.
#[derive(Debug, Clone, Serialize)]
pub struct QdrantSweep {
    /// Collections to sweep with their own TTL, if any; empty = every collection.
    pub collections: Vec<(String, Option<Duration>)>,
    /// The timestamp payload field.
    pub timestamp_field: String,
    /// How it encodes time.
    pub timestamp_format: TimestampFormat,
    /// Create a missing timestamp index.
    pub create_index: bool,
    /// Largest collection swept without a timestamp index.
    pub unindexed_max_points: u64,
    /// Point ids per batch, and the points per time window.
    pub batch_size: u32,
    /// List every expired point's id in the plan and the audit log instead of deleting by
    /// time window (slower: every id is scrolled, deleted by id and asked for again).
    pub audit_ids: bool,
    /// Pause between delete batches.
    #[serde(with = "super::settings::secs")]
    pub batch_pause: Duration,
    /// Payload field holding the document id; `None` = no orphan pass.
    pub orphan_field: Option<String>,
    /// MongoDB collection of the documents.
    pub orphan_collection: String,
    /// Document field matched against the payload's document id.
    pub orphan_ref_field: String,
    /// Points younger than this are never orphan-deleted.
    #[serde(with = "super::settings::secs")]
    pub orphan_grace: Duration,
}

impl QdrantSweep {
    /// The TTL override of `collection`, if it has one.
    pub fn ttl_of(&self, collection: &str) -> Option<Duration> {
        self.collections
            .iter()
            .find(|(c, _)| c == collection)
            .and_then(|(_, t)| *t)
    }
}

pub(super) fn qdrant_sweep(r: &Reader<'_>, allow_short: bool) -> Result<QdrantSweep, ConfigError> {
    const COLLECTIONS: &str = "JANITOR_QDRANT_COLLECTIONS";
    let floor = if allow_short {
        Duration::ZERO
    } else {
        Resource::Qdrant.ttl_floor()
    };
    let mut collections = Vec::new();
    for entry in list(r, COLLECTIONS) {
        let (name, ttl) = match entry.split_once('=') {
            None => (entry.as_str(), None),
            Some((name, ttl)) => {
                let ttl = humantime::parse_duration(ttl.trim())
                    .ok()
                    .filter(|t| *t >= floor && !t.is_zero())
                    .ok_or_else(|| {
                        r.invalid(
                            COLLECTIONS,
                            format!(
                                "name or name=ttl, comma-separated; a ttl like 48h, at least {}",
                                humantime::format_duration(floor.max(Duration::from_secs(1)))
                            ),
                        )
                    })?;
                (name.trim(), Some(ttl))
            }
        };
        if name.is_empty() || collections.iter().any(|(c, _)| c == name) {
            return Err(r.invalid(COLLECTIONS, "distinct collection names"));
        }
        collections.push((name.to_string(), ttl));
    }
    let timestamp_format = match r.text("JANITOR_QDRANT_TIMESTAMP_FORMAT") {
        "auto" | "" => TimestampFormat::Auto,
        "unix_seconds" => TimestampFormat::UnixSeconds,
        "unix_millis" => TimestampFormat::UnixMillis,
        "rfc3339" => TimestampFormat::Rfc3339,
        _ => {
            return Err(r.invalid(
                "JANITOR_QDRANT_TIMESTAMP_FORMAT",
                "auto, unix_seconds, unix_millis or rfc3339",
            ));
        }
    };
    let orphan_grace = r.duration("JANITOR_QDRANT_ORPHAN_GRACE_HOURS", 3600.0)?;
    if orphan_grace < Resource::S3.ttl_floor() && !allow_short {
        return Err(r.invalid(
            "JANITOR_QDRANT_ORPHAN_GRACE_HOURS",
            "at least 1 hour (the safety floor), or JANITOR_ALLOW_SHORT_TTL=true",
        ));
    }
    let batch_size = u32::try_from(r.count("JANITOR_QDRANT_BATCH_SIZE")?)
        .ok()
        .filter(|n| *n <= 100_000)
        .ok_or_else(|| r.invalid("JANITOR_QDRANT_BATCH_SIZE", "1 to 100000"))?;
    let field = |name: &str| {
        r.optional(name)
            .filter(|f| !f.starts_with('$'))
            .ok_or_else(|| r.invalid(name, "a field name"))
    };
    Ok(QdrantSweep {
        collections,
        timestamp_field: field("JANITOR_QDRANT_TIMESTAMP_FIELD")?,
        timestamp_format,
        create_index: r.boolean("JANITOR_QDRANT_CREATE_INDEX")?,
        unindexed_max_points: r.whole(
            "JANITOR_QDRANT_UNINDEXED_MAX_POINTS",
            "a whole number (0: never sweep without an index)",
        )?,
        batch_size,
        audit_ids: r.boolean("JANITOR_QDRANT_AUDIT_IDS")?,
        batch_pause: Duration::from_millis(r.whole(
            "JANITOR_QDRANT_BATCH_PAUSE_MS",
            "a whole number of milliseconds",
        )?),
        orphan_field: r.optional("JANITOR_QDRANT_ORPHAN_FIELD"),
        orphan_collection: field("JANITOR_QDRANT_ORPHAN_COLLECTION")?,
        orphan_ref_field: field("JANITOR_QDRANT_ORPHAN_REF_FIELD")?,
        orphan_grace,
    })
}
