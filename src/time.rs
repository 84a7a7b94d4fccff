//! Wall-clock helpers: RFC 3339 output and ages.
//!
//! Planning code never reads the clock itself; it takes `now: SystemTime` so tests can age
//! data without sleeping. These helpers only format and subtract.

use std::time::{Duration, SystemTime};

/// Serialises a `SystemTime` as RFC 3339 (UTC, seconds).
pub fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_seconds(*t).to_string())
}

/// Serialises an optional `SystemTime` as RFC 3339 or null.
pub fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

/// How long before `now` the instant `then` was (zero if it is in the future).
pub fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// Duration in hours, for the seed's `*_hours` fields.
pub fn hours(d: Duration) -> f64 {
    d.as_secs_f64() / 3600.0
}
