//! `janitor dedup scan`: identical content in the bucket, and the bytes dedup would reclaim.
//!
//! Only objects that share their size with another object of the same owner can be
//! identical, so the listing is grouped by (owner, size) first and only those candidates are
//! downloaded and hashed (streamed, `JANITOR_DEDUP_SCAN_CONCURRENCY` at a time). The owner
//! is a segment of the key (`JANITOR_DEDUP_OWNER_SEGMENT`, e.g. 1 for `uploads/<user>/...`)
//! or, without one, the bucket. It reports, never deletes.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::hash::{self, Digested};
use crate::backend::BackendError;
use crate::backend::s3::S3;

const NAME: &str = "s3";

/// Objects with identical content, of one owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The owner, when the key layout tells it.
    pub owner: Option<String>,
    /// The content's SHA-256.
    pub sha256: String,
    /// Bytes per copy.
    pub size: u64,
    /// The copies, sorted.
    pub keys: Vec<String>,
}

/// The scan's findings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Objects listed.
    pub objects: u64,
    /// Bytes listed.
    pub bytes: u64,
    /// Objects downloaded and hashed (those sharing a size with another).
    pub hashed_objects: u64,
    /// Bytes hashed.
    pub hashed_bytes: u64,
    /// Groups of identical objects.
    pub groups: Vec<Group>,
    /// Bytes freed by keeping one copy per group.
    pub reclaimable_bytes: u64,
}

fn owner(key: &str, segment: Option<usize>) -> Option<String> {
    key.split('/')
        .nth(segment?)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Scans the objects under `prefix`.
pub async fn scan(
    s3: &S3,
    prefix: &str,
    owner_segment: Option<usize>,
    concurrency: usize,
) -> Result<Report, BackendError> {
    let mut report = Report::default();
    let mut by_size: HashMap<(Option<String>, u64), Vec<String>> = HashMap::new();
    let mut pages = s3
        .client()
        .list_objects_v2()
        .bucket(s3.bucket())
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| BackendError::request(NAME, e))?;
        for object in page.contents() {
            let (Some(key), size) = (object.key(), object.size().unwrap_or(0).max(0) as u64) else {
                continue;
            };
            report.objects += 1;
            report.bytes += size;
            by_size
                .entry((owner(key, owner_segment), size))
                .or_default()
                .push(key.to_string());
        }
    }
    let candidates: Vec<(Option<String>, u64, String)> = by_size
        .into_iter()
        .filter(|(_, keys)| keys.len() > 1)
        .flat_map(|((owner, size), keys)| keys.into_iter().map(move |k| (owner.clone(), size, k)))
        .collect();
    let hashed: Vec<(Option<String>, String, Digested)> = futures::stream::iter(candidates)
        .map(|(owner, _, key)| async move {
            let digest = hash_object(s3, &key).await?;
            Ok::<_, BackendError>((owner, key, digest))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut groups: BTreeMap<(Option<String>, String, u64), Vec<String>> = BTreeMap::new();
    for (owner, key, d) in hashed {
        report.hashed_objects += 1;
        report.hashed_bytes += d.size;
        groups
            .entry((owner, d.sha256, d.size))
            .or_default()
            .push(key);
    }
    for ((owner, sha256, size), mut keys) in groups {
        if keys.len() < 2 {
            continue;
        }
        keys.sort();
        report.reclaimable_bytes += size * (keys.len() as u64 - 1);
        report.groups.push(Group {
            owner,
            sha256,
            size,
            keys,
        });
    }
    Ok(report)
}

/// Downloads one object through SHA-256, chunk by chunk.
async fn hash_object(s3: &S3, key: &str) -> Result<Digested, BackendError> {
    let request = s3.client().get_object().bucket(s3.bucket()).key(key).send();
    let object = crate::backend::timed(NAME, s3.timeout(), request).await?;
    let chunks = futures::stream::unfold(object.body, |mut body| async move {
        body.next().await.map(|chunk| (chunk, body))
    });
    hash::digest(chunks, u64::MAX)
        .await
        .map_err(|e| BackendError::request(NAME, format!("{key}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_a_key_segment() {
        assert_eq!(owner("uploads/u1/a.pdf", Some(1)).as_deref(), Some("u1"));
        assert_eq!(owner("uploads/u1/a.pdf", None), None);
        assert_eq!(owner("top.pdf", Some(1)), None);
        assert_eq!(owner("uploads//a.pdf", Some(1)), None);
    }
}
