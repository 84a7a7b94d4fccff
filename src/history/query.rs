//! Reading the history: runs by filter and page, usage and deletion series downsampled in
//! SQL, and the per-store totals a report is made of.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ToSql, params};
use serde::Serialize;

use super::{History, unix};
use crate::resource::Resource;

/// Points a series is cut to at most.
pub const MAX_POINTS: u64 = 288;

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// One store only.
    pub resource: Option<Resource>,
    /// One outcome only (`succeeded`, `failed_closed`, ...).
    pub outcome: Option<String>,
    /// Started at or after.
    pub since: Option<SystemTime>,
    /// Started before.
    pub until: Option<SystemTime>,
    /// Page size.
    pub limit: u64,
    /// Rows skipped.
    pub offset: u64,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct RunPage {
    /// The runs, as recorded.
    pub runs: Vec<serde_json::Value>,
    /// Runs matching the filters.
    pub total: u64,
    /// Page size.
    pub limit: u64,
    /// Rows skipped.
    pub offset: u64,
}

/// One point of a usage series (averaged over its step).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsagePoint {
    /// The step's start.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub at: SystemTime,
    /// Mean usage, percent (`None` without a budget).
    pub usage_percentage: Option<f64>,
    /// Largest item count in the step.
    pub total_items: u64,
    /// Mean size, MB.
    pub size_mb: Option<f64>,
}

/// Deletions of one step (dry runs not counted).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeletionPoint {
    /// The step's start.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub at: SystemTime,
    /// Items deleted.
    pub deleted: u64,
    /// Items given a TTL.
    pub expired: u64,
    /// Bytes freed (measured).
    pub bytes_freed: u64,
    /// Runs.
    pub runs: u64,
}

/// One store's figures over a period, for a report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    /// Usage at the last measurement, percent.
    pub usage_now: Option<f64>,
    /// Lowest usage measured, percent.
    pub usage_min: Option<f64>,
    /// Highest usage measured, percent.
    pub usage_max: Option<f64>,
    /// Priority at the last measurement.
    pub priority_now: Option<String>,
    /// Items at the last measurement.
    pub items_now: Option<u64>,
    /// Oldest item at the last measurement, hours.
    pub oldest_age_hours: Option<f64>,
    /// Measurements at HIGH or CRITICAL.
    pub pressured_measurements: u64,
    /// Measurements.
    pub measurements: u64,
    /// Items deleted (applied runs).
    pub deleted: u64,
    /// Items given a TTL.
    pub expired: u64,
    /// Bytes freed, measured.
    pub bytes_freed: u64,
    /// Items the store failed to delete.
    pub failed_items: u64,
    /// Runs by outcome.
    pub runs: BTreeMap<String, u64>,
    /// Emergency runs.
    pub emergencies: u64,
    /// Runs that failed closed or failed, newest first (at most 20): id, time, cause.
    pub failures: Vec<Failure>,
    /// Alerts raised about this store.
    pub alerts: u64,
}

/// A run that ended without cleaning, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    /// The run.
    pub run_id: String,
    /// When it started.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub at: SystemTime,
    /// `failed_closed`, `failed` or `aborted_cap`.
    pub outcome: String,
    /// Its message.
    pub cause: Option<String>,
}

/// `until` in whole seconds, rounded up: a period ending now includes this second's runs.
fn unix_end(until: SystemTime) -> i64 {
    let secs = unix(until);
    let whole = until
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == 0);
    if whole { secs } else { secs + 1 }
}

fn time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// The step that cuts `since..until` into at most [`MAX_POINTS`] points.
pub fn step(since: SystemTime, until: SystemTime) -> u64 {
    let span = until.duration_since(since).unwrap_or_default().as_secs();
    span.div_ceil(MAX_POINTS).max(60)
}

impl History {
    /// Runs a read on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let history = self.clone();
        tokio::task::spawn_blocking(move || history.with(f))
            .await
            .unwrap_or_else(|e| Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
    }

