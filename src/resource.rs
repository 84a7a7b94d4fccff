//! The stores the janitor knows, how full they are, and how urgent that is.
//!
//! [`Resource`] is the one place that names a store: its label in metrics, logs, the CLI
//! and run records ([`Resource::name`]), its key in the seed's JSON ([`Resource::api_key`])
//! and its seed `resource_type`. Per-store values live in a [`PerResource`] map, never in
//! arrays indexed by number or maps keyed by text. Redis, Qdrant and S3 are swept; MongoDB
//! is only measured (the application owns its documents). A [`Usage`] is one measurement;
//! its [`Priority`] follows from the [`Thresholds`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A store the janitor knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// Cache keys.
    Redis,
    /// Vectors.
    Qdrant,
    /// Files.
    S3,
    /// The application's metadata: measured, and the reference source of the sweeps.
    #[serde(rename = "mongodb")]
    MongoDb,
    /// The application's documents, expired with everything that hangs off them (a
    /// document's file, vectors and cache keys, then the document): opt-in.
    Documents,
}

impl Resource {
    /// Every resource, in loop order.
    pub const ALL: [Resource; 5] = [
        Resource::Redis,
        Resource::Qdrant,
        Resource::S3,
        Resource::MongoDb,
        Resource::Documents,
    ];

    /// The resources the janitor sweeps.
    pub const SWEPT: [Resource; 4] = [
        Resource::Redis,
        Resource::Qdrant,
        Resource::S3,
        Resource::Documents,
    ];

    /// The label used everywhere: metrics (`resource="s3"`), logs, the CLI, worker names and
    /// run records: `redis`, `qdrant`, `s3`, `mongodb`, `documents`.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Redis => "redis",
            Resource::Qdrant => "qdrant",
            Resource::S3 => "s3",
            Resource::MongoDb => "mongodb",
            Resource::Documents => "documents",
        }
    }

    /// The key in the seed's JSON (`/api/resources/metrics`, `deleted_counts`): `redis`,
    /// `qdrant`, `minio`, `mongodb`.
    pub fn api_key(self) -> &'static str {
        match self {
            Resource::S3 => "minio",
            other => other.name(),
        }
    }

    /// The seed's `resource_type` of a swept store (`redis_cache`, `qdrant_vectors`,
    /// `minio_files`), and the project's own (`documents`); MongoDB has none.
    pub fn resource_type(self) -> Option<&'static str> {
        match self {
            Resource::Redis => Some("redis_cache"),
            Resource::Qdrant => Some("qdrant_vectors"),
            Resource::S3 => Some("minio_files"),
            Resource::MongoDb => None,
            Resource::Documents => Some("documents"),
        }
    }

    /// Whether the janitor deletes from this resource.
    pub fn is_swept(self) -> bool {
        self.resource_type().is_some()
    }

    /// Whether it is a store the monitor measures against a budget (documents live in
    /// MongoDB, measured as such).
    pub fn is_measured(self) -> bool {
        self != Resource::Documents
    }

    /// Parses a seed `resource_type`.
    pub fn from_resource_type(s: &str) -> Option<Resource> {
        Resource::ALL
            .into_iter()
            .find(|r| r.resource_type() == Some(s))
    }

    /// The smallest TTL allowed without `JANITOR_ALLOW_SHORT_TTL` (zero for MongoDB).
    pub fn ttl_floor(self) -> Duration {
        match self {
            Resource::Redis => Duration::from_secs(60),
            Resource::Qdrant => Duration::from_secs(600),
            Resource::S3 | Resource::Documents => Duration::from_secs(3600),
            Resource::MongoDb => Duration::ZERO,
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource {0:?} (expected redis, qdrant, s3, mongodb or documents)")]
pub struct UnknownResource(pub String);

impl FromStr for Resource {
    type Err = UnknownResource;
    /// Any of a store's names: `s3`, `minio` or `minio_files` are S3.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|r| r.name() == s || r.api_key() == s || r.resource_type() == Some(s))
            .ok_or_else(|| UnknownResource(s.to_string()))
    }
}

/// One value per store, looked up by [`Resource`]. Serialises as `{"redis": .., ...}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerResource<T>([T; 5]);

impl<T> PerResource<T> {
    /// A map with `f(resource)` for every store.
    pub fn from_fn(mut f: impl FnMut(Resource) -> T) -> Self {
        Self(Resource::ALL.map(&mut f))
    }

    /// Every (store, value), in loop order.
    pub fn iter(&self) -> impl Iterator<Item = (Resource, &T)> {
        Resource::ALL.into_iter().zip(self.0.iter())
    }
}

impl<T> std::ops::Index<Resource> for PerResource<T> {
    type Output = T;
    fn index(&self, r: Resource) -> &T {
        &self.0[r.slot()]
    }
}

impl<T> std::ops::IndexMut<Resource> for PerResource<T> {
    fn index_mut(&mut self, r: Resource) -> &mut T {
        &mut self.0[r.slot()]
    }
}

impl<T: Serialize> Serialize for PerResource<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(Resource::ALL.len()))?;
        for (r, v) in self.iter() {
            map.serialize_entry(r.name(), v)?;
        }
        map.end()
    }
}

