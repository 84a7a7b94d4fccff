//! What hangs off a document, in the other stores: its cache keys in Redis and its points
//! in Qdrant, found and deleted for a set of documents at once (never one round trip per
//! document where a batch exists).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use qdrant_client::qdrant::{
    Condition, CreateFieldIndexCollectionBuilder, DeletePointsBuilder, FieldType, Filter,
    value::Kind,
};

use crate::backend::BackendError;
use crate::backend::qdrant::Qdrant;
use crate::backend::redis::keys::{escape, glob_match, unescape};
use crate::backend::redis::{KeyPages, Redis};
use crate::backend::timed;
use crate::config::KeyTemplate;

/// A document's cache keys, by the server holding them (`""` outside a cluster).
pub type Keys = BTreeMap<String, Vec<String>>;

/// Keys SCAN returns per call.
const SCAN_COUNT: u64 = 1000;
/// Points read per scroll page.
const SCROLL_PAGE: u32 = 1000;

/// The cache keys found for a pass's documents, one compact entry per key: the document's
/// place in the pass's sorted ids, the server's place in `servers`, the key (escaped). A map
/// of maps per document cost about a kilobyte per document; this costs the key and 32 bytes.
#[derive(Debug, Default)]
pub struct FoundKeys {
    servers: Vec<String>,
    keys: Vec<(usize, usize, Box<str>)>,
}

impl FoundKeys {
    fn push(&mut self, doc: usize, server: &str, key: String) {
        let at = match self.servers.iter().position(|s| s == server) {
            Some(at) => at,
            None => {
                self.servers.push(server.to_string());
                self.servers.len() - 1
            }
        };
        self.keys.push((doc, at, key.into_boxed_str()));
    }

    fn finish(&mut self) {
        self.keys.sort_unstable();
        self.keys.dedup();
    }

    /// The keys of the document at `doc` in the pass's ids, by server.
    pub fn of(&self, doc: usize) -> Keys {
        let start = self.keys.partition_point(|(d, ..)| *d < doc);
        let mut out = Keys::new();
        for (_, server, key) in self.keys[start..].iter().take_while(|(d, ..)| *d == doc) {
            out.entry(self.servers[*server].clone())
                .or_default()
                .push(key.to_string());
        }
        out
    }
}

/// The cache keys of the documents `ids` (sorted): one SCAN pass per template over its fixed
/// prefix on every server, each key's id part looked up in `ids` (one SCAN per document
/// would walk the keyspace thousands of times, and a per-document MATCH would have to
/// escape glob characters in ids).
pub async fn redis_keys(
    redis: &Redis,
    templates: &[KeyTemplate],
    ids: &[String],
) -> Result<FoundKeys, BackendError> {
    let mut found = FoundKeys::default();
    let lengths: BTreeSet<usize> = ids.iter().map(String::len).collect();
    if ids.is_empty() {
        return Ok(found);
    }
    for t in templates {
        let mut pages = KeyPages::new(redis, format!("{}*", t.prefix), SCAN_COUNT).await?;
        while let Some((addr, keys)) = pages.next().await? {
            for key in keys {
                let Some(rest) = key.strip_prefix(t.prefix.as_bytes()) else {
                    continue;
                };
                if let Some(doc) = owner(ids, &lengths, t.suffix.as_bytes(), rest) {
                    found.push(doc, &addr, escape(&key));
                }
            }
        }
    }
    found.finish();
    Ok(found)
}

