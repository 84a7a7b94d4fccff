//! What is using each store, by key prefix (Redis, S3) or collection (Qdrant): the question
//! an operator asks when a store's usage climbs, answered live. Redis declines per-prefix
//! memory (redis#14605) and offline RDB tools take hours; this walks the keyspace or the
//! listing once, at the sweep's pacing, in bounded memory whatever the store's size.
//!
//! Each store's walk is in its own module; they share the [`PrefixTable`] (top prefixes,
//! the rest summed) and the age [`Histogram`]. [`cache`] keeps the last answer per store
//! so the API does not walk a store on every request.

pub mod cache;
mod qdrant;
mod redis;
mod s3;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use tokio_util::sync::CancellationToken;

use crate::backend::{BackendError, Backends};
use crate::config::{QdrantSweep, Settings};
use crate::resource::{Resource, Source};

/// Prefixes tracked at once; past it the smallest are folded into `other` (a few MB at most).
const TRACKED_PREFIXES: usize = 10_000;
/// Largest prefix depth asked for.
pub const MAX_DEPTH: usize = 8;
/// Largest number of prefixes listed.
pub const MAX_TOP: usize = 1_000;

/// How to group and how much to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Separator-delimited segments that make a prefix (`:` for Redis, `/` for S3).
    pub depth: usize,
    /// Prefixes listed, largest first; the rest are summed in `other`.
    pub top: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { depth: 1, top: 20 }
    }
}

/// Why a breakdown could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BreakdownError {
    /// The store is not configured on this janitor.
    #[error("{0} is not configured on this janitor")]
    NotConfigured(Resource),
    /// The store has no breakdown (MongoDB, documents).
    #[error("{0} has no breakdown: one of redis, minio (s3), qdrant")]
    Unsupported(Resource),
    /// The store failed while walking it.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Shutdown stopped the walk.
    #[error("stopped by shutdown")]
    Cancelled,
    /// The walk's task ended without a result (it panicked).
    #[error("the walk ended without a result")]
    Lost,
}

/// Ages (Redis: idle time; S3: since last modified) in fixed buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram([u64; 6]);

impl Histogram {
    /// Bucket labels, youngest first; the last is "unknown".
    pub const LABELS: [&'static str; 6] =
        ["lt_1h", "1h_1d", "1d_7d", "7d_30d", "ge_30d", "unknown"];

    /// Counts one item of age `age` (`None`: unknown).
    pub fn add(&mut self, age: Option<Duration>) {
        const HOUR: u64 = 3600;
        let bucket = match age.map(|a| a.as_secs()) {
            None => 5,
            Some(s) if s < HOUR => 0,
            Some(s) if s < 24 * HOUR => 1,
            Some(s) if s < 7 * 24 * HOUR => 2,
            Some(s) if s < 30 * 24 * HOUR => 3,
            Some(_) => 4,
        };
        self.0[bucket] += 1;
    }

    /// The counts, in the order of [`Histogram::LABELS`].
    pub fn counts(&self) -> [u64; 6] {
        self.0
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

impl Serialize for Histogram {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(6))?;
        for (label, n) in Self::LABELS.iter().zip(self.0) {
            map.serialize_entry(label, &n)?;
        }
        map.end()
    }
}

/// What one prefix (or collection) holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    /// The prefix, up to and including its last separator (`""`: keys with no separator);
    /// a Qdrant collection's name.
    pub prefix: String,
    /// Keys, objects or points.
    pub items: u64,
    /// Bytes: measured (S3), or estimated (Redis: MEMORY USAGE of a sample, scaled;
    /// Qdrant: points x vector size).
    pub bytes: u64,
    /// Redis: keys with no TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub without_ttl: Option<u64>,
    /// S3: bytes last modified longer ago than the TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_older_than_ttl: Option<u64>,
    /// Redis: idle times; S3: ages since last modified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ages: Option<Histogram>,
    /// Qdrant: hours since the oldest point (where the timestamp index allows asking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_hours: Option<f64>,
    /// Qdrant: whether the timestamp field has a range index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_indexed: Option<bool>,
    /// Redis: keys whose MEMORY USAGE was read (the sample `bytes` is scaled from).
    #[serde(skip)]
    sampled: u64,
    /// Redis: their bytes.
    #[serde(skip)]
    sampled_bytes: u64,
}