    /// The runs matching `q`, newest first.
    pub async fn runs(&self, q: RunQuery) -> rusqlite::Result<RunPage> {
        self.read(move |c| {
            let mut filter = String::from(" WHERE 1 = 1");
            let mut args: Vec<Box<dyn ToSql + Send>> = Vec::new();
            if let Some(r) = q.resource {
                filter.push_str(" AND resource = ?");
                args.push(Box::new(r.name()));
            }
            if let Some(o) = &q.outcome {
                filter.push_str(" AND outcome = ?");
                args.push(Box::new(o.clone()));
            }
            if let Some(t) = q.since {
                filter.push_str(" AND started_at >= ?");
                args.push(Box::new(unix(t)));
            }
            if let Some(t) = q.until {
                filter.push_str(" AND started_at < ?");
                args.push(Box::new(unix(t)));
            }
            let refs: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref() as &dyn ToSql).collect();
            let total: i64 =
                c.query_row(&format!("SELECT COUNT(*) FROM runs{filter}"), &refs[..], |r| {
                    r.get(0)
                })?;
            let sql = format!(
                "SELECT record FROM runs{filter} ORDER BY started_at DESC, rowid DESC LIMIT {} OFFSET {}",
                q.limit, q.offset
            );
            let mut stmt = c.prepare(&sql)?;
            let runs = stmt
                .query_map(&refs[..], |r| r.get::<_, String>(0))?
                .filter_map(|r| r.ok())
                .filter_map(|json| serde_json::from_str(&json).ok())
                .collect();
            Ok(RunPage {
                runs,
                total: total as u64,
                limit: q.limit,
                offset: q.offset,
            })
        })
        .await
    }

    /// One run by id.
    pub async fn run(&self, id: String) -> rusqlite::Result<Option<serde_json::Value>> {
        self.read(move |c| {
            let json: Option<String> = c
                .query_row("SELECT record FROM runs WHERE id = ?1", [id], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
        })
        .await
    }

    /// `resource`'s usage from `since` to `until`, one point per step.
    pub async fn usage_series(
        &self,
        resource: Resource,
        since: SystemTime,
        until: SystemTime,
    ) -> rusqlite::Result<(u64, Vec<UsagePoint>)> {
        let step = step(since, until) as i64;
        let points = self
            .read(move |c| {
                let mut stmt = c.prepare(
                    "SELECT (at / ?1) * ?1, AVG(usage_fraction) * 100, MAX(total_items),
                     AVG(size_bytes) / 1048576.0 FROM usage
                     WHERE resource = ?2 AND at >= ?3 AND at < ?4 GROUP BY 1 ORDER BY 1",
                )?;
                let rows = stmt.query_map(
                    params![step, resource.name(), unix(since), unix_end(until)],
                    |r| {
                        Ok(UsagePoint {
                            at: time(r.get(0)?),
                            usage_percentage: r.get::<_, Option<f64>>(1)?.map(round2),
                            total_items: r.get::<_, i64>(2)? as u64,
                            size_mb: r.get::<_, Option<f64>>(3)?.map(round2),
                        })
                    },
                )?;
                rows.collect()
            })
            .await?;
        Ok((step as u64, points))
    }

    /// `resource`'s deletions from `since` to `until`, one point per step with any.
    pub async fn deletion_series(
        &self,
        resource: Resource,
        since: SystemTime,
        until: SystemTime,
    ) -> rusqlite::Result<Vec<DeletionPoint>> {
        let step = step(since, until) as i64;
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT (started_at / ?1) * ?1, SUM(deleted), SUM(expired), SUM(bytes_freed), COUNT(*)
                 FROM runs WHERE resource = ?2 AND started_at >= ?3 AND started_at < ?4
                 AND dry_run = 0 GROUP BY 1 ORDER BY 1",
            )?;
            let rows = stmt.query_map(
                params![step, resource.name(), unix(since), unix_end(until)],
                |r| {
                    Ok(DeletionPoint {
                        at: time(r.get(0)?),
                        deleted: r.get::<_, i64>(1)? as u64,
                        expired: r.get::<_, i64>(2)? as u64,
                        bytes_freed: r.get::<_, i64>(3)? as u64,
                        runs: r.get::<_, i64>(4)? as u64,
                    })
                },
            )?;
            rows.collect()
        })
        .await
    }

    /// `resource`'s figures from `since` to `until`.
    pub async fn totals(
        &self,
        resource: Resource,
        since: SystemTime,
        until: SystemTime,
    ) -> rusqlite::Result<Totals> {
        self.read(move |c| totals(c, resource, unix(since), unix_end(until)))
            .await
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn totals(c: &Connection, resource: Resource, since: i64, until: i64) -> rusqlite::Result<Totals> {
    let name = resource.name();
    let mut t = Totals::default();
    c.query_row(
        "SELECT MIN(usage_fraction) * 100, MAX(usage_fraction) * 100, COUNT(*),
         SUM(priority IN ('HIGH', 'CRITICAL'))
         FROM usage WHERE resource = ?1 AND at >= ?2 AND at < ?3",
        params![name, since, until],
        |r| {
            t.usage_min = r.get::<_, Option<f64>>(0)?.map(round2);
            t.usage_max = r.get::<_, Option<f64>>(1)?.map(round2);
            t.measurements = r.get::<_, i64>(2)? as u64;
            t.pressured_measurements = r.get::<_, Option<i64>>(3)?.unwrap_or(0) as u64;
            Ok(())
        },
    )?;
    let last = c.query_row(
        "SELECT usage_fraction * 100, priority, total_items, oldest_age_hours FROM usage
         WHERE resource = ?1 AND at >= ?2 AND at < ?3 ORDER BY at DESC LIMIT 1",
        params![name, since, until],
        |r| {
            Ok((
                r.get::<_, Option<f64>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<f64>>(3)?,
            ))
        },
    );
    match last {
        Ok((usage, priority, items, oldest)) => {
            t.usage_now = usage.map(round2);
            t.priority_now = Some(priority);
            t.items_now = Some(items as u64);
            t.oldest_age_hours = oldest.map(round2);
        }
        Err(rusqlite::Error::QueryReturnedNoRows) => {}
        Err(e) => return Err(e),
    }
    c.query_row(
        "SELECT COALESCE(SUM(deleted), 0), COALESCE(SUM(expired), 0), COALESCE(SUM(bytes_freed), 0),
         COALESCE(SUM(failed), 0), COALESCE(SUM(trigger = 'emergency'), 0)
         FROM runs WHERE resource = ?1 AND started_at >= ?2 AND started_at < ?3 AND dry_run = 0",
        params![name, since, until],
        |r| {
            t.deleted = r.get::<_, i64>(0)? as u64;
            t.expired = r.get::<_, i64>(1)? as u64;
            t.bytes_freed = r.get::<_, i64>(2)? as u64;
            t.failed_items = r.get::<_, i64>(3)? as u64;
            t.emergencies = r.get::<_, i64>(4)? as u64;
            Ok(())
        },
    )?;
    let mut stmt = c.prepare(
        "SELECT outcome, COUNT(*) FROM runs WHERE resource = ?1 AND started_at >= ?2
         AND started_at < ?3 GROUP BY outcome",
    )?;
    for row in stmt.query_map(params![name, since, until], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (outcome, n) = row?;
        t.runs.insert(outcome, n as u64);
    }
    let mut stmt = c.prepare(
        "SELECT id, started_at, outcome, message FROM runs WHERE resource = ?1
         AND started_at >= ?2 AND started_at < ?3
         AND outcome IN ('failed_closed', 'failed', 'aborted_cap')
         ORDER BY started_at DESC LIMIT 20",
    )?;
    for row in stmt.query_map(params![name, since, until], |r| {
        Ok(Failure {
            run_id: r.get(0)?,
            at: time(r.get(1)?),
            outcome: r.get(2)?,
            cause: r.get(3)?,
        })
    })? {
        t.failures.push(row?);
    }
    t.alerts = c.query_row(
        "SELECT COUNT(*) FROM events WHERE kind = 'alert' AND resource = ?1 AND at >= ?2 AND at < ?3",
        params![name, since, until],
        |r| r.get::<_, i64>(0),
    )? as u64;
    Ok(t)
}
