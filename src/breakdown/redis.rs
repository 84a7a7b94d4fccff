//! The Redis breakdown: one SCAN of every primary, grouping keys by prefix.
//!
//! Per SCAN page one pipeline reads every key's `PTTL` and `OBJECT IDLETIME`, and
//! `MEMORY USAGE` for the first [`SAMPLE_PER_PREFIX`] keys of each prefix only (SCAN's
//! order follows the hash table, so the first keys seen are a fair sample); a prefix's
//! bytes are its sample's mean times its keys. SCAN runs a page ahead on a connection of
//! its own; the reads are plain pipelined commands the server interleaves with the
//! application's, paced like the sweep (`JANITOR_REDIS_MAX_OPS_PER_SEC`).

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;
use tokio_util::sync::CancellationToken;

use super::{Breakdown, BreakdownError, Options, PrefixTable, prefix_of};
use crate::backend::BackendError;
use crate::backend::redis::keys::escape;
use crate::backend::redis::{Pacer, Redis, scan_ahead};
use crate::resource::{Resource, Source};

/// Keys per prefix whose MEMORY USAGE is read.
const SAMPLE_PER_PREFIX: u64 = 64;
/// Keys SCAN examines per call.
const SCAN_COUNT: u64 = 1000;

/// Walks every primary of `redis`; `ops_per_sec` paces the reads (0: no limit).
pub async fn walk(
    redis: &Redis,
    ops_per_sec: u64,
    opts: Options,
    cancel: &CancellationToken,
) -> Result<Breakdown, BreakdownError> {
    let shards = redis.shards().await?;
    let footprint = Redis::memory_and_size_of(&shards).await?;
    let mut table = PrefixTable::default();
    let mut pacer = Pacer::new(ops_per_sec);
    for shard in &shards {
        let mut con = shard.connection().await?;
        let scan = |cursor: u64| {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("COUNT").arg(SCAN_COUNT);
            cmd
        };
        let mut pages = scan_ahead(shard.new_connection().await?, scan, shard.timeout());
        while let Some(page) = pages.recv().await {
            if cancel.is_cancelled() {
                return Err(BreakdownError::Cancelled);
            }
            let keys = page?;
            if keys.is_empty() {
                continue;
            }
            let names: Vec<String> = keys.iter().map(|k| escape(k)).collect();
            let prefixes: Vec<&str> = names
                .iter()
                .map(|n| prefix_of(n, ':', opts.depth))
                .collect();
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            let mut sampled = Vec::with_capacity(keys.len());
            // samples asked for in this page, so one page does not pass a prefix's quota
            let mut asked: HashMap<&str, u64> = HashMap::new();
            for (key, prefix) in keys.iter().zip(&prefixes) {
                pipe.cmd("PTTL").arg(key);
                if !footprint.lfu {
                    pipe.cmd("OBJECT").arg("IDLETIME").arg(key);
                }
                let asked = asked.entry(prefix).or_default();
                let sample = table.sampled(prefix) + *asked < SAMPLE_PER_PREFIX;
                if sample {
                    *asked += 1;
                    pipe.cmd("MEMORY").arg("USAGE").arg(key);
                }
                sampled.push(sample);
            }
            let replies: Vec<Value> =
                crate::backend::timed("redis", shard.timeout(), pipe.query_async(&mut con)).await?;
            let mut replies = replies.into_iter();
            let mut next = || {
                replies.next().ok_or_else(|| {
                    BackendError::request("redis", "a pipeline answered fewer replies than asked")
                })
            };
            let mut ops = 0;
            for (prefix, sample) in prefixes.iter().zip(sampled) {
                let pttl = int(next()?);
                let idle = if footprint.lfu { None } else { int(next()?) };
                let bytes = if sample { Some(int(next()?)) } else { None };
                ops += 2 + u64::from(sample);
                if pttl == Some(-2) {
                    continue; // gone since SCAN: not counted
                }
                let group = table.group(prefix);
                group.items += 1;
                let without_ttl = group.without_ttl.get_or_insert(0);
                if pttl == Some(-1) {
                    *without_ttl += 1;
                }
                group
                    .ages
                    .get_or_insert_default()
                    .add(idle.map(|s| Duration::from_secs(s.max(0) as u64)));
                if let Some(Some(b)) = bytes {
                    group.sampled += 1;
                    group.sampled_bytes += b.max(0) as u64;
                }
            }
            pacer.take(ops, cancel).await;
        }
    }
    let mut breakdown = Breakdown::new(Resource::Redis, opts, table, Source::Estimated);
    breakdown.notes.push(format!(
        "bytes: MEMORY USAGE of up to {SAMPLE_PER_PREFIX} keys per prefix, scaled to its keys; the server's used_memory is {} (it adds the server's own overhead)",
        footprint.used_memory
    ));
    if footprint.lfu {
        breakdown.notes.push(
            "maxmemory-policy is LFU: the server refuses OBJECT IDLETIME, idle times are unknown"
                .into(),
        );
    }
    Ok(breakdown)
}

/// An integer reply, `None` for nil or a per-command error.
fn int(v: Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(n),
        _ => None,
    }
}
