//! `janitor report ...`: reports printed from the command line, without a daemon: the
//! period's report from the history file, and the breakdown walked live.

use std::io::Write;
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::backend::Backends;
use crate::breakdown::{Breakdown, Histogram, MAX_DEPTH, MAX_TOP, Options, Walkers};
use crate::config::Settings;
use crate::history::History;
use crate::report::{Inputs, Report, markdown};
use crate::resource::{PerResource, Resource};
use std::time::SystemTime;

/// `janitor report ...`.
#[derive(Debug, Subcommand)]
pub enum ReportKind {
    /// What uses each store: Redis keys and S3 objects by prefix, Qdrant points by
    /// collection (keys, bytes, keys without TTL, ages). Reads only.
    Breakdown {
        /// Which store.
        #[arg(long, value_enum, default_value_t = Store::All)]
        resource: Store,
        /// Separator-delimited segments per prefix (`:` for Redis, `/` for S3).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=MAX_DEPTH as i64))]
        depth: u16,
        /// Prefixes listed, largest first; the rest are summed.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=MAX_TOP as i64))]
        top: u16,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `janitor report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// JSON, as `GET /api/resources/report`.
    Json,
    /// Markdown, as the daily report file.
    Md,
}

/// `janitor report [--period] [--format]`: the period's report from the history file.
pub async fn period(
    settings: &Settings,
    label: &str,
    format: Format,
) -> Result<ExitCode, CliError> {
    let Some(period) = crate::report::parse_period(label) else {
        eprintln!("janitor: --period {label:?}: expected a duration such as 24h, 7d or 30d");
        return Ok(ExitCode::from(2));
    };
    let history = History::open(&settings.history);
    let backends = Backends::new(settings)
        .await
        .map_err(crate::app::StartError::from)?;
    let configured = PerResource::from_fn(|r| backends.configured(r));
    let swept = PerResource::from_fn(|r| r.is_swept() && backends.configured(r));
    let inputs = Inputs::from_settings(settings, &configured, &swept);
    let report = match Report::build(&history, &inputs, label, period, SystemTime::now()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("janitor: the history cannot be read: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
        Format::Md => out.write_all(markdown(&report).as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `--resource` values of a breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    /// Redis keys by prefix.
    Redis,
    /// S3 objects by prefix.
    S3,
    /// Qdrant points by collection.
    Qdrant,
    /// Every configured one.
    All,
}

/// Runs a report command.
pub async fn run(settings: &Settings, kind: ReportKind) -> Result<ExitCode, CliError> {
    let ReportKind::Breakdown {
        resource,
        depth,
        top,
        json,
    } = kind;
    let backends = Backends::new(settings)
        .await
        .map_err(crate::app::StartError::from)?;
    let stores: Vec<Resource> = match resource {
        Store::Redis => vec![Resource::Redis],
        Store::S3 => vec![Resource::S3],
        Store::Qdrant => vec![Resource::Qdrant],
        Store::All => [Resource::Redis, Resource::S3, Resource::Qdrant]
            .into_iter()
            .filter(|r| backends.configured(*r))
            .collect(),
    };
    let walkers = Walkers::new(backends, settings);
    let opts = Options {
        depth: depth.into(),
        top: top.into(),
    };
    let cancel = CancellationToken::new();
    let mut out = std::io::stdout().lock();
    let mut code = ExitCode::SUCCESS;
    let mut all = Vec::new();
    for store in stores {
        match walkers.walk(store, opts, &cancel).await {
            Ok(b) if json => all.push(b),
            Ok(b) => write_text(&mut out, &b)?,
            Err(e) => {
                eprintln!("{store}: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    if json {
        serde_json::to_writer_pretty(&mut out, &all).map_err(std::io::Error::other)?;
        writeln!(out)?;
    }
    Ok(code)
}

/// A breakdown as a table.
fn write_text(out: &mut impl Write, b: &Breakdown) -> std::io::Result<()> {
    let mb = |bytes: u64| format!("{:.1}", bytes as f64 / (1024.0 * 1024.0));
    let source = serde_json::to_value(b.bytes_source).unwrap_or_default();
    writeln!(
        out,
        "{}: {} items, {} MB ({}), walked in {:.1} s",
        b.resource,
        b.items,
        mb(b.bytes),
        source.as_str().unwrap_or_default(),
        b.duration_secs
    )?;
    let (fourth, ages) = match b.resource {
        Resource::Redis => ("no TTL", "idle"),
        Resource::S3 => ("MB > TTL", "age"),
        _ => ("oldest h", "-"),
    };
    let labels = Histogram::LABELS.join(" ");
    writeln!(
        out,
        "  {:<40} {:>10} {:>10} {fourth:>10}  {ages} ({labels})",
        "prefix", "items", "MB"
    )?;
    let other = (b.other.items > 0).then_some(&b.other);
    for g in b.groups.iter().chain(other) {
        let name = match g.prefix.as_str() {
            _ if std::ptr::eq(g, &b.other) => "(other)",
            "" => "(no prefix)",
            p => p,
        };
        let fourth = match (g.without_ttl, g.bytes_older_than_ttl, g.oldest_age_hours) {
            (Some(n), _, _) => n.to_string(),
            (_, Some(bytes), _) => mb(bytes),
            (_, _, Some(h)) => format!("{h:.1}"),
            _ => "-".into(),
        };
        let ages = g.ages.map_or("-".to_string(), |h| {
            h.counts().map(|n| n.to_string()).join(" ")
        });
        writeln!(
            out,
            "  {name:<40} {:>10} {:>10} {fourth:>10}  {ages}",
            g.items,
            mb(g.bytes)
        )?;
    }
    for note in &b.notes {
        writeln!(out, "  note: {note}")?;
    }
    writeln!(out)
}
