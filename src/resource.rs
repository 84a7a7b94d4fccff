//! The resources the janitor watches, and how full they are.
//!
//! Redis, Qdrant and S3 are swept; MongoDB is only measured (it is the reference source the
//! sweeps consult, and the application owns its documents). A [`Usage`] is one measurement;
//! its [`Priority`] follows from the configured thresholds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::Thresholds;

/// A store the janitor sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// Cache keys.
    Redis,
    /// Vectors.
    Qdrant,
    /// Files.
    S3,
}

impl Resource {
    /// The three sweepable resources, in loop order.
    pub const ALL: [Resource; 3] = [Resource::Redis, Resource::Qdrant, Resource::S3];

    /// Index into per-resource arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Short name: `redis`, `qdrant`, `s3` (metric labels, CLI, worker names).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Redis => "redis",
            Resource::Qdrant => "qdrant",
            Resource::S3 => "s3",
        }
    }

    /// The seed's `resource_type` (`redis_cache`, `qdrant_vectors`, `minio_files`).
    pub fn resource_type(self) -> &'static str {
        match self {
            Resource::Redis => "redis_cache",
            Resource::Qdrant => "qdrant_vectors",
            Resource::S3 => "minio_files",
        }
    }

    /// The seed's metrics key (`redis`, `qdrant`, `minio`).
    pub fn metrics_key(self) -> &'static str {
        match self {
            Resource::Redis => "redis",
            Resource::Qdrant => "qdrant",
            Resource::S3 => "minio",
        }
    }

    /// Parses a seed `resource_type`.
    pub fn from_resource_type(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.resource_type() == s)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Resource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|r| r.name() == s || r.resource_type() == s)
            .ok_or_else(|| format!("unknown resource {s:?} (expected redis, qdrant or s3)"))
    }
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
    /// The task runs at once and the loop runs back to back.
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

/// What the monitoring loop measured of one store, from the server itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    /// Keys, points, objects or documents.
    pub total_items: u64,
    /// Bytes reported by the server (used_memory, listed object sizes, dbStats dataSize);
    /// `None` where the server reports none (Qdrant over gRPC): never estimated.
    pub size_bytes: Option<u64>,
    /// Measured against the budget, 0.0 – 1.0 (may exceed 1).
    pub usage_fraction: f64,
    /// Age of the oldest item, when the store can tell.
    pub oldest_age_hours: Option<f64>,
}

impl Usage {
    /// The usage's priority under `thresholds`.
    pub fn priority(&self, thresholds: &Thresholds) -> Priority {
        Priority::from_usage(self.usage_fraction, thresholds)
    }
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
    fn resource_names_round_trip() {
        for r in Resource::ALL {
            assert_eq!(r.name().parse::<Resource>().unwrap(), r);
            assert_eq!(Resource::from_resource_type(r.resource_type()), Some(r));
        }
        assert!("mongodb".parse::<Resource>().is_err());
    }
}
