//! The command line: `run`, `sweep --once`, `check`, `health`, `dedup scan`, `report`,
//! `config show`.

mod report;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{self, Janitor, StartError};
use crate::backend::Backends;
use crate::config::{self, ConfigError, Settings, Sources, vars};
use crate::dedup::scan;
use crate::engine::RunRequest;
use crate::leader::Role;
use crate::logging::{self, Target};
use crate::plan::{Action, Plan};
use crate::resource::Resource;
use crate::runs::{RunRecord, Trigger};
use crate::secret::{MASK, redact_url};

/// Keeps a RAG application's Redis, Qdrant and S3 storage within budget, safely.
#[derive(Debug, Parser)]
#[command(name = "janitor", version, about)]
pub struct Cli {
    /// The .env file to read (default: ./.env when present).
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// A TOML file with the same variables (lower priority than .env and the environment).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the loops, the monitor and the admin API.
    Run,
    /// One sweep pass, then exit (0 on success, 1 on a failed or aborted run).
    Sweep {
        /// Required: a single pass (the loops are `janitor run`).
        #[arg(long, required = true)]
        once: bool,
        /// Print the plan, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Which store (or documents).
        #[arg(long, value_enum, default_value_t = Target_::All)]
        resource: Target_,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate the config and ping every configured backend.
    Check,
    /// Ask the running daemon's /healthz (for container HEALTHCHECKs): exit 0 if healthy.
    Health,
    /// The SHA-256 dedup index.
    Dedup {
        /// What to do.
        #[command(subcommand)]
        action: DedupAction,
    },
    /// The report of a period from the history (figures per store, issues detected,
    /// recommendations), or `report breakdown`. Reads only.
    #[command(args_conflicts_with_subcommands = true)]
    Report {
        /// Another report.
        #[command(subcommand)]
        kind: Option<report::ReportKind>,
        /// The period ending now: 24h, 7d, 30d, ...
        #[arg(long, default_value = "24h")]
        period: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = report::Format::Md)]
        format: report::Format,
    },
    /// Configuration commands.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// `janitor config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration, secrets masked.
    Show {
        /// Print JSON instead of KEY=VALUE lines.
        #[arg(long)]
        json: bool,
    },
}

