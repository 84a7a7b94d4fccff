//! Reports: what each store looked like over a period and what the janitor did about it,
//! with the issues detected (seed 002) and recommendations (seed 000), every one computed
//! from the history's figures, never canned. Served as JSON or Markdown by the API and
//! `janitor report`, and written daily by [`daily`].

pub mod daily;
mod markdown;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use markdown::markdown;

use crate::breakdown::cache::BreakdownCache;
use crate::breakdown::{Breakdown, Options};
use crate::drift::{Drift, DriftBoard};
use crate::history::{History, Totals};
use crate::resource::{PerResource, Resource};

/// Failed runs in a period from which a loop counts as failing again and again.
const FAILING_RUNS: u64 = 3;

/// A report's period: `24h`, `7d`, `30d`, or any duration up to a year.
pub fn parse_period(text: &str) -> Option<Duration> {
    let d = humantime::parse_duration(text.trim()).ok()?;
    (d >= Duration::from_secs(60) && d <= Duration::from_secs(366 * 86_400)).then_some(d)
}

/// Where a report's inputs come from: the fixed facts, the live drift, the breakdowns.
#[derive(Clone)]
pub struct ReportSource {
    /// The fixed part (stores, TTLs, lifecycle switch); `drift` and `breakdowns` are filled
    /// per report.
    pub base: Inputs,
    /// The live drift.
    pub drift: DriftBoard,
    /// Breakdowns: the cached ones are used; Qdrant's is walked when asked (it is cheap).
    pub breakdown: Option<Arc<BreakdownCache>>,
}

impl ReportSource {
    /// The inputs as of now; `walk_qdrant` walks Qdrant's collections if no recent
    /// breakdown is cached (at most 30 s).
    pub async fn inputs(&self, walk_qdrant: bool) -> Inputs {
        let mut inputs = self.base.clone();
        inputs.drift = self.drift.get();
        if let Some(cache) = &self.breakdown {
            let opts = Options::default();
            for r in [Resource::Redis, Resource::S3, Resource::Qdrant] {
                if let Some(b) = cache.cached(r, opts) {
                    inputs.breakdowns.push(b);
                } else if r == Resource::Qdrant && walk_qdrant && self.base.measured[r] {
                    let wait = Duration::from_secs(30);
                    if let Some(Ok(b)) = cache.get(r, opts, false, wait).await {
                        inputs.breakdowns.push(b);
                    }
                }
            }
        }
        inputs
    }
}

/// What a report needs besides the history.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The stores measured here (the configured ones).
    pub measured: PerResource<bool>,
    /// The stores swept here.
    pub swept: PerResource<bool>,
    /// Each swept store's normal TTL.
    pub ttl: PerResource<Option<Duration>>,
    /// Drift between the stores, when the document passes measured some.
    pub drift: Option<Drift>,
    /// Breakdowns at hand (cached or walked for the report), for prefix-level advice.
    pub breakdowns: Vec<Arc<Breakdown>>,
    /// Whether documents expire (`JANITOR_DOCUMENTS_EXPIRE`).
    pub documents_expire: bool,
}

impl Inputs {
    /// The fixed inputs of `settings`: the `configured` stores, the `swept` ones, their TTLs.
    pub fn from_settings(
        settings: &crate::config::Settings,
        configured: &PerResource<bool>,
        swept: &PerResource<bool>,
    ) -> Inputs {
        Inputs {
            measured: configured.clone(),
            swept: swept.clone(),
            ttl: PerResource::from_fn(|r| swept[r].then(|| settings.retention.ttl(r))),
            documents_expire: settings.documents.enabled,
            ..Inputs::default()
        }
    }
}

/// An issue detected, or a recommendation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    /// `info`, `warning` or `critical` (issues only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'static str>,
    /// The store it is about (`minio` for S3, as in the metrics).
    pub resource: Option<&'static str>,
    /// A stable code (`still_high`, `cleanup_not_working`, ...).
    pub code: &'static str,
    /// What it says, with its figures.
    pub message: String,
}

