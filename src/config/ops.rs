//! Settings for running the daemon in production: the alert webhook, the leader lease
//! that lets several replicas run with one sweeper, and the history with its daily report.

use std::path::{Path, PathBuf};
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

/// The history file and the daily report.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// The SQLite file.
    pub path: PathBuf,
    /// How long runs and measurements are kept.
    #[serde(with = "super::settings::secs")]
    pub retention: Duration,
    /// Largest file size, bytes.
    pub max_bytes: u64,
    /// Hour of day the daily report is written, in `timezone`.
    pub report_hour: u8,
    /// Where daily reports go.
    pub report_dir: PathBuf,
    /// The time zone of `report_hour` (an IANA name).
    pub timezone: String,
}

impl History {
    /// The parsed time zone (checked when the settings were made).
    pub fn tz(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

pub(super) fn history(r: &Reader<'_>, audit_log: &Path) -> Result<History, ConfigError> {
    let beside = |name: &str| {
        audit_log
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join(name)
    };
    let path = r
        .optional_not_blank("JANITOR_HISTORY_PATH")?
        .map_or_else(|| beside("history.sqlite"), PathBuf::from);
    if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
        return Err(r.invalid("JANITOR_HISTORY_PATH", "a regular file's path"));
    }
    let report_hour = match r.text("JANITOR_REPORT_HOUR").parse::<u8>() {
        Ok(h) if h < 24 => h,
        _ => return Err(r.invalid("JANITOR_REPORT_HOUR", "an hour from 0 to 23")),
    };
    let timezone = r.text("JANITOR_TIMEZONE").trim().to_string();
    if jiff::tz::TimeZone::get(&timezone).is_err() {
        return Err(r.invalid(
            "JANITOR_TIMEZONE",
            "an IANA time zone name such as UTC or Europe/Madrid",
        ));
    }
    Ok(History {
        path,
        retention: r.duration("JANITOR_HISTORY_DAYS", 86_400.0)?,
        max_bytes: r
            .count("JANITOR_HISTORY_MAX_MB")?
            .saturating_mul(1024 * 1024),
        report_hour,
        report_dir: r
            .optional_not_blank("JANITOR_REPORT_DIR")?
            .map_or_else(|| beside("reports"), PathBuf::from),
        timezone,
    })
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
