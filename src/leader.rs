//! Several replicas, one sweeper: a leader lease in Redis.
//!
//! Every replica serves the admin API and measures; only the holder of the lease sweeps.
//! The lease is `SET key token NX PX lease` with a random token, renewed every third of the
//! lease by a script that extends it only while it still holds our token, and deleted (same
//! check) on shutdown. A replica counts itself leader only until `lease` after the start of
//! its last successful renewal, by its own monotonic clock, so a leader that cannot reach
//! Redis stops sweeping before anyone else may take over.
//!
//! A leader that was paused (GC, SIGSTOP, a stuck VM) may wake up in the middle of a run
//! after its lease went to another replica. [`Leadership::confirm`] is the fence: the engine
//! calls it before every batch, it renews the lease only if the token is still ours, and
//! any doubt (another token, no key, Redis unreachable) stops the run before it deletes.
//!
//! On a Redis Cluster the lease commands go to the primary serving the key's slot, found
//! on first use and again after any error (a failover or a moved slot fails the renewal,
//! which fails closed, and the next attempt finds the new owner).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::redis::Redis;
use crate::backend::{BackendError, timed};
use crate::config::Leader as LeaderSettings;
use crate::worker::Worker;

/// Extends the lease if it still holds our token: 1 if extended, 0 if not ours.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Deletes the lease if it still holds our token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// This replica's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the lease: sweeps.
    Leader,
    /// Another replica (or nobody yet) holds it: serves the API only.
    Standby,
}

#[derive(Debug, Default)]
struct Held {
    /// Until when (monotonic) we may act as leader; `None` if we do not hold the lease.
    until: Option<Instant>,
    /// The holder's token as last read, when it is not us.
    other: Option<String>,
}

/// The lease, as one replica sees it.
pub struct Leadership {
    redis: Redis,
    /// The server holding the key: `redis`, or on a cluster the primary serving the key's
    /// slot; found on first use, and again after any error (a failover, a moved slot).
    node: tokio::sync::Mutex<Option<Redis>>,
    key: String,
    token: String,
    lease: Duration,
    held: Mutex<Held>,
}

impl Leadership {
    /// A contender for the lease in `settings` (nothing is sent yet).
    pub fn new(redis: Redis, settings: &LeaderSettings) -> Self {
        let token = format!(
            "{}/{:016x}{:016x}",
            settings.instance,
            fastrand::u64(..),
            fastrand::u64(..)
        );
        Self {
            redis,
            node: tokio::sync::Mutex::new(None),
            key: settings.key.clone(),
            token,
            lease: settings.lease,
            held: Mutex::default(),
        }
    }

    /// Our token (instance name and a random part), the value of the key while we lead.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// How often the lease is renewed: a third of its length.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Whether we hold the lease now, by our own clock.
    pub fn is_leader(&self) -> bool {
        self.lock().until.is_some_and(|t| Instant::now() < t)
    }

    /// Our role now.
    pub fn role(&self) -> Role {
        if self.is_leader() {
            Role::Leader
        } else {
            Role::Standby
        }
    }

    /// The other holder's token, when we are on standby and know it.
    pub fn holder(&self) -> Option<String> {
        let held = self.lock();
        if held.until.is_some_and(|t| Instant::now() < t) {
            Some(self.token.clone())
        } else {
            held.other.clone()
        }
    }

    /// Renews the lease if we hold it, tries to take it otherwise. Returns the role after
    /// the attempt and whether it changed to leader just now.
    pub async fn tick(&self) -> Result<(Role, bool), BackendError> {
        let was_leader = self.is_leader();
        if was_leader && self.renew().await? {
            return Ok((Role::Leader, false));
        }
        let started = Instant::now();
        let px = self.lease.as_millis() as u64;
        let set = async |con: &mut ConnectionManager| {
            let mut set = redis::cmd("SET");
            set.arg(&self.key)
                .arg(&self.token)
                .arg("NX")
                .arg("PX")
                .arg(px);
            set.query_async::<Option<String>>(con).await
        };
        let acquired = self.run(set).await?.is_some();
        if acquired {
            self.set_held(Some(started + self.lease), None);
            tracing::info!(token = %self.token, "leader lease acquired: this replica sweeps");
            return Ok((Role::Leader, true));
        }
        let other = self.get_holder().await?;
        // our own token can still be there if a renewal raced the expiry check: it is ours
        if other.as_deref() == Some(self.token.as_str()) && self.renew().await? {
            return Ok((Role::Leader, !was_leader));
        }
        if was_leader {
            tracing::warn!(holder = ?other, "leader lease lost: this replica stops sweeping");
        }
        self.set_held(None, other);
        Ok((Role::Standby, false))
    }

