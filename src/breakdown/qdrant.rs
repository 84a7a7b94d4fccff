//! The Qdrant breakdown: one group per collection, from the same facts the monitor reads
//! (points, vector size estimate, oldest point, timestamp index).

use std::time::SystemTime;

use super::{Breakdown, BreakdownError, Options, PrefixTable};
use crate::backend::qdrant::Qdrant;
use crate::config::QdrantSweep;
use crate::resource::{Resource, Source};

/// Every collection of `qdrant`.
pub async fn walk(
    qdrant: &Qdrant,
    sweep: &QdrantSweep,
    opts: Options,
    now: SystemTime,
) -> Result<Breakdown, BreakdownError> {
    let measure = qdrant.measure(1, &sweep.timestamp_field, sweep.timestamp_format, now);
    let (_, collections) = measure.await?;
    let mut table = PrefixTable::default();
    let mut unindexed = Vec::new();
    for c in &collections {
        let group = table.group(&c.name);
        group.items = c.points;
        group.bytes = c.vector_bytes.unwrap_or(0);
        group.oldest_age_hours = c.oldest_age.map(crate::time::hours);
        group.timestamp_indexed = Some(c.timestamp_indexed);
        if !c.timestamp_indexed {
            unindexed.push(c.name.as_str());
        }
    }
    let mut breakdown = Breakdown::new(Resource::Qdrant, opts, table, Source::Estimated);
    breakdown.depth = 0;
    breakdown.notes.push(
        "bytes: points x dimension x bytes per element of every named vector (payloads and indexes not counted)".into(),
    );
    if !unindexed.is_empty() {
        breakdown.notes.push(format!(
            "no range index on `{}` in {}: the sweep must scroll them whole and the oldest point is unknown",
            sweep.timestamp_field,
            unindexed.join(", ")
        ));
    }
    Ok(breakdown)
}