impl Group {
    fn merge(&mut self, other: &Group) {
        self.items += other.items;
        self.bytes += other.bytes;
        self.sampled += other.sampled;
        self.sampled_bytes += other.sampled_bytes;
        let add = |a: &mut Option<u64>, b: Option<u64>| {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0) + b);
            }
        };
        add(&mut self.without_ttl, other.without_ttl);
        add(&mut self.bytes_older_than_ttl, other.bytes_older_than_ttl);
        if let Some(ages) = &other.ages {
            self.ages.get_or_insert_default().merge(ages);
        }
    }

    /// Redis: `bytes` from the sample, scaled to every key of the group.
    fn scale_sample(&mut self) {
        if self.sampled > 0 {
            self.bytes = (self.sampled_bytes as f64 / self.sampled as f64 * self.items as f64)
                .round() as u64;
        }
    }
}

/// The prefix of `key`: up to and including its `depth`-th `sep`, or its last one when it
/// has fewer (`""` when it has none), so a prefix never names a single key.
pub fn prefix_of(key: &str, sep: char, depth: usize) -> &str {
    let mut end = 0;
    for (n, (i, _)) in key.match_indices(sep).enumerate() {
        end = i + sep.len_utf8();
        if n + 1 == depth {
            break;
        }
    }
    &key[..end]
}

/// Per-prefix groups in bounded memory: at most `TRACKED_PREFIXES` (10,000) are tracked; when a new
/// one would pass that, the groups of the fewest items are folded into `other` (their later
/// items start a new group), the floor doubling until there is room, so the large prefixes
/// stay exact.
#[derive(Debug, Default)]
pub struct PrefixTable {
    groups: HashMap<String, Group>,
    other: Group,
    floor: u64,
    folded: bool,
}

impl PrefixTable {
    /// The group of `prefix`, created if new.
    pub fn group(&mut self, prefix: &str) -> &mut Group {
        if !self.groups.contains_key(prefix) {
            self.make_room();
            self.groups.insert(prefix.to_string(), Group::default());
        }
        self.groups.get_mut(prefix).expect("just inserted")
    }

    /// Keys of `prefix` whose size was sampled so far (0 for a prefix not tracked).
    pub fn sampled(&self, prefix: &str) -> u64 {
        self.groups.get(prefix).map_or(0, |g| g.sampled)
    }

    fn make_room(&mut self) {
        while self.groups.len() >= TRACKED_PREFIXES {
            self.floor = (self.floor * 2).max(1);
            let floor = self.floor;
            let other = &mut self.other;
            self.groups.retain(|_, g| {
                let keep = g.items > floor;
                if !keep {
                    other.merge(g);
                }
                keep
            });
            self.folded = true;
        }
    }

    /// The `top` groups by bytes (then items), and the rest summed.
    fn finish(mut self, top: usize) -> (Vec<Group>, Group, bool) {
        let mut groups: Vec<Group> = self
            .groups
            .drain()
            .map(|(prefix, mut g)| {
                g.scale_sample();
                g.prefix = prefix;
                g
            })
            .collect();
        groups.sort_by(|a, b| (b.bytes, b.items, &a.prefix).cmp(&(a.bytes, a.items, &b.prefix)));
        let mut other = self.other;
        other.scale_sample();
        for g in groups.drain(top.min(groups.len())..) {
            other.merge(&g);
        }
        (groups, other, self.folded)
    }
}

/// What a store holds, by prefix or collection.
#[derive(Debug, Clone, Serialize)]
pub struct Breakdown {
    /// The store.
    pub resource: Resource,
    /// When the walk started.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub generated_at: SystemTime,
    /// How long it took.
    pub duration_secs: f64,
    /// Segments per prefix.
    pub depth: usize,
    /// Items walked.
    pub items: u64,
    /// Bytes: their sum (S3: measured; Redis, Qdrant: estimated).
    pub bytes: u64,
    /// How `bytes` was had.
    pub bytes_source: Source,
    /// The largest groups, by bytes.
    pub groups: Vec<Group>,
    /// Everything else, summed.
    pub other: Group,
    /// How the figures were had, and their limits.
    pub notes: Vec<String>,
}

impl Breakdown {
    /// The same breakdown listing at most `top` groups (the rest added to `other`).
    pub fn truncated(&self, top: usize) -> Breakdown {
        let mut b = self.clone();
        for g in b.groups.drain(top.min(b.groups.len())..) {
            b.other.merge(&g);
        }
        b
    }

