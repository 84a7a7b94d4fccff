//! MongoDB: the reference source. Connection and measurement (`dbStats`).

use std::time::Duration;

use std::collections::HashSet;

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ClientOptions;

use super::{BackendError, timed};
use crate::config::MongoConn;
use crate::resource::{Source, Usage};

const NAME: &str = "mongodb";

/// MongoDB's `NamespaceNotFound`: the collection does not exist.
const NAMESPACE_NOT_FOUND: i32 = 26;
/// MongoDB's `DuplicateKey`: a unique index refused the write.
const DUPLICATE_KEY: i32 = 11000;

/// Documents per batch of a cursor that is streamed through. Without it the server fills
/// each `getMore` up to 16 MiB, so what a cursor holds grows with the collection until then
/// (measured on SecantusDB: 258,111 small documents in one `getMore`); a thousand keeps it
/// in the tens of kilobytes and cost no time on a 300k-document drain (1.36 s against 3.06 s).
pub const CURSOR_BATCH: u32 = 1000;

/// An id as text: ObjectIds as hex, strings as they are, numbers in decimal.
pub fn id_text(v: &Bson) -> Option<String> {
    match v {
        Bson::ObjectId(o) => Some(o.to_hex()),
        Bson::String(s) => Some(s.clone()),
        Bson::Int32(n) => Some(n.to_string()),
        Bson::Int64(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The forms a document id given as text may be stored in: the string, and the ObjectId
/// when it is 24 hex digits.
pub fn id_forms(id: &str) -> Vec<Bson> {
    let mut forms = vec![Bson::String(id.to_string())];
    if let Ok(oid) = mongodb::bson::oid::ObjectId::parse_str(id) {
        forms.push(Bson::ObjectId(oid));
    }
    forms
}

/// The error says the collection does not exist (told by its code, never its text).
pub fn is_namespace_missing(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Command(c) if c.code == NAMESPACE_NOT_FOUND)
}

/// The error is a unique index refusing a write (told by its code, never its text).
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// A MongoDB client bound to the application's database.
#[derive(Clone)]
pub struct Mongo {
    db: mongodb::Database,
    timeout: Duration,
}

impl Mongo {
    /// Parses the URI and builds the client (connections are made on first use).
    pub async fn connect(conn: &MongoConn, timeout: Duration) -> Result<Self, BackendError> {
        let mut options = timed(NAME, timeout, ClientOptions::parse(conn.uri.expose())).await?;
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        options.app_name = Some("resource-janitor".into());
        let client = mongodb::Client::with_options(options).map_err(|e| BackendError::Config {
            backend: NAME,
            message: e.to_string(),
        })?;
        Ok(Self {
            db: client.database(&conn.database),
            timeout,
        })
    }

    /// The timeout of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The database, for reference checks.
    pub fn database(&self) -> &mongodb::Database {
        &self.db
    }

    /// Which of `keys` a document of `collection` references in any of `fields`: one query
    /// (`$in` over the keys, a projection of the fields only). Dotted field paths work.
    pub async fn referenced(
        &self,
        collection: &str,
        fields: &[String],
        keys: &[String],
    ) -> Result<HashSet<String>, BackendError> {
        let values = keys.iter().map(|k| Bson::String(k.clone())).collect();
        self.matching(collection, fields, keys, values, &[]).await
    }

    /// Which of `keys` a document of `collection` other than the documents `excluding` (their
    /// `_id`s) references in any of `fields`: one query.
    pub async fn referenced_by_others(
        &self,
        collection: &str,
        fields: &[String],
        keys: &[String],
        excluding: &[Bson],
    ) -> Result<HashSet<String>, BackendError> {
        let values = keys.iter().map(|k| Bson::String(k.clone())).collect();
        self.matching(collection, fields, keys, values, excluding)
            .await
    }

    /// Which of the document ids `ids` exist as `field` in `collection`. An id is looked up
    /// in each form the application may have stored it in: the string, an ObjectId (24 hex
    /// digits) and an integer.
    pub async fn existing_ids(
        &self,
        collection: &str,
        field: &str,
        ids: &[String],
    ) -> Result<HashSet<String>, BackendError> {
        let mut values = Vec::with_capacity(ids.len() * 2);
        for id in ids {
            values.push(Bson::String(id.clone()));
            if let Ok(oid) = mongodb::bson::oid::ObjectId::parse_str(id) {
                values.push(Bson::ObjectId(oid));
            }
            if let Ok(n) = id.parse::<i64>() {
                values.push(Bson::Int64(n));
                values.push(Bson::Double(n as f64));
            }
        }
        self.matching(collection, &[field.to_string()], ids, values, &[])
            .await
    }

    /// The `wanted` strings that a document holds in one of `fields`, found with one `$in`
    /// query over `values`.
    async fn matching(
        &self,
        collection: &str,
        fields: &[String],
        wanted: &[String],
        values: Vec<Bson>,
        excluding: &[Bson],
    ) -> Result<HashSet<String>, BackendError> {
        if wanted.is_empty() {
            return Ok(HashSet::new());
        }
        let wanted: HashSet<&str> = wanted.iter().map(String::as_str).collect();
        let mut any = Vec::with_capacity(fields.len());
        let mut projection = doc! { "_id": 0 };
        for f in fields {
            any.push(doc! { f.as_str(): { "$in": values.clone() } });
            projection.insert(f.as_str(), 1);
        }
        let mut filter = if any.len() == 1 {
            any.remove(0)
        } else {
            doc! { "$or": any }
        };
        if !excluding.is_empty() {
            filter.insert("_id", doc! { "$nin": excluding.to_vec() });
        }
        let coll = self.db.collection::<Document>(collection);
        let found = async {
            let mut cursor = coll.find(filter).projection(projection).await?;
            let mut found = HashSet::new();
            let mut unreadable = 0u64;
            while let Some(d) = cursor.try_next().await? {
                let mut recognised = false;
                for f in fields {
                    let mut values = Vec::new();
                    path_strings(&d, f, &mut values);
                    for v in values.into_iter().filter(|v| wanted.contains(v.as_str())) {
                        found.insert(v);
                        recognised = true;
                    }
                }
                unreadable += u64::from(!recognised);
            }
            Ok::<_, mongodb::error::Error>((found, unreadable))
        };
        let (found, unreadable) = timed(NAME, self.timeout, found).await?;
        if unreadable > 0 {
            // the query matched documents whose reference we cannot read back (another shape
            // than strings, arrays of strings or subdocuments): we cannot tell which item
            // they keep, so nothing in this batch may be taken for unreferenced
            return Err(BackendError::request(
                NAME,
                format!("{unreadable} matching documents hold references of an unknown shape"),
            ));
        }
        Ok(found)
    }

    /// Documents in `collection` (0 when it does not exist).
    pub async fn document_count(&self, collection: &str) -> Result<u64, BackendError> {
        let coll = self.db.collection::<Document>(collection);
        timed(NAME, self.timeout, coll.estimated_document_count()).await
    }

    /// The `fields` that no index of `collection` starts with (reference checks on them
    /// scan the collection).
    pub async fn unindexed(
        &self,
        collection: &str,
        fields: &[String],
    ) -> Result<Vec<String>, BackendError> {
        let coll = self.db.collection::<Document>(collection);
        let names = async {
            let mut first_keys = Vec::new();
            match coll.list_indexes().await {
                Ok(mut cursor) => {
                    while let Some(index) = cursor.try_next().await? {
                        if let Some(k) = index.keys.keys().next() {
                            first_keys.push(k.clone());
                        }
                    }
                }
                // a missing collection has no indexes
                Err(e) if is_namespace_missing(&e) => {}
                Err(e) => return Err(e),
            }
            Ok(first_keys)
        };
        let first_keys = timed(NAME, self.timeout, names).await?;
        Ok(fields
            .iter()
            .filter(|f| !first_keys.contains(f))
            .cloned()
            .collect())
    }

    /// `ping`.
    pub async fn ping(&self) -> Result<(), BackendError> {
        timed(NAME, self.timeout, self.db.run_command(doc! { "ping": 1 })).await?;
        Ok(())
    }

    /// Documents and data size of the reference collection (`collStats`; a missing
    /// collection is empty), against `budget_bytes` when there is one (without, no usage);
    /// the age of its oldest document by `created_field` when that field is indexed.
    pub async fn measure(
        &self,
        collection: &str,
        created_field: &str,
        budget_bytes: Option<u64>,
        now: std::time::SystemTime,
    ) -> Result<Usage, BackendError> {
        let stats = async {
            match self.db.run_command(doc! { "collStats": collection }).await {
                Err(e) if is_namespace_missing(&e) => Ok(Document::new()),
                other => other,
            }
        };
        let stats: Document = timed(NAME, self.timeout, stats).await?;
        let number = |k: &str| -> u64 {
            match stats.get(k) {
                Some(mongodb::bson::Bson::Int32(v)) => (*v).max(0) as u64,
                Some(mongodb::bson::Bson::Int64(v)) => (*v).max(0) as u64,
                Some(mongodb::bson::Bson::Double(v)) => v.max(0.0) as u64,
                _ => 0,
            }
        };
        let size = number("size");
        let mut usage = Usage {
            total_items: number("count"),
            size_bytes: Some(size),
            size_source: Some(Source::Measured),
            usage_fraction: budget_bytes.map(|b| size as f64 / b as f64),
            ..Usage::default()
        };
        if budget_bytes.is_none() {
            usage
                .notes
                .push("usage_percentage: no budget (set MAX_MONGODB_STORAGE_MB)".into());
        }
        let field = created_field.to_string();
        if !self
            .unindexed(collection, std::slice::from_ref(&field))
            .await?
            .is_empty()
        {
            usage.notes.push(format!(
                "oldest_age_hours: {collection}.{created_field} has no index (finding the oldest would scan the collection)"
            ));
            return Ok(usage);
        }
        let coll = self.db.collection::<Document>(collection);
        let oldest = coll
            .find_one(doc! { created_field: { "$type": "date" } })
            .sort(doc! { created_field: 1 })
            .projection(doc! { "_id": 0, created_field: 1 });
        if let Some(Some(Bson::DateTime(t))) = timed(NAME, self.timeout, oldest)
            .await?
            .map(|d| d.get(created_field).cloned())
        {
            let age = now.duration_since(t.to_system_time()).unwrap_or_default();
            usage.oldest_age_hours = Some(age.as_secs_f64() / 3600.0);
            usage.oldest_source = Some(Source::Measured);
        }
        Ok(usage)
    }
}

/// Every string at a dotted path of a document, looking into arrays the way MongoDB's
/// queries do (`minio_key`, `minio_keys` as an array, `files.key` over an array of files).
/// ObjectIds read as their hex form and integers as decimal, for document ids.
pub(crate) fn path_strings(d: &Document, path: &str, out: &mut Vec<String>) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    if let Some(value) = d.get(head) {
        value_strings(value, rest, out);
    }
}

fn value_strings(value: &Bson, rest: Option<&str>, out: &mut Vec<String>) {
    match (value, rest) {
        (Bson::String(s), None) => out.push(s.clone()),
        (Bson::ObjectId(oid), None) => out.push(oid.to_hex()),
        (Bson::Int32(n), None) => out.push(n.to_string()),
        (Bson::Int64(n), None) => out.push(n.to_string()),
        (Bson::Double(f), None) if f.fract() == 0.0 && f.abs() < 9e15 => {
            out.push((*f as i64).to_string())
        }
        (Bson::Array(items), _) => items.iter().for_each(|v| value_strings(v, rest, out)),
        (Bson::Document(inner), Some(rest)) => path_strings(inner, rest, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_in_every_shape_mongodb_matches() {
        let d = doc! {
            "minio_key": "a",
            "keys": ["b", "c"],
            "files": [{ "key": "d" }, { "key": "e" }, { "other": 1 }],
            "meta": { "path": "f", "n": 1 },
            "oid": mongodb::bson::oid::ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap(),
        };
        let get = |p: &str| {
            let mut out = Vec::new();
            path_strings(&d, p, &mut out);
            out
        };
        assert_eq!(get("minio_key"), ["a"]);
        assert_eq!(get("keys"), ["b", "c"]);
        assert_eq!(get("files.key"), ["d", "e"]);
        assert_eq!(get("meta.path"), ["f"]);
        assert_eq!(get("oid"), ["65a1b2c3d4e5f60718293a4b"]);
        assert_eq!(get("meta.n"), ["1"]);
        assert!(get("missing").is_empty() && get("minio_key.x").is_empty());
    }
}
