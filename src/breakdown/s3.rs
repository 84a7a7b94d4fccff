//! The S3 breakdown: one listing of the bucket, grouping objects by key prefix (`/`).
//!
//! Sizes and ages come from the listing itself (ListObjectsV2 gives both), so every figure
//! is measured; the listing is streamed a page at a time.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{Breakdown, BreakdownError, Options, PrefixTable, prefix_of};
use crate::backend::BackendError;
use crate::backend::s3::S3;
use crate::resource::{Resource, Source};

/// Lists the whole bucket of `s3`; `ttl` is the S3 sweep's, for `bytes_older_than_ttl`.
pub async fn walk(
    s3: &S3,
    ttl: Duration,
    opts: Options,
    now: SystemTime,
    cancel: &CancellationToken,
) -> Result<Breakdown, BreakdownError> {
    let mut table = PrefixTable::default();
    let mut pages = s3.list_pages("");
    loop {
        let page = match pages.recv().await {
            Some(Ok(Some(page))) => page,
            Some(Ok(None)) => break,
            Some(Err(e)) => return Err(e.into()),
            None => {
                let e = BackendError::request("s3", "listing ended without its last page");
                return Err(e.into());
            }
        };
        if cancel.is_cancelled() {
            return Err(BreakdownError::Cancelled);
        }
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            let size = object.size().unwrap_or(0).max(0) as u64;
            let age = object
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok())
                .map(|t| crate::time::age(now, t));
            let group = table.group(prefix_of(key, '/', opts.depth));
            group.items += 1;
            group.bytes += size;
            group.ages.get_or_insert_default().add(age);
            let old = group.bytes_older_than_ttl.get_or_insert(0);
            if age.is_some_and(|a| a > ttl) {
                *old += size;
            }
        }
    }
    let mut breakdown = Breakdown::new(Resource::S3, opts, table, Source::Measured);
    breakdown.notes.push(format!(
        "sizes and ages from the listing; bytes_older_than_ttl: last modified over {} ago (the S3 TTL)",
        humantime::format_duration(ttl)
    ));
    Ok(breakdown)
}