    fn new(resource: Resource, opts: Options, table: PrefixTable, source: Source) -> Self {
        let (groups, other, folded) = table.finish(opts.top);
        let mut notes = Vec::new();
        if folded {
            notes.push(format!(
                "more than {TRACKED_PREFIXES} prefixes: the smallest were summed in `other` as the walk went (a prefix seen again started over, so its figures are a lower bound)"
            ));
        }
        let items = groups.iter().map(|g| g.items).sum::<u64>() + other.items;
        let bytes = groups.iter().map(|g| g.bytes).sum::<u64>() + other.bytes;
        Self {
            resource,
            generated_at: SystemTime::now(),
            duration_secs: 0.0,
            depth: opts.depth,
            items,
            bytes,
            bytes_source: source,
            groups,
            other,
            notes,
        }
    }
}

/// The stores a breakdown can walk: the daemon's clients and the settings it needs.
#[derive(Clone)]
pub struct Walkers {
    backends: Backends,
    redis_ops_per_sec: u64,
    s3_ttl: Duration,
    qdrant: QdrantSweep,
}

impl Walkers {
    /// Walks through `backends`, paced and aged by `settings`.
    pub fn new(backends: Backends, settings: &Settings) -> Self {
        Self {
            backends,
            redis_ops_per_sec: settings.redis_sweep.max_ops_per_sec,
            s3_ttl: settings.retention.ttl(Resource::S3),
            qdrant: settings.qdrant_sweep.clone(),
        }
    }

    /// Walks `resource` grouped by `opts`; `cancel` stops it between pages.
    pub async fn walk(
        &self,
        resource: Resource,
        opts: Options,
        cancel: &CancellationToken,
    ) -> Result<Breakdown, BreakdownError> {
        let started = std::time::Instant::now();
        let now = SystemTime::now();
        let b = &self.backends;
        let not_configured = || BreakdownError::NotConfigured(resource);
        let mut breakdown = match resource {
            Resource::Redis => {
                let redis = b.redis.as_ref().ok_or_else(not_configured)?;
                redis::walk(redis, self.redis_ops_per_sec, opts, cancel).await?
            }
            Resource::S3 => {
                let s3 = b.s3.as_ref().ok_or_else(not_configured)?;
                s3::walk(s3, self.s3_ttl, opts, now, cancel).await?
            }
            Resource::Qdrant => {
                let qdrant = b.qdrant.as_ref().ok_or_else(not_configured)?;
                qdrant::walk(qdrant, &self.qdrant, opts, now).await?
            }
            other => return Err(BreakdownError::Unsupported(other)),
        };
        breakdown.generated_at = now;
        breakdown.duration_secs = started.elapsed().as_secs_f64();
        Ok(breakdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_at_a_separator_and_never_name_one_key() {
        assert_eq!(prefix_of("doc_segments:abc:1", ':', 1), "doc_segments:");
        assert_eq!(prefix_of("doc_segments:abc:1", ':', 2), "doc_segments:abc:");
        assert_eq!(prefix_of("doc_segments:abc", ':', 3), "doc_segments:");
        assert_eq!(prefix_of("counter", ':', 1), "");
        assert_eq!(prefix_of("uploads/u1/a.pdf", '/', 2), "uploads/u1/");
        assert_eq!(prefix_of(":x", ':', 1), ":");
    }

    #[test]
    fn histogram_buckets_by_age() {
        let mut h = Histogram::default();
        for secs in [0, 3599, 3600, 86_400 * 6, 86_400 * 29, 86_400 * 400] {
            h.add(Some(Duration::from_secs(secs)));
        }
        h.add(None);
        assert_eq!(h.0, [2, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_large_prefixes_exact() {
        let mut t = PrefixTable::default();
        for i in 0..5 {
            let g = t.group("big:");
            g.items += 1000;
            g.bytes += 1000 * (i + 1);
        }
        for i in 0..(3 * TRACKED_PREFIXES) {
            t.group(&format!("unique{i}:")).items += 1;
        }
        assert!(t.groups.len() <= TRACKED_PREFIXES);
        let (groups, other, folded) = t.finish(3);
        assert!(folded);
        assert_eq!(groups[0].prefix, "big:");
        assert_eq!((groups[0].items, groups[0].bytes), (5000, 15_000));
        assert_eq!(groups.len(), 3);
        let total: u64 = groups.iter().map(|g| g.items).sum::<u64>() + other.items;
        assert_eq!(total, 5000 + 3 * TRACKED_PREFIXES as u64, "nothing lost");
    }

    #[test]
    fn sampled_bytes_scale_to_every_key() {
        let mut t = PrefixTable::default();
        let g = t.group("a:");
        g.items = 1000;
        g.sampled = 10;
        g.sampled_bytes = 500;
        let (groups, _, _) = t.finish(20);
        assert_eq!(groups[0].bytes, 50_000);
    }
}
