//! The Redis sweeper: keys without TTL, by policy, with SCAN, pipelines and UNLINK.
//!
//! Planning walks each policy's pattern with `SCAN MATCH COUNT [TYPE]` and reads each key's
//! `PTTL` (plus `OBJECT IDLETIME` and `OBJECT REFCOUNT` for idle policies and keys without
//! TTL) with plain pipelined reads. Applying re-checks every key atomically in the command
//! that acts on it: `EXPIRE key ttl NX` (pipelined) only sets a TTL where there is none, and
//! [`UNLINK_IF_STILL_IDLE`] (one call per hundred keys) unlinks only a key that still has no
//! TTL and is still idle. So a key that got a TTL, or was read, between SCAN and action
//! survives; SCAN returning a key twice is harmless.
//!
//! Throughput comes from never letting the server wait for a round trip, latency from never
//! handing it a long block of work: SCAN runs a page or two ahead on a connection of its
//! own, three pages' reads are in flight at once, and the scripts go one per call, three in
//! flight, never as a pipeline of them. The server then serves the application's commands
//! between any two of them. The largest block left is one `SCAN COUNT` call.
//!
//! Two server facts shape it: under an LFU `maxmemory-policy` `OBJECT IDLETIME` is refused,
//! so idle policies fall back to `expire` (said once); and small integers are shared objects
//! whose idle time is the server's uptime, so they are never taken for idle (refcount is
//! INT_MAX). Pacing (`JANITOR_REDIS_MAX_OPS_PER_SEC`, a pause between batches) keeps the
//! application's latency low.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::{StreamExt, TryStreamExt};
use redis::aio::ConnectionManager;

use super::keys::{escape, glob_match, unescape};
use super::{Pacer, Redis, scan_ahead};
use crate::backend::BackendError;
use crate::backend::sweep::{Applied, Sweep, SweepContext, SweepError};
use crate::config::RedisSweep;
use crate::config::{Policy, PolicyAction};
use crate::metrics::Metrics;
use crate::plan::{Action, Batch, Plan, PlannedItem};
use crate::resource::Resource;

