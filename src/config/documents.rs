//! Settings of the document lifecycle: which of the application's documents expire, and
//! where the things that hang off them live (`JANITOR_DOCUMENTS_*`).

use std::time::Duration;

use serde::Serialize;

use super::ConfigError;
use super::reader::Reader;
use super::sweepers::{S3Sweep, list};

/// The placeholder of a Redis key template.
pub const DOCUMENT_ID: &str = "{document_id}";

/// A Redis key template split at its placeholder: `doc_segments:{document_id}*` is the
/// prefix `doc_segments:` and the suffix glob `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyTemplate {
    /// The fixed text before the id (no glob characters).
    pub prefix: String,
    /// A Redis glob the rest of the key matches after the id.
    pub suffix: String,
}

/// The document lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentsSweep {
    /// Documents expire at all (opt-in).
    pub enabled: bool,
    /// Age of an expiring document; the TTL of the `documents` resource.
    #[serde(with = "super::settings::secs")]
    pub ttl: Duration,
    /// How often the expiry timer fires.
    #[serde(with = "super::settings::secs")]
    pub interval: Duration,
    /// The documents' collection.
    pub collection: String,
    /// Fields holding a document's object key(s).
    pub key_fields: Vec<String>,
    /// Field holding the creation time.
    pub created_field: String,
    /// Field holding the status.
    pub status_field: String,
    /// Statuses a document may expire in.
    pub final_statuses: Vec<String>,
    /// Sessions' collection.
    pub sessions_collection: String,
    /// Session field listing document ids.
    pub session_field: String,
    /// Session field holding its last activity.
    pub activity_field: String,
    /// A session active this recently keeps its documents.
    #[serde(with = "super::settings::secs")]
    pub activity_window: Duration,
    /// Payload field of a point holding its document's id.
    pub qdrant_field: String,
    /// Templates of a document's Redis keys.
    pub redis_keys: Vec<KeyTemplate>,
    /// Field set on a document before its cascade, if any.
    pub mark_field: Option<String>,
    /// Count drift each pass.
    pub reconcile: bool,
    /// Statuses of documents that should have vectors.
    pub vector_statuses: Vec<String>,
    /// Documents per batch: one audit record, one query per step per store.
    pub batch_size: usize,
}

pub(super) fn documents(
    r: &Reader<'_>,
    files_ttl: Duration,
    s3: &S3Sweep,
    allow_short: bool,
) -> Result<DocumentsSweep, ConfigError> {
    const DAY: f64 = 86_400.0;
    let field = |name: &str| -> Result<String, ConfigError> {
        r.optional(name)
            .filter(|f| !f.starts_with('$') && !f.contains(' '))
            .ok_or_else(|| r.invalid(name, "a field name"))
    };
    let ttl = match r.optional("JANITOR_DOCUMENTS_TTL_DAYS") {
        Some(_) => r.duration("JANITOR_DOCUMENTS_TTL_DAYS", DAY)?,
        None => files_ttl,
    };
    if ttl < crate::resource::Resource::Documents.ttl_floor() && !allow_short {
        return Err(r.invalid(
            "JANITOR_DOCUMENTS_TTL_DAYS",
            "at least 1h (the safety floor), or JANITOR_ALLOW_SHORT_TTL=true",
        ));
    }
    let activity_window = match r.optional("JANITOR_DOCUMENTS_ACTIVITY_WINDOW_DAYS") {
        Some(_) => r.duration("JANITOR_DOCUMENTS_ACTIVITY_WINDOW_DAYS", DAY)?,
        None => ttl,
    };
    let key_fields = match list(r, "JANITOR_DOCUMENTS_KEY_FIELDS") {
        fields if fields.is_empty() => s3.ref_fields.clone(),
        fields => fields,
    };
    let final_statuses = list(r, "JANITOR_DOCUMENTS_FINAL_STATUSES");
    if final_statuses.is_empty() {
        return Err(r.invalid(
            "JANITOR_DOCUMENTS_FINAL_STATUSES",
            "at least one status (e.g. ready,failed)",
        ));
    }
    let redis_keys = list(r, "JANITOR_DOCUMENTS_REDIS_KEYS")
        .iter()
        .map(|t| key_template(t))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            r.invalid(
                "JANITOR_DOCUMENTS_REDIS_KEYS",
                "templates with one {document_id} after a fixed prefix without glob characters, e.g. doc_segments:{document_id}*",
            )
        })?;
    Ok(DocumentsSweep {
        enabled: r.boolean("JANITOR_DOCUMENTS_EXPIRE")?,
        ttl,
        interval: r.duration("JANITOR_DOCUMENTS_INTERVAL_SECONDS", 1.0)?,
        collection: r
            .optional("JANITOR_DOCUMENTS_COLLECTION")
            .unwrap_or_else(|| s3.ref_collection.clone()),
        key_fields,
        created_field: field("JANITOR_DOCUMENTS_CREATED_FIELD")?,
        status_field: field("JANITOR_DOCUMENTS_STATUS_FIELD")?,
        final_statuses,
        sessions_collection: field("JANITOR_DOCUMENTS_SESSIONS_COLLECTION")?,
        session_field: field("JANITOR_DOCUMENTS_SESSION_FIELD")?,
        activity_field: field("JANITOR_DOCUMENTS_SESSION_ACTIVITY_FIELD")?,
        activity_window,
        qdrant_field: field("JANITOR_DOCUMENTS_QDRANT_FIELD")?,
        redis_keys,
        mark_field: match r.optional("JANITOR_DOCUMENTS_MARK_FIELD") {
            None => None,
            Some(_) => Some(field("JANITOR_DOCUMENTS_MARK_FIELD")?),
        },
        reconcile: r.boolean("JANITOR_DOCUMENTS_RECONCILE")?,
        vector_statuses: list(r, "JANITOR_DOCUMENTS_VECTOR_STATUSES"),
        batch_size: usize::try_from(r.count("JANITOR_DOCUMENTS_BATCH_SIZE")?)
            .ok()
            .filter(|n| *n <= 10_000)
            .ok_or_else(|| r.invalid("JANITOR_DOCUMENTS_BATCH_SIZE", "1 to 10000"))?,
    })
}

/// `prefix{document_id}suffix`, the prefix non-empty and free of glob characters (it is
/// what SCAN matches, escaped nowhere).
fn key_template(text: &str) -> Option<KeyTemplate> {
    let (prefix, suffix) = text.split_once(DOCUMENT_ID)?;
    let glob = |s: &str| s.contains(['*', '?', '[', ']', '\\']);
    if prefix.is_empty() || glob(prefix) || suffix.contains(DOCUMENT_ID) {
        return None;
    }
    Some(KeyTemplate {
        prefix: prefix.to_string(),
        suffix: suffix.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_templates_need_a_plain_prefix_and_one_placeholder() {
        let t = super::key_template("doc_segments:{document_id}*").unwrap();
        assert_eq!(
            (t.prefix.as_str(), t.suffix.as_str()),
            ("doc_segments:", "*")
        );
        assert!(
            super::key_template("{document_id}*").is_none(),
            "no prefix: the whole keyspace"
        );
        assert!(super::key_template("doc*:{document_id}").is_none());
        assert!(super::key_template("doc:{document_id}:{document_id}").is_none());
        assert!(super::key_template("doc:").is_none());
    }
}