/// The place in `ids` (sorted; `lengths` their lengths) of the expired document whose key
/// this is (`rest`: the key after its template's prefix), if any. Where the template's
/// suffix starts with a wildcard, a tail that starts with a letter or a digit may be the
/// rest of a longer id (expired `abc` against a live `abcd`'s key `abcd:0`): doubt keeps
/// the key, unless a longer expired id claims it exactly.
fn owner(ids: &[String], lengths: &BTreeSet<usize>, suffix: &[u8], rest: &[u8]) -> Option<usize> {
    let open = matches!(suffix.first(), Some(b'*' | b'?' | b'['));
    for &len in lengths {
        let (Some(id), Some(tail)) = (rest.get(..len), rest.get(len..)) else {
            continue;
        };
        let Ok(id) = std::str::from_utf8(id) else {
            continue;
        };
        let Ok(doc) = ids.binary_search_by(|x| x.as_str().cmp(id)) else {
            continue;
        };
        if glob_match(suffix, tail)
            && !(open && tail.first().is_some_and(u8::is_ascii_alphanumeric))
        {
            return Some(doc);
        }
    }
    None
}

/// UNLINKs `keys` (escaped, by server); returns how many existed.
pub async fn unlink(redis: &Redis, keys: &Keys) -> Result<u64, BackendError> {
    let mut unlinked = 0;
    if keys.values().all(Vec::is_empty) {
        return Ok(0);
    }
    let shards = redis.shards().await?;
    for (addr, keys) in keys.iter().filter(|(_, k)| !k.is_empty()) {
        let shard = shards
            .iter()
            .find(|s| s.shard().unwrap_or_default() == addr)
            .ok_or_else(|| {
                BackendError::request("redis", format!("server {addr} is not a primary any more"))
            })?;
        let mut con = shard.connection().await?;
        for chunk in keys.chunks(1000) {
            let mut cmd = redis::cmd("UNLINK");
            for k in chunk {
                let key = unescape(k).ok_or_else(|| {
                    BackendError::request("redis", format!("unreadable key in plan: {k}"))
                })?;
                cmd.arg(key);
            }
            let n: u64 = timed("redis", shard.timeout(), cmd.query_async(&mut con)).await?;
            unlinked += n;
        }
    }
    Ok(unlinked)
}

fn belonging_to(field: &str, ids: &[String]) -> Filter {
    Filter::must([Condition::matches(field, ids.to_vec())])
}

