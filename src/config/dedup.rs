//! Settings of the SHA-256 dedup index (the API next to the loops, and `janitor dedup scan`).

use serde::Serialize;

use super::ConfigError;
use super::reader::Reader;

/// Where a registered hash is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterMode {
    /// On the document itself (`$set` of the hash field, the seed's way).
    Document,
    /// As a record of its own in the dedup collection.
    Insert,
}

/// The dedup index.
#[derive(Debug, Clone, Serialize)]
pub struct Dedup {
    /// Largest body `POST /api/dedup/check` hashes.
    pub max_bytes: u64,
    /// The collection holding the hashes.
    pub collection: String,
    /// The field holding the user id.
    pub user_field: String,
    /// The field holding the hash (dotted paths allowed).
    pub hash_field: String,
    /// The unique index's name.
    pub index_name: String,
    /// Where a register records the hash.
    pub register: RegisterMode,
    /// Create the unique index at startup.
    pub create_index: bool,
    /// The path segment of an object key that names its owner (0-based), for the scan.
    pub owner_segment: Option<usize>,
    /// Objects hashed at once by the scan.
    pub scan_concurrency: usize,
}

pub(super) fn dedup(r: &Reader<'_>) -> Result<Dedup, ConfigError> {
    let field = |name: &str| {
        r.optional(name)
            .filter(|f| !f.starts_with('$') && !f.contains(' '))
            .ok_or_else(|| r.invalid(name, "a field name"))
    };
    let register = match r.text("JANITOR_DEDUP_REGISTER") {
        "document" => RegisterMode::Document,
        "insert" => RegisterMode::Insert,
        _ => return Err(r.invalid("JANITOR_DEDUP_REGISTER", "document or insert")),
    };
    let owner_segment = match r.optional("JANITOR_DEDUP_OWNER_SEGMENT") {
        None => None,
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            r.invalid(
                "JANITOR_DEDUP_OWNER_SEGMENT",
                "a path segment number (0: the first), or empty",
            )
        })?),
    };
    let scan_concurrency = usize::try_from(r.count("JANITOR_DEDUP_SCAN_CONCURRENCY")?)
        .ok()
        .filter(|n| *n <= 256)
        .ok_or_else(|| r.invalid("JANITOR_DEDUP_SCAN_CONCURRENCY", "1 to 256"))?;
    Ok(Dedup {
        max_bytes: r.count("JANITOR_DEDUP_MAX_BYTES")?,
        collection: field("JANITOR_DEDUP_COLLECTION")?,
        user_field: field("JANITOR_DEDUP_USER_FIELD")?,
        hash_field: field("JANITOR_DEDUP_HASH_FIELD")?,
        index_name: field("JANITOR_DEDUP_INDEX_NAME")?,
        register,
        create_index: r.boolean("JANITOR_DEDUP_CREATE_INDEX")?,
        owner_segment,
        scan_concurrency,
    })
}