/// Usage fractions: medium < high < critical <= 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// From here a resource is MEDIUM.
    pub medium: f64,
    /// From here a resource is HIGH (a cleanup task is queued).
    pub high: f64,
    /// From here a resource is CRITICAL (its task runs at once).
    pub critical: f64,
}

/// How urgently a resource needs cleaning. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Priority {
    /// Below the medium threshold: nothing to do.
    Low,
    /// Watch it.
    Medium,
    /// A cleanup task is queued; sweeps may use the pressure TTL.
    High,
    /// The task starts at once and the store's timer fires back to back.
    Critical,
}

impl Priority {
    /// The priority of a usage fraction (0.0 – 1.0+).
    pub fn from_usage(fraction: f64, t: &Thresholds) -> Priority {
        if fraction >= t.critical {
            Priority::Critical
        } else if fraction >= t.high {
            Priority::High
        } else if fraction >= t.medium {
            Priority::Medium
        } else {
            Priority::Low
        }
    }

    /// `HIGH` / `CRITICAL`: under pressure.
    pub fn is_pressure(self) -> bool {
        self >= Priority::High
    }

    /// Upper-case name, as in the seed's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "LOW",
            Priority::Medium => "MEDIUM",
            Priority::High => "HIGH",
            Priority::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a measured figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The server reports it (used_memory, listed object sizes, collStats).
    Measured,
    /// Computed from what the server reports (points x dimension x bytes per element).
    Estimated,
    /// From a bounded sample (Redis idle times of random keys).
    Sampled,
}

/// What the monitoring loop measured of one store, from the server itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Usage {
    /// Keys, points, objects or documents.
    pub total_items: u64,
    /// Bytes: reported by the server, or estimated where it reports none (Qdrant), as
    /// `size_source` says.
    pub size_bytes: Option<u64>,
    /// Where `size_bytes` comes from.
    pub size_source: Option<Source>,
    /// Measured against the budget, 0.0 – 1.0 (may exceed 1); `None` without a budget.
    pub usage_fraction: Option<f64>,
    /// Age of the oldest item, when the store can tell.
    pub oldest_age_hours: Option<f64>,
    /// Where `oldest_age_hours` comes from.
    pub oldest_source: Option<Source>,
    /// Why a figure is missing, or what bounds it.
    pub notes: Vec<String>,
}

impl Usage {
    /// The usage's priority under `thresholds` (LOW without a budget).
    pub fn priority(&self, thresholds: &Thresholds) -> Priority {
        self.usage_fraction
            .map_or(Priority::Low, |f| Priority::from_usage(f, thresholds))
    }
}

/// What the monitor measured of one Qdrant collection.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionStats {
    /// The collection.
    pub name: String,
    /// Points (the server's count).
    pub points: u64,
    /// Segments.
    pub segments: u64,
    /// Vectors in the HNSW index.
    pub indexed_vectors: u64,
    /// Whether the timestamp field has a range-capable payload index.
    pub timestamp_indexed: bool,
    /// Age of the oldest point, where the index allows `order_by`.
    pub oldest_age: Option<Duration>,
    /// Bytes of its dense vectors, estimated as the seed does: points x dimension x bytes
    /// per element, for every named vector by its datatype (`None`: no vector config).
    pub vector_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        medium: 0.5,
        high: 0.75,
        critical: 0.9,
    };

    #[test]
    fn thresholds_are_inclusive_lower_bounds() {
        let p = |f| Priority::from_usage(f, &T);
        assert_eq!(p(0.0), Priority::Low);
        assert_eq!(p(0.4999), Priority::Low);
        assert_eq!(p(0.5), Priority::Medium);
        assert_eq!(p(0.7499), Priority::Medium);
        assert_eq!(p(0.75), Priority::High);
        assert_eq!(p(0.8999), Priority::High);
        assert_eq!(p(0.9), Priority::Critical);
        assert_eq!(p(3.0), Priority::Critical);
        assert!(Priority::Low < Priority::Medium && Priority::High < Priority::Critical);
    }

    #[test]
    fn every_name_of_a_store_parses_to_it() {
        for r in Resource::ALL {
            assert_eq!(r.name().parse::<Resource>().unwrap(), r);
            assert_eq!(r.api_key().parse::<Resource>().unwrap(), r);
            if let Some(t) = r.resource_type() {
                assert_eq!(Resource::from_resource_type(t), Some(r));
            }
        }
        assert_eq!(Resource::S3.api_key(), "minio");
        assert!(!Resource::MongoDb.is_swept());
        assert!("postgres".parse::<Resource>().is_err());
    }

    #[test]
    fn per_resource_maps_by_store_and_serialises_by_label() {
        let mut m = PerResource::from_fn(|r| r.name().len());
        m[Resource::S3] = 10;
        assert_eq!(m[Resource::Redis], 5);
        assert_eq!(m[Resource::S3], 10);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"redis": 5, "qdrant": 6, "s3": 10, "mongodb": 7, "documents": 9})
        );
    }
}
