//! Settings for running the daemon in production: the alert webhook and the leader lease
//! that lets several replicas run with one sweeper.

use std::time::Duration;

use serde::Serialize;

use super::ConfigError;
use super::reader::Reader;
use crate::secret::SecretUrl;

/// Alerts sent to a Slack-compatible webhook (seeds 001 and 002).
#[derive(Debug, Clone, Serialize)]
pub struct Alerts {
    /// The webhook; `None` sends nothing (alerts are still logged).
    pub webhook: Option<SecretUrl>,
    /// Least time between two alerts with the same key.
    #[serde(with = "super::settings::secs")]
    pub cooldown: Duration,
    /// Failures in a row after which a worker is alerted on.
    pub worker_failures: u32,
}

/// The leader lease in Redis: only its holder sweeps.
#[derive(Debug, Clone, Serialize)]
pub struct Leader {
    /// Whether replicas elect a leader (needs `REDIS_URL`).
    pub enabled: bool,
    /// The Redis key holding the lease.
    pub key: String,
    /// How long a lease lasts without renewal.
    #[serde(with = "super::settings::secs")]
    pub lease: Duration,
    /// This instance's name, shown as the holder.
    pub instance: String,
}

pub(super) fn alerts(r: &Reader<'_>) -> Result<Alerts, ConfigError> {
    let name = "JANITOR_ALERT_WEBHOOK_URL";
    let webhook = match r.optional(name) {
        None => None,
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
            Some(SecretUrl::new(url))
        }
        Some(_) => return Err(r.invalid(name, "a URL starting with https:// or http://")),
    };
    let worker_failures = u32::try_from(r.count("JANITOR_ALERT_WORKER_FAILURES")?)
        .map_err(|_| r.invalid("JANITOR_ALERT_WORKER_FAILURES", "a small whole number"))?;
    Ok(Alerts {
        webhook,
        cooldown: r.duration("JANITOR_ALERT_COOLDOWN_SECONDS", 1.0)?,
        worker_failures,
    })
}

pub(super) fn leader(r: &Reader<'_>, redis_configured: bool) -> Result<Leader, ConfigError> {
    let enabled = r.boolean("JANITOR_LEADER_ELECTION")?;
    if enabled && !redis_configured {
        return Err(r.invalid(
            "JANITOR_LEADER_ELECTION",
            "false, or REDIS_URL set (the lease lives in Redis)",
        ));
    }
    let lease = r.duration("JANITOR_LEADER_LEASE_SECONDS", 1.0)?;
    if lease < Duration::from_secs(1) {
        return Err(r.invalid("JANITOR_LEADER_LEASE_SECONDS", "at least 1 second"));
    }
    let key = r
        .optional("JANITOR_LEADER_KEY")
        .ok_or_else(|| r.invalid("JANITOR_LEADER_KEY", "a Redis key"))?;
    let instance = r.optional("JANITOR_INSTANCE_ID").unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "janitor".into());
        format!("{host}:{}", std::process::id())
    });
    Ok(Leader {
        enabled,
        key,
        lease,
        instance,
    })
}
