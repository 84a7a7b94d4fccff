//! Settings of the backends' sweepers (policies, protection, pacing).

use std::time::Duration;

use serde::Serialize;

use super::ConfigError;
use super::reader::Reader;
use super::settings::TTL_FLOORS;
use crate::backend::redis::policy::{self, Policy};

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

fn list(r: &Reader<'_>, name: &str) -> Vec<String> {
    r.text(name)
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn s3_sweep(r: &Reader<'_>, allow_short: bool) -> Result<S3Sweep, ConfigError> {
    let grace = r.duration("JANITOR_S3_GRACE_HOURS", 3600.0)?;
    if grace < TTL_FLOORS[2] && !allow_short {
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
        prefixes: list(r, "JANITOR_S3_PREFIXES")
            .iter()
            .map(|p| normalise_prefix(p))
            .collect(),
        protect: list(r, "JANITOR_S3_PROTECT")
            .iter()
            .map(|p| normalise_prefix(p))
            .collect(),
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
        TTL_FLOORS[0]
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