/// `janitor dedup ...`.
#[derive(Debug, Subcommand)]
pub enum DedupAction {
    /// Hash every object of the bucket and report groups of identical content and the bytes
    /// dedup would reclaim. Deletes nothing.
    Scan {
        /// Only objects under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `--resource` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(non_camel_case_types)]
pub enum Target_ {
    /// Redis keys.
    Redis,
    /// Qdrant points.
    Qdrant,
    /// S3 objects.
    S3,
    /// The application's documents, with their files, vectors and cache keys
    /// (JANITOR_DOCUMENTS_EXPIRE=true).
    Documents,
    /// Every configured store (documents too when their expiry is enabled).
    All,
}

/// What can go wrong on the command line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration: exit 78.
    #[error("config error: {0}")]
    Config(#[from] ConfigError),
    /// The daemon or a command could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Writing output or signals failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Cli {
    fn sources(&self) -> Sources {
        let env_file = self.env_file.clone().or_else(|| {
            let default = PathBuf::from(".env");
            default.is_file().then_some(default)
        });
        Sources::from_process(self.config.clone(), env_file)
    }
}

/// Runs the command; the exit code for everything but errors.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let sources = cli.sources();
    let raw = config::merge(&sources)?;
    let settings = Arc::new(Settings::from_raw(&raw)?);
    match cli.command {
        Command::Run => {
            logging::init(settings.log_format, Target::Stdout, "info");
            let listener = tokio::net::TcpListener::bind(settings.admin.addr)
                .await
                .map_err(StartError::Listen)?;
            app::run(settings, listener, crate::shutdown::signals()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep {
            dry_run,
            resource,
            json,
            ..
        } => {
            logging::init(settings.log_format, Target::Stderr, "warn");
            sweep(settings, dry_run, resource, json).await
        }
        Command::Check => {
            logging::init(settings.log_format, Target::Stderr, "warn");
            check(&settings).await
        }
        Command::Health => Ok(health(&settings).await),
        Command::Dedup {
            action: DedupAction::Scan { prefix, json },
        } => {
            logging::init(settings.log_format, Target::Stderr, "warn");
            dedup_scan(&settings, &prefix, json).await
        }
        Command::Report {
            kind,
            period,
            format,
        } => {
            logging::init(settings.log_format, Target::Stderr, "warn");
            match kind {
                Some(kind) => report::run(&settings, kind).await,
                None => report::period(&settings, &period, format).await,
            }
        }
        Command::Config {
            action: ConfigAction::Show { json },
        } => {
            show(&raw, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// GET /healthz on the admin address (a wildcard address is asked on loopback).
async fn health(settings: &Settings) -> ExitCode {
    let mut addr = settings.admin.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}/healthz");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build();
    let answer = match client {
        Ok(c) => c.get(&url).send().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(r) if r.status().is_success() => {
            // a closed stdout does not make the daemon unhealthy
            let _ = writeln!(std::io::stdout(), "healthy: {url}");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("unhealthy: {url} answered {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {}", e.without_url());
            ExitCode::FAILURE
        }
    }
}

/// One pass over the chosen stores. SIGINT / SIGTERM stop it like the daemon: the batch in
/// flight is finished and audited, no further batch is applied, and the exit is non-zero
/// (the run is `cancelled`); a second signal exits at once.
async fn sweep(
    settings: Arc<Settings>,
    dry_run: bool,
    target: Target_,
    json: bool,
) -> Result<ExitCode, CliError> {
    let state = Janitor::new(settings).await?;
    let stop = state.cancel.clone();
    let signals = tokio::spawn(async move {
        crate::shutdown::signals().await;
        eprintln!("signal: finishing the batch in flight, then stopping");
        stop.cancel();
    });
    let resources: Vec<Resource> = match target {
        Target_::Redis => vec![Resource::Redis],
        Target_::Qdrant => vec![Resource::Qdrant],
        Target_::S3 => vec![Resource::S3],
        Target_::Documents => vec![Resource::Documents],
        Target_::All => Resource::SWEPT
            .into_iter()
            .filter(|r| state.engine.enabled(*r))
            .collect(),
    };
    if resources.is_empty() {
        eprintln!("nothing to sweep: no sweepable backend is configured");
        return Ok(ExitCode::FAILURE);
    }
    // with leader election, a one-off sweep needs the lease too (a dry run does not), and
    // keeps it renewed while it plans; the engine confirms it before every batch
    let renewal = match (state.leader.lease(), dry_run) {
        (Some(lease), false) => {
            if !matches!(lease.tick().await, Ok((Role::Leader, _))) {
                eprintln!(
                    "not sweeping: another replica holds the leader lease ({})",
                    lease.holder().as_deref().unwrap_or("unknown")
                );
                return Ok(ExitCode::FAILURE);
            }
            let lease = lease.clone();
            Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease.renew_every()).await;
                    let _ = lease.tick().await;
                }
            }))
        }
        _ => None,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut all_ok = true;
    if json {
        write!(out, "[")?;
    }
    for (i, resource) in resources.into_iter().enumerate() {
        let req = RunRequest {
            id: None,
            resource,
            trigger: Trigger::Cli,
            dry_run,
            priority: None,
            reason: Some("janitor sweep --once".into()),
        };
        let mut result = state.engine.run(req, SystemTime::now()).await;
        all_ok &= result.record.outcome.is_success();
        if json {
            if i > 0 {
                write!(out, ",")?;
            }
            write_json(
                &mut out,
                &result.record,
                result.plan.as_mut().filter(|_| dry_run),
            )?;
        } else {
            // a dry run prints its plan; an applied run its result (the audit log has the items)
            write_text(
                &mut out,
                &result.record,
                result.plan.as_mut().filter(|_| dry_run),
            )?;
        }
    }
    if json {
        writeln!(out, "]")?;
    }
    out.flush()?;
    if let (Some(renewal), Some(lease)) = (renewal, state.leader.lease()) {
        renewal.abort();
        lease.release().await;
    }
    signals.abort();
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `{"run": {...}, "plan": {"batches": [...]}}`, the batches streamed from the plan's spool.
fn write_json(
    out: &mut impl Write,
    record: &RunRecord,
    plan: Option<&mut Plan>,
) -> std::io::Result<()> {
    write!(
        out,
        "{{\"run\":{},\"plan\":",
        serde_json::to_string(record)?
    )?;
    match plan {
        None => write!(out, "null")?,
        Some(plan) => {
            write!(out, "{{\"batches\":[")?;
            for (i, batch) in plan.batches()?.enumerate() {
                if i > 0 {
                    write!(out, ",")?;
                }
                serde_json::to_writer(&mut *out, &batch?)?;
            }
            write!(out, "]}}")?;
        }
    }
    write!(out, "}}")
}

fn write_text(out: &mut impl Write, r: &RunRecord, plan: Option<&mut Plan>) -> std::io::Result<()> {
    let mode = if r.dry_run { "dry run" } else { "applied" };
    writeln!(
        out,
        "{} {} ({mode}): {}",
        r.resource,
        r.id,
        r.outcome.as_str()
    )?;
    if let Some(m) = &r.message {
        writeln!(out, "  {m}")?;
    }
    writeln!(
        out,
        "  store items {}, planned deletions {}, expirations {}; deleted {}, expired {}, skipped {}, failed {}",
        r.store_items,
        r.planned_deletions,
        r.planned_expirations,
        r.deleted,
        r.expired,
        r.skipped,
        r.failed
    )?;
    for note in &r.notes {
        writeln!(out, "  note: {note}")?;
    }
    let Some(plan) = plan else { return Ok(()) };
    for batch in plan.batches()? {
        let batch = batch?;
        writeln!(
            out,
            "  [{}] {} ({} items)",
            batch.target,
            batch.reason,
            // a Qdrant time window is one line standing for its count of points
            batch.items.iter().map(|i| i.count()).sum::<u64>()
        )?;
        for item in &batch.items {
            match item.action {
                Action::Delete => writeln!(out, "    delete {}", item.id)?,
                Action::Expire(secs) => writeln!(out, "    expire {} ({secs} s)", item.id)?,
            }
            // what goes with it (a document's file, points and cache keys)
            if let Some(detail) = &item.detail {
                writeln!(out, "      with {detail}")?;
            }
        }
    }
    Ok(())
}

async fn check(settings: &Settings) -> Result<ExitCode, CliError> {
    // written, not println!: a closed stdout (`janitor check | head -1`) is an error, not a panic
    let mut out = std::io::stdout().lock();
    writeln!(out, "config: ok")?;
    let backends = Backends::new(settings).await.map_err(StartError::from)?;
    let mut ok = true;
    writeln!(out, "{:<10} {:<12} detail", "backend", "status")?;
    for (name, result) in backends.ping_all().await {
        let (status, detail) = match result {
            None => ("disabled", "no URL configured".to_string()),
            Some(Ok(())) => ("ok", String::new()),
            Some(Err(e)) => {
                ok = false;
                ("unreachable", e.to_string())
            }
        };
        writeln!(out, "{:<10} {status:<12} {detail}", name.name())?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn dedup_scan(settings: &Settings, prefix: &str, json: bool) -> Result<ExitCode, CliError> {
    let Some(conn) = &settings.s3 else {
        eprintln!("config error: S3_ENDPOINT and S3_BUCKET are needed to scan a bucket");
        return Ok(ExitCode::from(78));
    };
    let s3 = crate::backend::s3::S3::connect(conn, settings.scheduling.backend_timeout);
    let d = &settings.dedup;
    let report = match scan::scan(&s3, prefix, d.owner_segment, d.scan_concurrency).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scan failed: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::other)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    writeln!(
        out,
        "{} objects ({:.1} MB); {} share a size with another and were hashed ({:.1} MB)",
        report.objects,
        mb(report.bytes),
        report.hashed_objects,
        mb(report.hashed_bytes)
    )?;
    for g in &report.groups {
        let owner = g.owner.as_deref().unwrap_or("(bucket)");
        writeln!(
            out,
            "\n{} copies of {} bytes, owner {owner}, sha256 {}",
            g.keys.len(),
            g.size,
            g.sha256
        )?;
        for key in &g.keys {
            writeln!(out, "  {key}")?;
        }
    }
    writeln!(
        out,
        "\n{} groups; keeping one copy each would reclaim {} bytes ({:.1} MB)",
        report.groups.len(),
        report.reclaimable_bytes,
        mb(report.reclaimable_bytes)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn show(raw: &config::RawConfig, json: bool) -> Result<(), CliError> {
    let shown: Vec<(&str, String)> = vars::VARS
        .iter()
        .map(|v| {
            let value = raw.get(v.name).cloned().unwrap_or_default();
            let value = if v.secret && !value.is_empty() {
                MASK.to_string()
            } else {
                redact_url(&value)
            };
            (v.name, value)
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = shown
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&map).unwrap_or_default()
        )?;
    } else {
        for (k, v) in shown {
            writeln!(out, "{k}={v}")?;
        }
    }
    Ok(())
}
