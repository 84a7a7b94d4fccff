//! Two-way reconciliation, counted by every document pass: points and cache keys whose
//! document is gone, and documents that should have vectors and have none. Streamed a page
//! at a time (one existence query per page), so memory does not grow with the stores. A
//! store that fails to answer leaves its count unchecked, with the error as its note: this
//! only reports, it never deletes.

use std::collections::{BTreeSet, HashSet};
use std::time::SystemTime;

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use qdrant_client::qdrant::{Condition, Filter, value::Kind};

use crate::backend::BackendError;
use crate::backend::mongo::{Mongo, id_text};
use crate::backend::qdrant::Qdrant;
use crate::backend::redis::{KeyPages, Redis};
use crate::backend::timed;
use crate::config::DocumentsSweep;
use crate::drift::{Drift, DriftCount};

const PAGE: u32 = 1000;

/// Every kind of drift the document pass measures (the S3 pass measures missing objects).
pub async fn measure(
    mongo: &Mongo,
    qdrant: Option<(&Qdrant, &[String])>,
    redis: Option<&Redis>,
    s: &DocumentsSweep,
    now: SystemTime,
) -> Drift {
    let unchecked = |store: &str| DriftCount::unchecked(format!("{store} is not configured"));
    let or_note = |r: Result<DriftCount, BackendError>| {
        r.unwrap_or_else(|e| DriftCount::unchecked(format!("not measured: {e}")))
    };
    Drift {
        orphan_points: match qdrant {
            Some((q, cs)) => or_note(orphan_points(mongo, q, cs, s, now).await),
            None => unchecked("Qdrant"),
        },
        orphan_keys: match redis {
            Some(r) => or_note(orphan_keys(mongo, r, s, now).await),
            None => unchecked("Redis"),
        },
        missing_objects: DriftCount::unchecked("measured by the S3 pass"),
        missing_vectors: match qdrant {
            Some((q, cs)) => or_note(missing_vectors(mongo, q, cs, s, now).await),
            None => unchecked("Qdrant"),
        },
    }
}

/// Adds to `drift` the items of one page whose document is gone (`ids`: each item's
/// document id; one existence query for the page's distinct ids).
async fn count_orphans(
    mongo: &Mongo,
    s: &DocumentsSweep,
    drift: &mut DriftCount,
    ids: Vec<String>,
) -> Result<(), BackendError> {
    let distinct: Vec<String> = ids
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let existing = mongo.existing_ids(&s.collection, "_id", &distinct).await?;
    let orphans = ids.iter().filter(|id| !existing.contains(*id)).count() as u64;
    drift.add(
        orphans,
        distinct.into_iter().filter(|id| !existing.contains(id)),
    );
    Ok(())
}

fn payload_id(p: &qdrant_client::qdrant::RetrievedPoint, field: &str) -> Option<String> {
    match p.payload.get(field)?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s.clone()),
        Kind::IntegerValue(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn orphan_points(
    mongo: &Mongo,
    qdrant: &Qdrant,
    collections: &[String],
    s: &DocumentsSweep,
    now: SystemTime,
) -> Result<DriftCount, BackendError> {
    let mut drift = DriftCount::counting(now);
    let all = Filter::default();
    let fields = [s.qdrant_field.as_str()];
    for c in collections {
        let mut pages = qdrant.pages(c, &all, &fields, PAGE);
        while let Some(points) = pages.next().await? {
            let ids = points.iter().filter_map(|p| payload_id(p, &s.qdrant_field));
            count_orphans(mongo, s, &mut drift, ids.collect()).await?;
        }
    }
    Ok(drift)
}

/// A cache key's document id: what follows the template's prefix, up to the next `:`
/// (ids holding a `:` are not told apart from their suffix, and are not counted).
fn key_id<'a>(key: &'a [u8], prefix: &str) -> Option<&'a str> {
    let rest = std::str::from_utf8(key.strip_prefix(prefix.as_bytes())?).ok()?;
    let id = rest.split(':').next()?;
    (!id.is_empty()).then_some(id)
}

async fn orphan_keys(
    mongo: &Mongo,
    redis: &Redis,
    s: &DocumentsSweep,
    now: SystemTime,
) -> Result<DriftCount, BackendError> {
    let mut drift = DriftCount::counting(now);
    drift.note = Some("a key's document id is read up to its next ':'".into());
    for t in &s.redis_keys {
        let mut pages = KeyPages::new(redis, format!("{}*", t.prefix), PAGE.into()).await?;
        while let Some((_, keys)) = pages.next().await? {
            let ids = keys.iter().filter_map(|k| key_id(k, &t.prefix));
            count_orphans(mongo, s, &mut drift, ids.map(str::to_owned).collect()).await?;
        }
    }
    Ok(drift)
}

async fn missing_vectors(
    mongo: &Mongo,
    qdrant: &Qdrant,
    collections: &[String],
    s: &DocumentsSweep,
    now: SystemTime,
) -> Result<DriftCount, BackendError> {
    let mut drift = DriftCount::counting(now);
    let coll = mongo.database().collection::<Document>(&s.collection);
    let filter = doc! { s.status_field.as_str(): { "$in": s.vector_statuses.clone() } };
    let mut cursor = timed(
        "mongodb",
        mongo.timeout(),
        coll.find(filter)
            .projection(doc! { "_id": 1 })
            .batch_size(PAGE),
    )
    .await?;
    let mut page = Vec::with_capacity(PAGE as usize);
    loop {
        let next = timed("mongodb", mongo.timeout(), cursor.try_next()).await?;
        if let Some(id) = next.as_ref().and_then(|d| d.get("_id")).and_then(id_text) {
            page.push(id);
        }
        if page.len() == PAGE as usize || (next.is_none() && !page.is_empty()) {
            let with = with_vectors(qdrant, collections, &s.qdrant_field, &page).await?;
            let without: Vec<String> = page.drain(..).filter(|id| !with.contains(id)).collect();
            drift.add(without.len() as u64, without);
        }
        if next.is_none() {
            break;
        }
    }
    Ok(drift)
}

/// Of the documents `ids`, those with at least one point.
async fn with_vectors(
    qdrant: &Qdrant,
    collections: &[String],
    field: &str,
    ids: &[String],
) -> Result<HashSet<String>, BackendError> {
    let mut found = HashSet::new();
    let filter = Filter::must([Condition::matches(field, ids.to_vec())]);
    let fields = [field];
    for c in collections {
        let mut pages = qdrant.pages(c, &filter, &fields, PAGE);
        while let Some(points) = pages.next().await? {
            found.extend(points.iter().filter_map(|p| payload_id(p, field)));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_keys_document_id_ends_at_the_next_colon() {
        assert_eq!(
            super::key_id(b"doc_segments:abc:1", "doc_segments:"),
            Some("abc")
        );
        assert_eq!(
            super::key_id(b"doc_segments:abc", "doc_segments:"),
            Some("abc")
        );
        assert_eq!(super::key_id(b"doc_segments::1", "doc_segments:"), None);
        assert_eq!(super::key_id(b"other:abc", "doc_segments:"), None);
    }
}