/// Points per document of `ids` in `collections` (the payload `field` holds the id).
pub async fn points(
    qdrant: &Qdrant,
    collections: &[String],
    field: &str,
    ids: &[String],
) -> Result<HashMap<String, u64>, BackendError> {
    let mut counts = HashMap::new();
    if ids.is_empty() {
        return Ok(counts);
    }
    let filter = belonging_to(field, ids);
    let fields = [field];
    for c in collections {
        let mut pages = qdrant.pages(c, &filter, &fields, SCROLL_PAGE);
        while let Some(points) = pages.next().await? {
            for p in points {
                if let Some(Kind::StringValue(id)) =
                    p.payload.get(field).and_then(|v| v.kind.clone())
                {
                    *counts.entry(id).or_insert(0) += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// Whether `collection` exists; when `ensure`, a keyword index on `field` is created first
/// where it is missing (filters on the document id must not scan the collection).
async fn indexed(
    qdrant: &Qdrant,
    collection: &str,
    field: &str,
    ensure: bool,
) -> Result<bool, BackendError> {
    let info = match qdrant.info(collection).await {
        Ok(info) => info,
        Err(BackendError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if ensure && !info.payload_schema.contains_key(field) {
        qdrant
            .call(|| {
                let req =
                    CreateFieldIndexCollectionBuilder::new(collection, field, FieldType::Keyword)
                        .wait(true);
                qdrant.client().create_field_index(req)
            })
            .await?;
    }
    Ok(true)
}

/// The points of documents `ids` in `collections` (exact counts): what the cascade will
/// delete, weighed against the store for the cap. A keyword index on `field` is created
/// first where missing, as the delete would.
pub async fn count_points(
    qdrant: &Qdrant,
    collections: &[String],
    field: &str,
    ids: &[String],
) -> Result<u64, BackendError> {
    let mut theirs = 0;
    if ids.is_empty() {
        return Ok(0);
    }
    let filter = belonging_to(field, ids);
    for c in collections {
        if indexed(qdrant, c, field, true).await? {
            theirs += qdrant.count(c, Some(filter.clone())).await?;
        }
    }
    Ok(theirs)
}

/// All points in `collections` (exact counts; a collection that does not exist has none).
pub async fn total_points(qdrant: &Qdrant, collections: &[String]) -> Result<u64, BackendError> {
    let mut all = 0;
    for c in collections {
        match qdrant.count(c, None).await {
            Ok(n) => all += n,
            Err(BackendError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(all)
}

/// Deletes the points of documents `ids` from `collections` by a filter on `field` (a
/// keyword index on it is created first where missing); returns how many were deleted
/// (exact counts before and after) and the documents that still have points afterwards
/// (written meanwhile).
pub async fn delete_points(
    qdrant: &Qdrant,
    collections: &[String],
    field: &str,
    ids: &[String],
) -> Result<(u64, HashSet<String>), BackendError> {
    if ids.is_empty() {
        return Ok((0, HashSet::new()));
    }
    let (mut deleted, mut any_left) = (0, false);
    let filter = belonging_to(field, ids);
    for c in collections {
        if !indexed(qdrant, c, field, true).await? {
            continue;
        }
        let before = qdrant.count(c, Some(filter.clone())).await?;
        qdrant
            .call(|| {
                let req = DeletePointsBuilder::new(c)
                    .points(filter.clone())
                    .wait(true);
                qdrant.client().delete_points(req)
            })
            .await?;
        let after = qdrant.count(c, Some(filter.clone())).await?;
        deleted += before.saturating_sub(after);
        any_left |= after > 0;
    }
    // usually none are left: only then are the documents' points read
    let left = if any_left {
        points(qdrant, collections, field, ids)
            .await?
            .into_keys()
            .collect()
    } else {
        HashSet::new()
    };
    Ok((deleted, left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_belongs_to_an_expired_id_only_when_no_longer_id_could_own_it() {
        let ids: Vec<String> = ["abc", "abcde", "x*y"].map(String::from).to_vec();
        let lengths = ids.iter().map(String::len).collect();
        let of =
            |suffix: &str, rest: &str| owner(&ids, &lengths, suffix.as_bytes(), rest.as_bytes());
        assert_eq!(of("*", "abc:0"), Some(0));
        assert_eq!(of("*", "abc"), Some(0));
        // a live `abcd` may own it: kept
        assert_eq!(of("*", "abcd:0"), None);
        // a longer expired id claims it exactly
        assert_eq!(of("*", "abcde:1"), Some(1));
        assert_eq!(of("*", "x*y:1"), Some(2));
        assert_eq!(of("*", "xzy:1"), None);
        // a literal suffix decides by itself
        assert_eq!(of(":*", "abc:0"), Some(0));
        assert_eq!(of(":*", "abcd:0"), None);
        assert_eq!(of("", "abcd"), None);
    }

    #[test]
    fn found_keys_are_given_back_per_document_and_server() {
        let mut found = FoundKeys::default();
        found.push(2, "b:1", "k2b".into());
        found.push(0, "", "k0".into());
        found.push(2, "a:1", "k2a".into());
        found.push(2, "a:1", "k2a".into());
        found.push(0, "", "k0x".into());
        found.finish();
        let keys = |pairs: &[(&str, &[&str])]| -> Keys {
            pairs
                .iter()
                .map(|(s, k)| (s.to_string(), k.iter().map(|k| k.to_string()).collect()))
                .collect()
        };
        assert_eq!(found.of(0), keys(&[("", &["k0", "k0x"])]));
        assert_eq!(found.of(1), Keys::new());
        assert_eq!(found.of(2), keys(&[("a:1", &["k2a"]), ("b:1", &["k2b"])]));
        assert_eq!(found.of(3), Keys::new());
    }
}