const NAME: &str = "redis";
/// OBJECT REFCOUNT of a shared object (OBJ_SHARED_REFCOUNT).
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// For each key in `ARGV[2..]`: unlinks it only if it has no TTL and, when `ARGV[1]` > 0, has
/// been idle that many seconds (and is not a shared integer). Returns per key the bytes it
/// held (MEMORY USAGE, sampled as the server does for large aggregates; at least 1) if it
/// was unlinked, or 0 if it was left alone; a key given twice counts once. The checks and the one UNLINK of
/// every key that passed them (one per key on a cluster node, which refuses an UNLINK over
/// several slots) are one atomic step. Keys are passed as arguments, not KEYS, so one call
/// may touch keys of several slots on a cluster node (see [`super::cluster`]).
pub const UNLINK_IF_STILL_IDLE: &str = r#"
local limit = tonumber(ARGV[1])
local out, doomed, seen = {}, {}, {}
for i = 2, #ARGV do
  local key = ARGV[i]
  local r = 0
  if not seen[key] and redis.call('PTTL', key) == -1 then
    if limit == 0 or (redis.call('OBJECT', 'REFCOUNT', key) ~= 2147483647
        and redis.call('OBJECT', 'IDLETIME', key) >= limit) then
      -- a server that refuses MEMORY (renamed away) still gets its keys unlinked
      local bytes = redis.pcall('MEMORY', 'USAGE', key)
      r = (type(bytes) == 'number' and bytes > 0) and bytes or 1
      doomed[#doomed + 1] = key
    end
  end
  seen[key] = true
  out[i - 1] = r
end
if #doomed > 0 and type(redis.pcall('UNLINK', unpack(doomed))) == 'table' then
  -- refused before running (a cluster node takes one command over a single slot only):
  -- one key at a time
  for _, key in ipairs(doomed) do
    redis.call('UNLINK', key)
  end
end
return out
"#;

/// Keys per script call (at most Lua's 8,000 `unpack` arguments): one call blocks the server
/// about 0.25 ms (four checked commands per key), so an application command waits little
/// behind the scripts in flight. Fifty gave the same GET p99 and a slower sweep.
const KEYS_PER_SCRIPT: usize = 100;

/// Scripts sent before the first one answers: enough that the server never waits for a
/// round trip (with two it still did, while the janitor read a reply and sent the next),
/// few enough that an application command waits at most this many scripts (0.75 ms).
const SCRIPTS_IN_FLIGHT: usize = 3;

/// Most items in one planned batch (one pipeline and one audit record when applied).
const APPLY_BATCH: usize = 5000;

/// Pages whose key facts are read at once while planning (see [`RedisSweeper::pages`]).
/// Three keep the server fed while the janitor parses a page; they are plain reads, which
/// the server interleaves with other clients' commands, so more cost no latency.
const PAGES_IN_FLIGHT: usize = 3;

/// One SCAN page, its keys that are the policy's own, and their facts.
struct Page {
    /// Keys SCAN returned (protected ones included).
    scanned: u64,
    /// The keys the policy owns.
    keys: Vec<Vec<u8>>,
    /// (PTTL, idle seconds, refcount) per key.
    facts: Vec<(i64, i64, i64)>,
    /// Whether idle time and refcount were read (not under LFU).
    idle: bool,
}

/// Spools the pending items of `policy` as one batch.
fn flush(
    plan: &mut Plan,
    (policy, shard): (&Policy, &Redis),
    lfu: bool,
    pending: &mut Vec<PlannedItem>,
) -> Result<(), SweepError> {
    if pending.is_empty() {
        return Ok(());
    }
    let reason = if lfu && matches!(policy.action, PolicyAction::DeleteIdle(_)) {
        format!("{} (LFU: expire instead)", policy.describe())
    } else {
        policy.describe()
    };
    plan.push(Batch {
        target: policy.pattern.clone(),
        reason,
        items: std::mem::take(pending),
        shard: shard.shard().map(str::to_owned),
        detail: None,
    })
    .map_err(SweepError::spool)
}

/// The Redis sweeper.
pub struct RedisSweeper {
    redis: Redis,
    settings: RedisSweep,
    metrics: Option<Metrics>,
    /// The LFU warning is logged once per process, not once per run.
    lfu_reported: AtomicBool,
}

/// One Redis run, from its plan to its finish.
pub struct RedisRun {
    /// The servers the run planned on: a cluster's primaries, or the one server.
    shards: Vec<Redis>,
    /// used_memory when the run planned.
    used_memory_before: u64,
}

impl RedisSweeper {
    /// A sweeper with `settings` over `redis`; `metrics` gets the per-pattern figures.
    pub fn new(redis: Redis, settings: RedisSweep, metrics: Option<Metrics>) -> Self {
        Self {
            redis,
            settings,
            metrics,
            lfu_reported: AtomicBool::new(false),
        }
    }

    fn policies(&self, ctx: &SweepContext) -> Vec<Policy> {
        let pressure = ctx.priority.is_some_and(|p| p.is_pressure());
        self.settings
            .policies
            .iter()
            .map(|p| {
                if pressure {
                    p.under_pressure(ctx.ttl)
                } else {
                    p.clone()
                }
            })
            .collect()
    }

    fn protected(&self, key: &[u8]) -> bool {
        self.settings
            .protect
            .iter()
            .any(|p| glob_match(p.as_bytes(), key))
    }

    async fn plan_inner(&self, ctx: &SweepContext) -> Result<(Plan, RedisRun), SweepError> {
        let shards = self.redis.shards().await?;
        let mut plan = ctx.new_plan(Resource::Redis)?;
        let footprint = Redis::memory_and_size_of(&shards).await?;
        plan.store_items = footprint.keys;
        let policies = self.policies(ctx);
        let limit = ctx.cap.planning_limit();
        let mut pacer = Pacer::new(self.settings.max_ops_per_sec);
        let mut planned: u64 = 0;
        // an LFU server refuses OBJECT IDLETIME: delete_idle policies fall back to expire
        let lfu = footprint.lfu;
        if lfu
            && policies
                .iter()
                .any(|p| matches!(p.action, PolicyAction::DeleteIdle(_)))
        {
            self.report_lfu();
            plan.notes.push(
                "maxmemory-policy is LFU: OBJECT IDLETIME is refused, delete_idle policies fall back to expire".into(),
            );
        }
        'policies: for (i, policy) in policies.iter().enumerate() {
            let (mut scanned, mut without_ttl, mut shared, mut oldest_idle) =
                (0u64, 0u64, 0u64, 0i64);
            let earlier = &policies[..i];
            // every primary of a cluster is scanned at once, each on its own connections; the
            // pages come in as they are ready, and each server's items are batched apart
            let mut streams = Vec::with_capacity(shards.len());
            for (n, shard) in shards.iter().enumerate() {
                let con = (shard.connection().await?, shard.new_connection().await?);
                let pages = self.pages(con, policy, earlier, !lfu);
                streams.push(Box::pin(pages.map_ok(move |page| (n, page))));
            }
            // items accumulate into batches of up to APPLY_BATCH per server: one audit fsync each
            let mut pending: Vec<Vec<PlannedItem>> = vec![Vec::new(); shards.len()];
            let flush_all = |plan: &mut Plan, pending: &mut Vec<Vec<PlannedItem>>| {
                pending
                    .iter_mut()
                    .zip(&shards)
                    .try_for_each(|(items, shard)| flush(plan, (policy, shard), lfu, items))
            };
            {
                let mut pages = futures::stream::select_all(streams);
                while let Some((n, page)) = pages.try_next().await? {
                    let (shard, pending_here) = (&shards[n], &mut pending[n]);
                    if ctx.cancel.is_cancelled() {
                        flush_all(&mut plan, &mut pending)?;
                        plan.notes
                            .push("planning stopped by shutdown: partial plan".into());
                        break 'policies;
                    }
                    scanned += page.scanned;
                    pacer
                        .take(
                            page.keys.len() as u64 * if page.idle { 3 } else { 1 },
                            &ctx.cancel,
                        )
                        .await;
                    let mut items = Vec::new();
                    for (key, (pttl, idle, refcount)) in page.keys.iter().zip(page.facts) {
                        if pttl != -1 {
                            continue; // has a TTL (left to Redis) or is gone
                        }
                        without_ttl += 1;
                        let action = match (policy.action, page.idle) {
                            (PolicyAction::Expire(ttl), _)
                            | (PolicyAction::DeleteIdle(ttl), false) => {
                                Some(Action::Expire(ttl.as_secs().max(1)))
                            }
                            (PolicyAction::Delete, _) => Some(Action::Delete),
                            (PolicyAction::DeleteIdle(limit), true) => {
                                if refcount == SHARED_REFCOUNT {
                                    shared += 1;
                                    None
                                } else {
                                    oldest_idle = oldest_idle.max(idle);
                                    (idle >= limit.as_secs() as i64).then_some(Action::Delete)
                                }
                            }
                        };
                        if let Some(action) = action {
                            items.push(PlannedItem {
                                id: escape(key),
                                action,
                                detail: None,
                            });
                        }
                    }
                    planned += items.len() as u64;
                    pending_here.extend(items);
                    if pending_here.len() >= APPLY_BATCH {
                        flush(&mut plan, (policy, shard), lfu, pending_here)?;
                    }
                    if planned > limit {
                        flush_all(&mut plan, &mut pending)?;
                        plan.notes.push(format!("planning stopped at {planned} items (the cap allows at most {limit}); the next run continues"));
                        break 'policies;
                    }
                    ctx.pause(self.settings.batch_pause).await;
                }
            }
            flush_all(&mut plan, &mut pending)?;
            let mut note = format!(
                "{}: {scanned} keys scanned, {without_ttl} without TTL",
                policy.pattern
            );
            if matches!(policy.action, PolicyAction::DeleteIdle(_)) && !lfu {
                note += &format!(", oldest idle {oldest_idle} s");
            }
            if shared > 0 {
                note += &format!(", {shared} shared small integers skipped (idle time unknown)");
            }
            plan.notes.push(note);
            if let Some(m) = &self.metrics {
                let idle = (!lfu && matches!(policy.action, PolicyAction::DeleteIdle(_)))
                    .then_some(oldest_idle);
                m.record_redis_pattern(&policy.pattern, without_ttl, idle);
            }
        }
        // keys written while the scan ran are in the plan but not in the count taken before
        // it: the fraction cap weighs the plan against the larger of the two counts (a soak
        // writing 50 keys a second had a 100-key plan refused against a 50-key store)
        if let Ok(after) = Redis::memory_and_size_of(&shards).await {
            plan.store_items = plan.store_items.max(after.keys);
        }
        let run = RedisRun {
            shards,
            used_memory_before: footprint.used_memory,
        };
        Ok((plan, run))
    }

    /// `policy`'s keys on one server, page by page, with their facts. It runs ahead of its
    /// reader: the next `SCAN` and up to [`PAGES_IN_FLIGHT`] pages' fact reads are in flight
    /// while the reader plans a page, so the server never waits for a round trip. Protected
    /// keys and keys an `earlier` policy owns are dropped before their facts are read. Once
    /// `idle_allowed` is false on an LFU server, which refuses OBJECT IDLETIME.
    fn pages<'a>(
        &'a self,
        (con, scan_con): (ConnectionManager, ConnectionManager),
        policy: &'a Policy,
        earlier: &'a [Policy],
        idle_allowed: bool,
    ) -> impl futures::Stream<Item = Result<Page, BackendError>> + Send + 'a {
        let (pattern, count) = (policy.pattern.clone(), self.settings.scan_count);
        let key_type = self.settings.key_type.clone();
        let scan = move |cursor: u64| {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(count);
            if let Some(t) = &key_type {
                scan.arg("TYPE").arg(t);
            }
            scan
        };
        let scanned = futures::stream::unfold(
            scan_ahead(scan_con, scan, self.redis.timeout()),
            |mut pages| async move { pages.recv().await.map(|page| (page, pages)) },
        );
        let wants_idle = matches!(policy.action, PolicyAction::DeleteIdle(_));
        scanned
            .map_ok(move |keys: Vec<Vec<u8>>| {
                let mut con = con.clone();
                async move {
                    let scanned = keys.len() as u64;
                    let keys: Vec<Vec<u8>> = keys
                        .into_iter()
                        .filter(|k| {
                            !self.protected(k)
                                && !earlier.iter().any(|p| glob_match(p.pattern.as_bytes(), k))
                        })
                        .collect();
                    let idle = wants_idle && idle_allowed;
                    let facts = self.key_facts(&mut con, &keys, idle).await?;
                    Ok(Page {
                        scanned,
                        keys,
                        facts,
                        idle,
                    })
                }
            })
            .try_buffered(PAGES_IN_FLIGHT)
    }

    /// (PTTL, idle seconds, refcount) per key; idle and refcount only for idle policies and
    /// keys without TTL (0 otherwise, and for a key gone meanwhile). Plain pipelined reads,
    /// not a script: they cost the server less, and it serves other clients between two
    /// reads of a long pipeline. They need not be atomic: applying checks again, atomically.
    async fn key_facts(
        &self,
        con: &mut ConnectionManager,
        keys: &[Vec<u8>],
        idle: bool,
    ) -> Result<Vec<(i64, i64, i64)>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let timeout = self.redis.timeout();
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("PTTL").arg(k);
        }
        let pttls: Vec<i64> = crate::backend::timed(NAME, timeout, pipe.query_async(con)).await?;
        if pttls.len() != keys.len() {
            return Err(BackendError::request(
                NAME,
                "PTTL pipeline answered a wrong count",
            ));
        }
        let mut facts: Vec<(i64, i64, i64)> = pttls.iter().map(|&p| (p, 0, 0)).collect();
        let without_ttl: Vec<usize> = (0..keys.len()).filter(|&i| pttls[i] == -1).collect();
        if !idle || without_ttl.is_empty() {
            return Ok(facts);
        }
        let mut pipe = redis::pipe();
        for &i in &without_ttl {
            pipe.cmd("OBJECT").arg("IDLETIME").arg(&keys[i]);
            pipe.cmd("OBJECT").arg("REFCOUNT").arg(&keys[i]);
        }
        let objects: Vec<Option<i64>> =
            crate::backend::timed(NAME, timeout, pipe.query_async(con)).await?;
        if objects.len() != 2 * without_ttl.len() {
            return Err(BackendError::request(
                NAME,
                "OBJECT pipeline answered a wrong count",
            ));
        }
        for (&i, pair) in without_ttl.iter().zip(objects.chunks(2)) {
            facts[i].1 = pair[0].unwrap_or(0);
            facts[i].2 = pair[1].unwrap_or(0);
        }
        Ok(facts)
    }

    /// The server holding a batch's keys: the planned cluster primary, or the one server.
    fn shard_of(&self, run: &RedisRun, batch: &Batch) -> Result<Redis, SweepError> {
        let Some(addr) = &batch.shard else {
            return Ok(self.redis.clone());
        };
        let known = run.shards.iter().find(|s| s.shard() == Some(addr)).cloned();
        match known {
            Some(shard) => Ok(shard),
            // not a primary any more (failover): its keys are left for the next run
            None => Err(SweepError::Backend(BackendError::request(
                NAME,
                format!("cluster node {addr} is not among the planned primaries"),
            ))),
        }
    }

    fn report_lfu(&self) {
        if !self.lfu_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "redis maxmemory-policy is LFU: OBJECT IDLETIME is refused; delete_idle policies fall back to expire"
            );
        }
    }

    async fn apply_inner(
        &self,
        run: &RedisRun,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> Result<Applied, SweepError> {
        let policy = self
            .policies(ctx)
            .into_iter()
            .find(|p| p.pattern == batch.target)
            .ok_or_else(|| {
                SweepError::Refused(format!("batch for unknown pattern {}", batch.target))
            })?;
        let idle_limit = match policy.action {
            PolicyAction::DeleteIdle(d) => d.as_secs().max(1),
            _ => 0,
        };
        let mut con = self.shard_of(run, batch)?.connection().await?;
        let timeout = self.redis.timeout();
        let mut expires = Vec::new();
        let mut deletes = Vec::new();
        for item in &batch.items {
            let key = unescape(&item.id).ok_or_else(|| {
                SweepError::Refused(format!("unreadable key in plan: {}", item.id))
            })?;
            match item.action {
                Action::Expire(secs) => expires.push((item, key, secs)),
                Action::Delete => deletes.push((item, key)),
            }
        }
        let mut applied = Applied::default();
        if !expires.is_empty() {
            // a per-command error is recorded for its key, not taken for the whole batch's
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (_, key, secs) in &expires {
                pipe.cmd("EXPIRE").arg(key).arg(*secs).arg("NX");
            }
            let replies: Result<Vec<redis::Value>, _> =
                crate::backend::timed(NAME, timeout, pipe.query_async(&mut con)).await;
            match replies {
                Ok(replies) => {
                    for ((item, _, _), result) in expires.iter().zip(replies) {
                        match result {
                            redis::Value::Int(1) => applied.expired += 1,
                            redis::Value::ServerError(_) => applied.failed.push(item.id.clone()),
                            _ => applied.skipped.push(item.id.clone()),
                        }
                    }
                }
                Err(e) => {
                    applied
                        .failed
                        .extend(batch.items.iter().map(|i| i.id.clone()));
                    applied.interrupted = Some(e.into());
                    return Ok(applied);
                }
            }
        }
        // one script per call, at most SCRIPTS_IN_FLIGHT at a time: the server serves the
        // application's commands between two scripts (never after a long pipeline of them),
        // and the next script is already there when one ends. EVAL, not EVALSHA: the server
        // caches the compiled script by its hash anyway, and a restarted server (or SCRIPT
        // FLUSH) cannot answer NOSCRIPT. Each script is built as it is sent, so the first
        // goes out at once
        let chunks: Vec<_> = deletes.chunks(KEYS_PER_SCRIPT).collect();
        let mut replies = futures::stream::iter((0..chunks.len()).map(|i| {
            let mut con = con.clone();
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            let cmd = pipe.cmd("EVAL").arg(UNLINK_IF_STILL_IDLE).arg(0);
            cmd.arg(idle_limit);
            for (_, key) in chunks[i] {
                cmd.arg(key);
            }
            async move {
                let reply: Result<Vec<redis::Value>, _> =
                    crate::backend::timed(NAME, timeout, pipe.query_async(&mut con)).await;
                (i, reply)
            }
        }))
        .buffered(SCRIPTS_IN_FLIGHT);
        while let Some((i, reply)) = replies.next().await {
            let chunk = chunks[i];
            let per_key = match reply {
                Ok(mut r) => match r.pop() {
                    Some(redis::Value::Array(values)) if values.len() == chunk.len() => values,
                    // the script failed (a key moved to another node, ...): its keys are
                    // reported failed, the other scripts still run
                    _ => {
                        applied
                            .failed
                            .extend(chunk.iter().map(|(item, _)| item.id.clone()));
                        continue;
                    }
                },
                Err(e) => {
                    // the connection failed: this script and the ones not answered may or
                    // may not have run; they are reported failed and the run ends
                    applied.failed.extend(
                        chunks[i..]
                            .iter()
                            .flat_map(|c| c.iter().map(|(item, _)| item.id.clone())),
                    );
                    applied.interrupted = Some(e.into());
                    return Ok(applied);
                }
            };
            for ((item, _), r) in chunk.iter().zip(per_key) {
                match r {
                    redis::Value::Int(bytes) if bytes > 0 => {
                        applied.deleted += 1;
                        applied.bytes_freed += bytes as u64;
                    }
                    _ => applied.skipped.push(item.id.clone()),
                }
            }
        }
        Pacer::new(self.settings.max_ops_per_sec)
            .take(batch.items.len() as u64, &ctx.cancel)
            .await;
        Ok(applied)
    }
}

