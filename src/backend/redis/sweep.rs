//! The Redis sweeper: keys without TTL, by policy, with SCAN, pipelines and UNLINK.
//!
//! Planning walks each policy's pattern with `SCAN MATCH COUNT [TYPE]` and, per batch, reads
//! each key's `PTTL` (plus `OBJECT IDLETIME` and `OBJECT REFCOUNT` for idle policies) with a
//! read-only script, one call per hundred keys ([`KEY_FACTS`]). Applying re-checks every key
//! atomically in the command that acts on it: `EXPIRE key ttl NX` (pipelined) only sets a
//! TTL where there is none, and [`UNLINK_IF_STILL_IDLE`] (one call per hundred keys) unlinks
//! only a key that still has no TTL and is still idle. So a key that got a TTL, or was read,
//! between SCAN and action survives; SCAN returning a key twice is harmless. Scripts go one
//! per round trip, never pipelined: the server then serves the application's commands
//! between two of them, which keeps its latency low during a sweep.
//!
//! Two server facts shape it: under an LFU `maxmemory-policy` `OBJECT IDLETIME` is refused,
//! so idle policies fall back to `expire` (said once); and small integers are shared objects
//! whose idle time is the server's uptime, so they are never taken for idle (refcount is
//! INT_MAX). Pacing (`JANITOR_REDIS_MAX_OPS_PER_SEC`, a pause between batches) keeps the
//! application's latency low.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Redis;
use super::keys::{escape, glob_match, unescape};
use super::policy::{Policy, PolicyAction};
use crate::backend::BackendError;
use crate::config::RedisSweep;
use crate::metrics::Metrics;
use crate::plan::{Action, Batch, Plan, PlannedItem};
use crate::resource::Resource;
use crate::sweep::{Applied, Sweep, SweepContext, SweepError};

const NAME: &str = "redis";
/// OBJECT REFCOUNT of a shared object (OBJ_SHARED_REFCOUNT).
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// For each key in ARGV[2..]: unlinks it only if it has no TTL and, when ARGV[1] > 0, has
/// been idle that many seconds (and is not a shared integer). Returns 1 (unlinked) or 0
/// (left alone) per key. Each key's check and unlink are one atomic step. Keys are passed as
/// arguments, not KEYS, so one call may touch keys of several slots on a cluster node
/// (see [`super::cluster`]).
pub const UNLINK_IF_STILL_IDLE: &str = r#"
local limit = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV do
  local key = ARGV[i]
  local r = 0
  if redis.call('PTTL', key) == -1 then
    if limit == 0 or (redis.call('OBJECT', 'REFCOUNT', key) ~= 2147483647
        and redis.call('OBJECT', 'IDLETIME', key) >= limit) then
      r = redis.call('UNLINK', key)
    end
  end
  out[i - 1] = r
end
return out
"#;

