//! The daily report (seed 002: generated at 2 AM, saved, sent): at `JANITOR_REPORT_HOUR` in
//! `JANITOR_TIMEZONE`, the last 24 hours' report is written to `JANITOR_REPORT_DIR` as JSON
//! and Markdown, recorded in the history and sent to the alert webhook when one is set.
//!
//! Time is the runtime's (tokio) clock from the wall-clock instant the loop started, so a
//! test with paused time sees the report fire at the configured hour.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use tokio_util::sync::CancellationToken;

use super::{Report, ReportSource, markdown};
use crate::alert::Alerts;
use crate::history::{EventKind, History};

const DAY: Duration = Duration::from_secs(86_400);
/// The longest Markdown sent to the webhook (Slack cuts longer messages).
const WEBHOOK_CHARS: usize = 3500;

/// The next instant after `now` at `hour`:00 in `tz`.
pub fn next_fire(now: SystemTime, tz: &TimeZone, hour: u8) -> SystemTime {
    let Ok(ts) = Timestamp::try_from(now) else {
        return now + DAY;
    };
    let local = ts.to_zoned(tz.clone());
    let at = |day: &Zoned| {
        day.with()
            .hour(hour as i8)
            .minute(0)
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()
    };
    let today = at(&local);
    let next = match today {
        Some(t) if t > local => Some(t),
        _ => local.checked_add(1.day()).ok().and_then(|d| at(&d)),
    };
    next.map_or(now + DAY, |z| SystemTime::from(z.timestamp()))
}

/// The daily report's loop.
pub struct Daily {
    /// Where the figures come from.
    pub history: History,
    /// The report's other inputs.
    pub source: ReportSource,
    /// The webhook (the report is sent when one is configured).
    pub alerts: Alerts,
    /// The hour, in `tz`.
    pub hour: u8,
    /// The time zone of `hour`.
    pub tz: TimeZone,
    /// Where the files go.
    pub dir: PathBuf,
}

impl Daily {
    /// Writes a report at every `hour` until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let (wall, start) = (SystemTime::now(), tokio::time::Instant::now());
        let now = || wall + start.elapsed();
        loop {
            let at = next_fire(now(), &self.tz, self.hour);
            let wait = at.duration_since(now()).unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => return,
            }
            match self.write(at).await {
                Ok(path) => tracing::info!(path = %path.display(), "daily report written"),
                Err(e) => tracing::warn!(error = %e, "daily report failed"),
            }
        }
    }

    /// The report of the 24 hours before `at`, written and sent; the JSON file's path.
    pub async fn write(&self, at: SystemTime) -> Result<PathBuf, DailyError> {
        let inputs = self.source.inputs(true).await;
        let report = Report::build(&self.history, &inputs, "24h", DAY, at).await?;
        let md = markdown(&report);
        let day = Timestamp::try_from(at)
            .map(|t| t.to_zoned(self.tz.clone()).date().to_string())
            .unwrap_or_else(|_| "unknown".into());
        std::fs::create_dir_all(&self.dir)?;
        let json_path = self.dir.join(format!("janitor-report-{day}.json"));
        let json = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?;
        std::fs::write(&json_path, json)?;
        std::fs::write(self.dir.join(format!("janitor-report-{day}.md")), &md)?;
        let summary = format!(
            "daily report {day}: {} issues, {} recommendations ({})",
            report.issues.len(),
            report.recommendations.len(),
            json_path.display()
        );
        self.history
            .record_event(EventKind::Report, None, at, &summary);
        let mut text: String = md.chars().take(WEBHOOK_CHARS).collect();
        if text.len() < md.len() {
            text.push_str("\n… (cut; the whole report is in the report directory)");
        }
        self.alerts.notify(&text);
        Ok(json_path)
    }
}

/// Why a daily report was not written.
#[derive(Debug, thiserror::Error)]
pub enum DailyError {
    /// The history could not be read.
    #[error("history: {0}")]
    History(#[from] rusqlite::Error),
    /// The files could not be written.
    #[error("report directory: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{PerResource, Priority, Resource, Usage};

    #[tokio::test(start_paused = true)]
    async fn the_daily_report_fires_at_the_configured_hour_under_paused_time() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::in_memory(DAY * 30);
        let usage = Usage {
            total_items: 10,
            size_bytes: None,
            size_source: None,
            usage_fraction: Some(0.2),
            oldest_age_hours: None,
            oldest_source: None,
            notes: Vec::new(),
        };
        history.record_usage(Resource::Redis, SystemTime::now(), &usage, Priority::Low);
        let mut measured = PerResource::default();
        measured[Resource::Redis] = true;
        let fire = next_fire(SystemTime::now(), &TimeZone::UTC, 2);
        let daily = Daily {
            history: history.clone(),
            source: ReportSource {
                base: super::super::Inputs {
                    measured,
                    ..Default::default()
                },
                drift: Default::default(),
                breakdown: None,
            },
            alerts: Alerts::log_only(
                &crate::config::load(&Default::default()).unwrap().alerts,
                "t",
            ),
            hour: 2,
            tz: TimeZone::UTC,
            dir: dir.path().join("reports"),
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(daily.run(cancel.clone()));
        let until_fire = fire.duration_since(SystemTime::now()).unwrap();
        let files = || -> Vec<String> {
            std::fs::read_dir(dir.path().join("reports"))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        tokio::time::sleep(until_fire.saturating_sub(Duration::from_secs(60))).await;
        assert!(files().is_empty(), "nothing before the hour");
        // the report reads the history on a blocking thread: give it real time to finish
        tokio::time::sleep(Duration::from_secs(120)).await;
        for _ in 0..200 {
            if files().len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            tokio::task::yield_now().await;
        }
        let mut names = files();
        names.sort();
        let day = Timestamp::try_from(fire)
            .unwrap()
            .to_zoned(TimeZone::UTC)
            .date();
        assert_eq!(
            names,
            [
                format!("janitor-report-{day}.json"),
                format!("janitor-report-{day}.md")
            ]
        );
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("reports").join(&names[0])).unwrap(),
        )
        .unwrap();
        assert_eq!(
            json["until"],
            humantime::format_rfc3339_seconds(fire).to_string()
        );
        assert_eq!(json["stores"]["redis"]["usage_now"], 20.0);
        cancel.cancel();
        task.await.unwrap();
    }

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn the_next_fire_is_the_next_report_hour_in_the_time_zone() {
        let madrid = TimeZone::get("Europe/Madrid").unwrap();
        let cases = [
            (
                TimeZone::UTC,
                "2026-11-30T01:00:00Z",
                2,
                "2026-11-30T02:00:00Z",
            ),
            (
                TimeZone::UTC,
                "2026-11-30T02:00:00Z",
                2,
                "2026-12-01T02:00:00Z",
            ),
            (
                TimeZone::UTC,
                "2026-11-30T23:59:59Z",
                0,
                "2026-12-01T00:00:00Z",
            ),
            // Madrid is UTC+1 in winter, UTC+2 in summer
            (
                madrid.clone(),
                "2026-11-30T12:00:00Z",
                2,
                "2026-12-01T01:00:00Z",
            ),
            (
                madrid.clone(),
                "2026-07-01T12:00:00Z",
                2,
                "2026-07-02T00:00:00Z",
            ),
            // 2 AM does not exist the night clocks go forward (29 March 2026): 3 AM is used
            (madrid, "2026-03-28T12:00:00Z", 2, "2026-03-29T01:00:00Z"),
        ];
        for (tz, now, hour, want) in cases {
            assert_eq!(next_fire(at(now), &tz, hour), at(want), "{now} at {hour}h");
        }
    }
}
