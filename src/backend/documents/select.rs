//! The MongoDB side of the document lifecycle: which documents have expired, and which
//! documents a recently active chat session still holds.

use std::collections::HashSet;
use std::time::SystemTime;

use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};

use crate::backend::mongo::{CURSOR_BATCH, Mongo, id_forms, id_text, path_strings};
use crate::backend::{BackendError, timed};
use crate::config::DocumentsSweep;

const NAME: &str = "mongodb";

/// Epoch numbers from here up are milliseconds; below, seconds (the Qdrant sweep's rule).
const MILLIS_FROM: f64 = 1e11;

/// An expired document and the objects it references.
#[derive(Debug, Clone)]
pub struct Expired {
    /// Its `_id` as text (an ObjectId as hex).
    pub id: String,
    /// Its object keys.
    pub objects: Vec<String>,
}

/// The ids of the documents held by a session active since `since`; with `among`, only those
/// ids are asked for (one query either way).
pub async fn held(
    mongo: &Mongo,
    s: &DocumentsSweep,
    since: SystemTime,
    among: Option<&[String]>,
) -> Result<HashSet<String>, BackendError> {
    let mut filter =
        doc! { s.activity_field.as_str(): { "$gte": DateTime::from_system_time(since) } };
    if let Some(ids) = among {
        let forms: Vec<Bson> = ids.iter().flat_map(|id| id_forms(id)).collect();
        filter.insert(s.session_field.as_str(), doc! { "$in": forms });
    }
    let wanted: Option<HashSet<&str>> = among.map(|ids| ids.iter().map(String::as_str).collect());
    let coll = mongo
        .database()
        .collection::<Document>(&s.sessions_collection);
    let query = async {
        let projection = doc! { "_id": 0, s.session_field.as_str(): 1 };
        let mut cursor = coll
            .find(filter)
            .projection(projection)
            .batch_size(CURSOR_BATCH)
            .await?;
        let mut held = HashSet::new();
        while let Some(session) = cursor.try_next().await? {
            let ids = match session.get(&s.session_field) {
                Some(Bson::Array(a)) => a.iter().filter_map(id_text).collect(),
                Some(one) => id_text(one).into_iter().collect(),
                None => Vec::new(),
            };
            held.extend(
                ids.into_iter()
                    .filter(|id| wanted.as_ref().is_none_or(|w| w.contains(id.as_str()))),
            );
        }
        Ok::<_, mongodb::error::Error>(held)
    };
    timed(NAME, mongo.timeout(), query).await
}

/// The filter of expired documents: created before `cutoff` (a Date, or epoch seconds or
/// milliseconds) and in a final status.
pub fn expired_filter(s: &DocumentsSweep, cutoff: SystemTime) -> Document {
    let secs = cutoff
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let f = s.created_field.as_str();
    doc! {
        "$or": [
            { f: { "$lt": DateTime::from_system_time(cutoff) } },
            { f: { "$gte": 0, "$lt": secs } },
            { f: { "$gte": MILLIS_FROM, "$lt": secs * 1000.0 } },
        ],
        s.status_field.as_str(): { "$in": s.final_statuses.clone() },
    }
}

/// The ids of the expired documents not `held`, at most `limit` + 1 (past the cap the plan
/// is refused anyway), sorted as text. Only the ids are held for the pass: what goes with
/// them is read a batch at a time by [`expired_among`].
pub async fn expired_ids(
    mongo: &Mongo,
    s: &DocumentsSweep,
    cutoff: SystemTime,
    held: &HashSet<String>,
    limit: u64,
) -> Result<Vec<String>, BackendError> {
    let coll = mongo.database().collection::<Document>(&s.collection);
    let query = async {
        let mut cursor = coll
            .find(expired_filter(s, cutoff))
            .projection(doc! { "_id": 1 })
            .sort(doc! { "_id": 1 })
            .batch_size(CURSOR_BATCH)
            .await?;
        let mut found = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            let Some(id) = d.get("_id").and_then(id_text) else {
                continue;
            };
            if held.contains(&id) {
                continue;
            }
            found.push(id);
            if found.len() as u64 > limit {
                break;
            }
        }
        Ok::<_, mongodb::error::Error>(found)
    };
    let mut ids = timed(NAME, mongo.timeout(), query).await?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// The documents among `ids` that are still expired, with the objects they reference (one
/// query). A document deleted or changed since its id was read is not returned.
pub async fn expired_among(
    mongo: &Mongo,
    s: &DocumentsSweep,
    cutoff: SystemTime,
    ids: &[String],
) -> Result<Vec<Expired>, BackendError> {
    let coll = mongo.database().collection::<Document>(&s.collection);
    let mut filter = expired_filter(s, cutoff);
    filter.insert("_id", doc! { "$in": id_values(ids) });
    let mut projection = doc! { "_id": 1 };
    for f in &s.key_fields {
        projection.insert(f.as_str(), 1);
    }
    let query = async {
        let mut cursor = coll.find(filter).projection(projection).await?;
        let mut found = Vec::with_capacity(ids.len());
        while let Some(d) = cursor.try_next().await? {
            let Some(id) = d.get("_id").and_then(id_text) else {
                continue;
            };
            let mut objects = Vec::new();
            for f in &s.key_fields {
                path_strings(&d, f, &mut objects);
            }
            found.push(Expired { id, objects });
        }
        Ok::<_, mongodb::error::Error>(found)
    };
    timed(NAME, mongo.timeout(), query).await
}

/// Every form of the ids `ids` (strings, and ObjectIds where they are 24 hex digits).
pub fn id_values(ids: &[String]) -> Vec<Bson> {
    ids.iter().flat_map(|id| id_forms(id)).collect()
}

/// Deletes the documents `ids`; returns how many went.
pub async fn delete(
    mongo: &Mongo,
    s: &DocumentsSweep,
    ids: &[String],
) -> Result<u64, BackendError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let coll = mongo.database().collection::<Document>(&s.collection);
    let filter = doc! { "_id": { "$in": id_values(ids) } };
    let r = timed(NAME, mongo.timeout(), coll.delete_many(filter)).await?;
    Ok(r.deleted_count)
}

/// Sets (`Some(now)`) or removes (`None`) the mark field on the documents `ids`.
pub async fn mark(
    mongo: &Mongo,
    s: &DocumentsSweep,
    ids: &[String],
    at: Option<SystemTime>,
) -> Result<(), BackendError> {
    let (Some(field), false) = (&s.mark_field, ids.is_empty()) else {
        return Ok(());
    };
    let coll = mongo.database().collection::<Document>(&s.collection);
    let filter = doc! { "_id": { "$in": id_values(ids) } };
    let update = match at {
        Some(t) => doc! { "$set": { field.as_str(): DateTime::from_system_time(t) } },
        None => doc! { "$unset": { field.as_str(): "" } },
    };
    timed(NAME, mongo.timeout(), coll.update_many(filter, update)).await?;
    Ok(())
}
