//! Log setup: tracing, JSON or human-readable, levels from `RUST_LOG`.
//!
//! JSON when `JANITOR_LOG_FORMAT=json`, or `auto` and the output is not a terminal (journald,
//! containers); text otherwise. Nothing logged carries a secret: settings hold them in
//! [`crate::secret`] types and backend errors pass through [`crate::secret::redact_url`].

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Where logs go.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The daemon logs to stdout.
    Stdout,
    /// One-shot commands log to stderr, keeping stdout for their output.
    Stderr,
}

/// Installs the global subscriber (once; later calls are ignored).
pub fn init(format: LogFormat, target: Target, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let terminal = match target {
        Target::Stdout => std::io::stdout().is_terminal(),
        Target::Stderr => std::io::stderr().is_terminal(),
    };
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = match (json, target) {
        (true, Target::Stdout) => builder.json().flatten_event(true).try_init(),
        (true, Target::Stderr) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .try_init(),
        (false, Target::Stdout) => builder.try_init(),
        (false, Target::Stderr) => builder.with_writer(std::io::stderr).try_init(),
    };
    let _ = result;
}
