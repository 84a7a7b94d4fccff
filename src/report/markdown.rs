//! A report as Markdown: what the daily report file holds and the webhook receives.

use std::fmt::Write;

use super::Report;

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn opt(x: Option<f64>, unit: &str) -> String {
    x.map_or("–".into(), |x| format!("{x:.1}{unit}"))
}

/// Bytes in the largest unit that keeps a whole part (B, KB, MB, GB, TB).
fn mb(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KB", "MB", "GB"] {
        if value < 1024.0 {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{value:.1} TB")
}

/// `report` as Markdown.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Janitor report: {}\n", report.period);
    let _ = writeln!(
        md,
        "From {} to {} (generated {}).\n",
        rfc3339(report.since),
        rfc3339(report.until),
        rfc3339(report.generated_at)
    );
    md.push_str("| store | usage now | min | max | priority | deleted | expired | freed | runs | failed | emergencies | alerts |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (name, t) in &report.stores {
        let runs: u64 = t.runs.values().sum();
        let failed = t.runs.get("failed").copied().unwrap_or(0)
            + t.runs.get("failed_closed").copied().unwrap_or(0);
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {runs} | {failed} | {} | {} |",
            opt(t.usage_now, "%"),
            opt(t.usage_min, "%"),
            opt(t.usage_max, "%"),
            t.priority_now.as_deref().unwrap_or("–"),
            t.deleted,
            t.expired,
            mb(t.bytes_freed),
            t.emergencies,
            t.alerts
        );
    }
    md.push_str("\n## Issues detected\n\n");
    if report.issues.is_empty() {
        md.push_str("None.\n");
    }
    for i in &report.issues {
        let _ = writeln!(
            md,
            "- **{}** {}: {}",
            i.severity.unwrap_or("info"),
            i.resource.unwrap_or("all"),
            i.message
        );
    }
    md.push_str("\n## Recommendations\n\n");
    if report.recommendations.is_empty() {
        md.push_str("None.\n");
    }
    for r in &report.recommendations {
        let _ = writeln!(md, "- {}: {}", r.resource.unwrap_or("all"), r.message);
    }
    let failures: Vec<_> = report
        .stores
        .iter()
        .flat_map(|(name, t)| t.failures.iter().map(move |f| (name, f)))
        .collect();
    if !failures.is_empty() {
        md.push_str("\n## Runs that did not clean\n\n");
        for (name, f) in failures {
            let _ = writeln!(
                md,
                "- {name} `{}` at {}: {} ({})",
                f.run_id,
                rfc3339(f.at),
                f.outcome,
                f.cause.as_deref().unwrap_or("no message")
            );
        }
    }
    md
}