impl Sweep for RedisSweeper {
    const RESOURCE: Resource = Resource::Redis;
    type Run = RedisRun;

    async fn plan(&self, ctx: &SweepContext) -> Result<(Plan, RedisRun), SweepError> {
        self.plan_inner(ctx).await
    }

    async fn apply(
        &self,
        run: &RedisRun,
        batch: &Batch,
        ctx: &SweepContext,
    ) -> Result<Applied, SweepError> {
        self.apply_inner(run, batch, ctx).await
    }

    /// Keys to delete that still exist, keys to expire that still have no TTL.
    async fn unapplied(&self, batch: &Batch) -> Result<Vec<String>, SweepError> {
        let shards = self.redis.shards().await?;
        let run = RedisRun {
            shards,
            used_memory_before: 0,
        };
        let mut con = self.shard_of(&run, batch)?.connection().await?;
        let mut pipe = redis::pipe();
        let mut ids = Vec::with_capacity(batch.items.len());
        for item in &batch.items {
            let key = unescape(&item.id).ok_or_else(|| {
                SweepError::Refused(format!("unreadable key in the audit log: {}", item.id))
            })?;
            pipe.cmd("PTTL").arg(key);
            ids.push(item);
        }
        let timeout = self.redis.timeout();
        let pttls: Vec<i64> =
            crate::backend::timed(NAME, timeout, pipe.query_async(&mut con)).await?;
        Ok(ids
            .into_iter()
            .zip(pttls)
            .filter(|(item, pttl)| match item.action {
                // -2: gone
                Action::Delete => *pttl != -2,
                // -1: still no TTL
                Action::Expire(_) => *pttl == -1,
            })
            .map(|(item, _)| item.id.clone())
            .collect())
    }

    /// Under pressure, how many bytes the pass freed (used_memory before and after).
    async fn finish(&self, run: &RedisRun, ctx: &SweepContext) -> Vec<String> {
        let before = run.used_memory_before;
        if !ctx.priority.is_some_and(|p| p.is_pressure()) || before == 0 {
            return Vec::new();
        }
        match Redis::memory_and_size_of(&run.shards).await {
            Ok(after) => {
                let after = after.used_memory;
                vec![format!(
                    "freed {} bytes (used_memory {before} -> {after})",
                    before.saturating_sub(after)
                )]
            }
            Err(e) => vec![format!("used_memory after the pass unknown: {e}")],
        }
    }
}