/// A report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The period asked for, as given.
    pub period: String,
    /// Its start.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub since: SystemTime,
    /// Its end.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub until: SystemTime,
    /// When it was made.
    #[serde(serialize_with = "crate::time::rfc3339")]
    pub generated_at: SystemTime,
    /// Per store (`redis`, `qdrant`, `minio`, `mongodb`, `documents`), its figures.
    pub stores: BTreeMap<&'static str, Totals>,
    /// Drift between the stores, when the document lifecycle measured some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
    /// Issues detected.
    pub issues: Vec<Finding>,
    /// Recommendations.
    pub recommendations: Vec<Finding>,
}

impl Report {
    /// The report of the `period` (named `label`) ending at `until`.
    pub async fn build(
        history: &History,
        inputs: &Inputs,
        label: &str,
        period: Duration,
        until: SystemTime,
    ) -> rusqlite::Result<Report> {
        let since = until.checked_sub(period).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut stores = BTreeMap::new();
        for r in Resource::ALL {
            if inputs.measured[r] || inputs.swept[r] {
                stores.insert(r.api_key(), history.totals(r, since, until).await?);
            }
        }
        let mut report = Report {
            period: label.to_string(),
            since,
            until,
            generated_at: until,
            stores,
            drift: inputs.drift.clone(),
            issues: Vec::new(),
            recommendations: Vec::new(),
        };
        report.detect(inputs);
        Ok(report)
    }

    /// Fills `issues` and `recommendations` from the figures.
    fn detect(&mut self, inputs: &Inputs) {
        let (mut issues, mut advice) = (Vec::new(), Vec::new());
        for r in Resource::ALL {
            let Some(t) = self.stores.get(r.api_key()) else {
                continue;
            };
            let name = r.api_key();
            let finding = |severity, code, message: String| Finding {
                severity,
                resource: Some(name),
                code,
                message,
            };
            let applied = t.runs.get("succeeded").copied().unwrap_or(0);
            if let Some(p @ ("HIGH" | "CRITICAL")) = t.priority_now.as_deref() {
                let severity = if p == "CRITICAL" {
                    "critical"
                } else {
                    "warning"
                };
                let usage = t.usage_now.map_or("?".into(), |u| format!("{u:.1}%"));
                issues.push(finding(
                    Some(severity),
                    "still_high",
                    format!("{r} is at {p} ({usage}) after {applied} cleanups in the period ({} items deleted, {} expired)", t.deleted, t.expired),
                ));
                if inputs.swept[r] {
                    advice.push(finding(
                        None,
                        "lower_ttl_or_raise_budget",
                        format!("{r} stays at {p} although its sweeps succeed: lower its TTL (now {}) or raise its budget; usage went from {} to {} in the period", ttl_text(inputs.ttl[r]), pct(t.usage_min), pct(t.usage_max)),
                    ));
                }
            }
            if let (Some(oldest), Some(ttl)) = (t.oldest_age_hours, inputs.ttl[r]) {
                let ttl_hours = ttl.as_secs_f64() / 3600.0;
                if inputs.swept[r] && oldest > 2.0 * ttl_hours {
                    issues.push(finding(
                        Some("warning"),
                        "cleanup_not_working",
                        format!("{r}'s oldest item is {oldest:.1} h old, more than twice its TTL ({ttl_hours:.1} h): its cleanup is not keeping up or not reaching it"),
                    ));
                }
            }
            let failed = t.runs.get("failed").copied().unwrap_or(0)
                + t.runs.get("failed_closed").copied().unwrap_or(0);
            if failed >= FAILING_RUNS {
                let cause = t.failures.first().and_then(|f| f.cause.clone());
                issues.push(finding(
                    Some("critical"),
                    "failing_again",
                    format!(
                        "{r}: {failed} runs failed in the period; the last cause: {}",
                        cause.as_deref().unwrap_or("unknown")
                    ),
                ));
            }
            if let Some(capped) = t.runs.get("aborted_cap").filter(|n| **n > 0) {
                issues.push(finding(
                    Some("warning"),
                    "aborted_by_cap",
                    format!("{r}: {capped} runs planned more than the deletion cap allows and deleted nothing"),
                ));
                advice.push(finding(
                    None,
                    "check_the_cap",
                    format!("{r}: look at the capped plans (dry run) and, if they are right, raise JANITOR_MAX_DELETE_FRACTION or JANITOR_MAX_DELETE_COUNT"),
                ));
            }
            if t.measurements == 0 && inputs.measured[r] && r.is_measured() {
                issues.push(finding(
                    Some("warning"),
                    "not_measured",
                    format!("{r} was not measured in the period"),
                ));
            }
        }
        for b in &inputs.breakdowns {
            advice.extend(breakdown_advice(b, inputs));
        }
        if let Some(d) = &self.drift {
            for (code, count, what) in [
                (
                    "orphan_points",
                    d.orphan_points.count,
                    "Qdrant points whose document is gone",
                ),
                (
                    "orphan_keys",
                    d.orphan_keys.count,
                    "Redis document keys whose document is gone",
                ),
                (
                    "missing_objects",
                    d.missing_objects.count,
                    "documents whose S3 object is missing",
                ),
            ] {
                if let Some(n) = count.filter(|n| *n > 0) {
                    issues.push(Finding {
                        severity: Some("warning"),
                        resource: None,
                        code,
                        message: format!("drift: {n} {what}"),
                    });
                }
            }
        }
        self.issues = issues;
        self.recommendations = advice;
    }
}