    /// The fence before a batch: extends the lease if the key still holds our token.
    /// `Err` (another holder, no lease, Redis unreachable) means: do not delete.
    pub async fn confirm(&self) -> Result<(), String> {
        match self.renew().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "leader lease lost (holder now {}): remaining batches not applied",
                self.read_holder().await.as_deref().unwrap_or("unknown")
            )),
            Err(e) => Err(format!(
                "leader lease cannot be confirmed ({e}): remaining batches not applied"
            )),
        }
    }

    /// The current holder's token as Redis has it (`None`: no holder, or no answer).
    async fn read_holder(&self) -> Option<String> {
        self.get_holder().await.ok().flatten()
    }

    /// `GET` of the lease key.
    async fn get_holder(&self) -> Result<Option<String>, BackendError> {
        self.run(async |con: &mut ConnectionManager| {
            let mut get = redis::cmd("GET");
            get.arg(&self.key);
            get.query_async(con).await
        })
        .await
    }

    /// A connection to the server holding the key. Callers forget the node after an error.
    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let mut node = self.node.lock().await;
        if node.is_none() {
            *node = Some(self.redis.node_for_key(&self.key).await?);
        }
        let result = node.as_ref().expect("set above").connection().await;
        if result.is_err() {
            *node = None;
        }
        result
    }

    /// Runs a lease command on the key's server; an error makes the next call find the
    /// server again.
    async fn run<T: redis::FromRedisValue>(
        &self,
        f: impl AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, BackendError> {
        let mut con = self.connection().await?;
        let result = timed("redis", self.redis.timeout(), f(&mut con)).await;
        if result.is_err() {
            *self.node.lock().await = None;
        }
        result
    }

    /// Gives the lease up (shutdown), so another replica takes over at once.
    pub async fn release(&self) {
        self.set_held(None, None);
        let release = async |con: &mut ConnectionManager| {
            let script = redis::Script::new(RELEASE);
            let mut call = script.key(&self.key);
            call.arg(&self.token);
            call.invoke_async::<i64>(con).await
        };
        match self.run(release).await {
            Ok(1) => tracing::info!("leader lease released"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "leader lease not released; it expires by itself"),
        }
    }

    /// Extends the lease if the key holds our token; updates what we hold either way.
    async fn renew(&self) -> Result<bool, BackendError> {
        let started = Instant::now();
        let renew = async |con: &mut ConnectionManager| {
            let script = redis::Script::new(RENEW);
            let mut call = script.key(&self.key);
            call.arg(&self.token).arg(self.lease.as_millis() as u64);
            call.invoke_async::<i64>(con).await
        };
        let renewed = self.run(renew).await? == 1;
        if renewed {
            self.set_held(Some(started + self.lease), None);
        } else {
            self.set_held(None, None);
        }
        Ok(renewed)
    }

    fn set_held(&self, until: Option<Instant>, other: Option<String>) {
        let mut held = self.lock();
        held.until = until;
        held.other = other;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The lease could not be renewed or taken.
#[derive(Debug, thiserror::Error)]
#[error("lease not renewed: {0}")]
pub struct LeaseError(#[from] BackendError);

/// The worker that keeps the lease: renews it, or tries to take it, every third of the
/// lease, and wakes the sweep timers when this replica becomes leader.
pub struct LeaseWorker {
    leadership: Arc<Leadership>,
    on_elected: Box<dyn Fn() + Send + Sync>,
}

impl LeaseWorker {
    /// A worker for `leadership`; `on_elected` runs each time this replica takes the lease.
    pub fn new(leadership: Arc<Leadership>, on_elected: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            leadership,
            on_elected: Box::new(on_elected),
        }
    }
}

/// Whether this replica may sweep: the narrow view of the election that the monitor, the
/// timers and the API need. Without an election, it always may.
#[derive(Clone, Default)]
pub struct LeaderHandle(Option<Arc<Leadership>>);

impl LeaderHandle {
    /// A handle on `leadership` (`None`: no election, always leader).
    pub fn new(leadership: Option<Arc<Leadership>>) -> Self {
        Self(leadership)
    }

    /// Whether this replica may sweep: it holds the lease, or there is no election.
    pub fn may_sweep(&self) -> bool {
        self.0.as_ref().is_none_or(|l| l.is_leader())
    }

    /// `leader` or `standby` (always `leader` without an election).
    pub fn role(&self) -> Role {
        if self.may_sweep() {
            Role::Leader
        } else {
            Role::Standby
        }
    }

    /// Who holds the lease, when another replica does.
    pub fn holder(&self) -> Option<String> {
        self.0.as_ref().and_then(|l| l.holder())
    }

    /// The lease itself, when there is an election.
    pub fn lease(&self) -> Option<&Arc<Leadership>> {
        self.0.as_ref()
    }
}

impl Worker for LeaseWorker {
    type Error = LeaseError;

    fn name(&self) -> &str {
        "leader"
    }

    fn interval(&self) -> Duration {
        self.leadership.renew_every()
    }

    async fn work(&mut self, _cancel: &CancellationToken) -> Result<String, LeaseError> {
        match self.leadership.tick().await {
            Ok((Role::Leader, elected)) => {
                if elected {
                    (self.on_elected)();
                }
                Ok(format!("leader ({})", self.leadership.token()))
            }
            Ok((Role::Standby, _)) => Ok(format!(
                "standby: lease held by {}",
                self.leadership.holder().as_deref().unwrap_or("nobody")
            )),
            Err(e) => Err(LeaseError(e)),
        }
    }
}