/// For each key in ARGV[2..]: its PTTL and, when ARGV[1] is "1", its OBJECT IDLETIME and
/// OBJECT REFCOUNT (asked only for keys without TTL; 0 otherwise). Read-only. Under an LFU
/// policy OBJECT IDLETIME fails, and the error says "LFU".
pub const KEY_FACTS: &str = r#"
local idle = ARGV[1] == '1'
local out = {}
for i = 2, #ARGV do
  local key = ARGV[i]
  local pttl = redis.call('PTTL', key)
  out[#out + 1] = pttl
  if idle then
    if pttl == -1 then
      out[#out + 1] = redis.call('OBJECT', 'IDLETIME', key)
      out[#out + 1] = redis.call('OBJECT', 'REFCOUNT', key)
    else
      out[#out + 1] = 0
      out[#out + 1] = 0
    end
  end
end
return out
"#;

/// Keys per script call: small enough that one call blocks the server well under a
/// millisecond, large enough to save round trips.
const KEYS_PER_SCRIPT: usize = 100;

/// Most items in one planned batch (one pipeline and one audit record when applied).
const APPLY_BATCH: usize = 5000;

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
    })
    .map_err(SweepError::spool)
}

/// Spaces out commands to at most `per_sec` a second (0: no limit).
struct Pacer {
    per_sec: u64,
    start: Instant,
    sent: u64,
}

impl Pacer {
    fn new(per_sec: u64) -> Self {
        Self {
            per_sec,
            start: Instant::now(),
            sent: 0,
        }
    }

    /// Accounts for `ops` commands; waits until they are due, or until shutdown.
    async fn take(&mut self, ops: u64, cancel: &CancellationToken) {
        self.sent += ops;
        if self.per_sec == 0 {
            return;
        }
        let due = self.start + Duration::from_secs_f64(self.sent as f64 / self.per_sec as f64);
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = cancel.cancelled() => {}
        }
    }
}

/// The Redis sweeper.
pub struct RedisSweeper {
    redis: Redis,
    settings: RedisSweep,
    metrics: Option<Metrics>,
    lfu_reported: AtomicBool,
    /// used_memory when the current run planned (runs of a resource never overlap).
    used_memory_before: AtomicU64,
    /// The servers the current run planned on: a cluster's primaries, or the one server.
    shards: std::sync::Mutex<Vec<Redis>>,
}

impl RedisSweeper {
    /// A sweeper with `settings` over `redis`; `metrics` gets the per-pattern figures.
    pub fn new(redis: Redis, settings: RedisSweep, metrics: Option<Metrics>) -> Self {
        Self {
            redis,
            settings,
            metrics,
            lfu_reported: AtomicBool::new(false),
            used_memory_before: AtomicU64::new(0),
            shards: std::sync::Mutex::new(Vec::new()),
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

    async fn plan_inner(&self, ctx: &SweepContext) -> Result<Plan, SweepError> {
        let timeout = self.redis.timeout();
        let shards = self.redis.shards().await?;
        *self.shards() = shards.clone();
        let mut plan = ctx.new_plan(Resource::Redis)?;
        let (used, dbsize) = Redis::memory_and_size_of(&shards).await?;
        plan.store_items = dbsize;
        self.used_memory_before.store(used, Ordering::Relaxed);
        let policies = self.policies(ctx);
        let limit = ctx.cap.planning_limit();
        let mut pacer = Pacer::new(self.settings.max_ops_per_sec);
        let mut planned: u64 = 0;
        let mut lfu = false;
        'policies: for (i, policy) in policies.iter().enumerate() {
            let (mut scanned, mut without_ttl, mut shared, mut oldest_idle) =
                (0u64, 0u64, 0u64, 0i64);
            for shard in &shards {
                let mut con = shard.connection().await?;
                let mut cursor: u64 = 0;
                // items accumulate into batches of up to APPLY_BATCH: one audit fsync each
                let mut pending: Vec<PlannedItem> = Vec::new();
                loop {
                    if ctx.cancel.is_cancelled() {
                        flush(&mut plan, (policy, shard), lfu, &mut pending)?;
                        plan.notes
                            .push("planning stopped by shutdown: partial plan".into());
                        break 'policies;
                    }
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(cursor)
                        .arg("MATCH")
                        .arg(&policy.pattern)
                        .arg("COUNT")
                        .arg(self.settings.scan_count);
                    if let Some(t) = &self.settings.key_type {
                        scan.arg("TYPE").arg(t);
                    }
                    let (next, keys): (u64, Vec<Vec<u8>>) =
                        crate::backend::timed(NAME, timeout, scan.query_async(&mut con)).await?;
                    cursor = next;
                    scanned += keys.len() as u64;
                    // protected keys and keys an earlier policy owns are not ours
                    let keys: Vec<Vec<u8>> = keys
                        .into_iter()
                        .filter(|k| {
                            !self.protected(k)
                                && !policies[..i]
                                    .iter()
                                    .any(|p| glob_match(p.pattern.as_bytes(), k))
                        })
                        .collect();
                    let was_lfu = lfu;
                    let idle_policy = matches!(policy.action, PolicyAction::DeleteIdle(_)) && !lfu;
                    let facts = match self.key_facts(&mut con, &keys, idle_policy).await {
                        Err(e) if idle_policy && e.to_string().contains("LFU") => {
                            lfu = true;
                            self.report_lfu();
                            plan.notes.push(
                            "maxmemory-policy is LFU: OBJECT IDLETIME is refused, delete_idle policies fall back to expire".into(),
                        );
                            self.key_facts(&mut con, &keys, false).await?
                        }
                        other => other?,
                    };
                    pacer
                        .take(
                            keys.len() as u64 * if idle_policy { 3 } else { 1 },
                            &ctx.cancel,
                        )
                        .await;
                    let mut items = Vec::new();
                    for (key, (pttl, idle, refcount)) in keys.iter().zip(facts) {
                        if pttl != -1 {
                            continue; // has a TTL (left to Redis) or is gone
                        }
                        without_ttl += 1;
                        let action = match (policy.action, lfu) {
                            (PolicyAction::Expire(ttl), _)
                            | (PolicyAction::DeleteIdle(ttl), true) => {
                                Some(Action::Expire(ttl.as_secs().max(1)))
                            }
                            (PolicyAction::Delete, _) => Some(Action::Delete),
                            (PolicyAction::DeleteIdle(limit), false) => {
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
                            });
                        }
                    }
                    planned += items.len() as u64;
                    if was_lfu != lfu {
                        // items planned before the fallback keep their own reason
                        flush(&mut plan, (policy, shard), was_lfu, &mut pending)?;
                    }
                    pending.extend(items);
                    if pending.len() >= APPLY_BATCH || cursor == 0 || planned > limit {
                        flush(&mut plan, (policy, shard), lfu, &mut pending)?;
                    }
                    if planned > limit {
                        plan.notes.push(format!("planning stopped at {planned} items (the cap allows at most {limit}); the next run continues"));
                        break 'policies;
                    }
                    if cursor == 0 {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(self.settings.batch_pause) => {}
                        () = ctx.cancel.cancelled() => {}
                    }
                }
            }
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
        Ok(plan)
    }

    /// (PTTL, idle seconds, refcount) per key; idle and refcount only for idle policies.
    async fn key_facts(
        &self,
        con: &mut ConnectionManager,
        keys: &[Vec<u8>],
        idle: bool,
    ) -> Result<Vec<(i64, i64, i64)>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // one script per round trip (see `apply_inner`)
        let mut replies: Vec<Vec<i64>> = Vec::new();
        for chunk in keys.chunks(KEYS_PER_SCRIPT) {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(KEY_FACTS).arg(0).arg(if idle { "1" } else { "0" });
            for k in chunk {
                cmd.arg(k);
            }
            let reply = cmd.query_async(con);
            replies.push(crate::backend::timed(NAME, self.redis.timeout(), reply).await?);
        }
        let per_key = if idle { 3 } else { 1 };
        let facts: Vec<(i64, i64, i64)> = replies
            .iter()
            .flat_map(|r| r.chunks(per_key))
            .map(|c| {
                (
                    c[0],
                    c.get(1).copied().unwrap_or(0),
                    c.get(2).copied().unwrap_or(0),
                )
            })
            .collect();
        if facts.len() != keys.len() {
            return Err(BackendError::request(
                NAME,
                "key facts script answered a wrong count",
            ));
        }
        Ok(facts)
    }

    /// The shards of the last plan (a cluster's primaries, or the one server).
    fn shards(&self) -> std::sync::MutexGuard<'_, Vec<Redis>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server holding a batch's keys: the planned cluster primary, or the one server.
    async fn shard_of(&self, batch: &Batch) -> Result<Redis, SweepError> {
        let Some(addr) = &batch.shard else {
            return Ok(self.redis.clone());
        };
        let known = self
            .shards()
            .iter()
            .find(|s| s.shard() == Some(addr))
            .cloned();
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

    async fn apply_inner(&self, batch: &Batch, ctx: &SweepContext) -> Result<Applied, SweepError> {
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
        let mut con = self.shard_of(batch).await?.connection().await?;
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
        // a per-command error is recorded for its keys, not taken for the whole batch's
        let mut results: Vec<redis::Value> = Vec::new();
        if !expires.is_empty() {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (_, key, secs) in &expires {
                pipe.cmd("EXPIRE").arg(key).arg(*secs).arg("NX");
            }
            let replies: Vec<redis::Value> =
                crate::backend::timed(NAME, timeout, pipe.query_async(&mut con)).await?;
            results.extend(replies);
        }
        // one script per round trip, not a pipeline of them: the server serves the
        // application's commands between two scripts instead of after all of them. EVAL, not
        // EVALSHA: the server caches the compiled script by its hash anyway, and a restarted
        // server (or SCRIPT FLUSH) cannot answer NOSCRIPT
        for chunk in deletes.chunks(KEYS_PER_SCRIPT) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            let cmd = pipe.cmd("EVAL").arg(UNLINK_IF_STILL_IDLE).arg(0);
            cmd.arg(idle_limit);
            for (_, key) in chunk {
                cmd.arg(key);
            }
            let replies: Vec<redis::Value> =
                crate::backend::timed(NAME, timeout, pipe.query_async(&mut con)).await?;
            results.extend(replies);
        }
        let mut results = results.into_iter();
        let mut applied = Applied::default();
        for ((item, _, _), result) in expires.iter().zip(results.by_ref()) {
            match result {
                redis::Value::Int(1) => applied.expired += 1,
                redis::Value::ServerError(_) => applied.failed.push(item.id.clone()),
                _ => applied.skipped.push(item.id.clone()),
            }
        }
        for (chunk, result) in deletes.chunks(KEYS_PER_SCRIPT).zip(results) {
            let per_key = match result {
                redis::Value::Array(values) if values.len() == chunk.len() => values,
                _ => {
                    applied
                        .failed
                        .extend(chunk.iter().map(|(item, _)| item.id.clone()));
                    continue;
                }
            };
            for ((item, _), r) in chunk.iter().zip(per_key) {
                match r {
                    redis::Value::Int(1) => applied.deleted += 1,
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

    async fn plan(&self, ctx: &SweepContext) -> Result<Plan, SweepError> {
        self.plan_inner(ctx).await
    }

    async fn apply(&self, batch: &Batch, ctx: &SweepContext) -> Result<Applied, SweepError> {
        self.apply_inner(batch, ctx).await
    }

    /// Under pressure, how many bytes the pass freed (used_memory before and after).
    async fn finish(&self, ctx: &SweepContext) -> Vec<String> {
        let before = self.used_memory_before.load(Ordering::Relaxed);
        if !ctx.priority.is_some_and(|p| p.is_pressure()) || before == 0 {
            return Vec::new();
        }
        match self.redis.memory_and_size().await {
            Ok((after, _)) => vec![format!(
                "freed {} bytes (used_memory {before} -> {after})",
                before.saturating_sub(after)
            )],
            Err(e) => vec![format!("used_memory after the pass unknown: {e}")],
        }
    }
}