/// Advice from a breakdown: unindexed Qdrant collections, Redis prefixes holding most keys
/// without TTL, old S3 bytes still referenced.
fn breakdown_advice(b: &Breakdown, inputs: &Inputs) -> Vec<Finding> {
    let mut advice = Vec::new();
    let mut finding = |code, message| {
        advice.push(Finding {
            severity: None,
            resource: Some(b.resource.api_key()),
            code,
            message,
        })
    };
    match b.resource {
        Resource::Qdrant => {
            for g in b
                .groups
                .iter()
                .filter(|g| g.timestamp_indexed == Some(false))
            {
                finding(
                    "timestamp_index",
                    format!(
                        "Qdrant collection {} ({} points) has no range index on its timestamp field: create one (or set JANITOR_QDRANT_CREATE_INDEX=true) so sweeps filter instead of scrolling every point",
                        g.prefix, g.items
                    ),
                );
            }
        }
        Resource::Redis => {
            let without: u64 = b.groups.iter().filter_map(|g| g.without_ttl).sum::<u64>()
                + b.other.without_ttl.unwrap_or(0);
            for g in &b.groups {
                let n = g.without_ttl.unwrap_or(0);
                if without > 0 && n * 5 >= without && n >= 100 {
                    finding(
                        "redis_prefix_without_ttl",
                        format!(
                            "Redis prefix {:?} holds {n} keys without TTL ({:.0}% of all such keys, ~{:.1} MB): give them a TTL in the application or a policy in JANITOR_REDIS_POLICIES",
                            g.prefix,
                            n as f64 * 100.0 / without as f64,
                            g.bytes as f64 / 1_048_576.0
                        ),
                    );
                }
            }
        }
        Resource::S3 => {
            let old: u64 = b
                .groups
                .iter()
                .filter_map(|g| g.bytes_older_than_ttl)
                .sum::<u64>()
                + b.other.bytes_older_than_ttl.unwrap_or(0);
            if old > 0 && !inputs.documents_expire {
                finding(
                    "expire_documents",
                    format!(
                        "{:.1} MB of objects are older than the S3 TTL but still referenced by documents: enable the document lifecycle (JANITOR_DOCUMENTS_EXPIRE=true) to expire old documents with their files",
                        old as f64 / 1_048_576.0
                    ),
                );
            }
        }
        _ => {}
    }
    advice
}

fn pct(x: Option<f64>) -> String {
    x.map_or("?".into(), |x| format!("{x:.1}%"))
}

fn ttl_text(ttl: Option<Duration>) -> String {
    ttl.map_or("none".into(), |t| humantime::format_duration(t).to_string())
}

#[cfg(test)]
mod tests;
