//! Configuration: raw layers in, validated [`Settings`] out.
//!
//! Like ripgrep's low/high args split, loading has two steps. First the raw layers are merged
//! with figment, lowest first: the defaults of [`vars::VARS`] < the TOML file (`--config`) <
//! the `.env` file (`--env-file`) < the process environment. The result is a flat map from
//! variable name to text. Then [`Settings::from_raw`] parses and checks every value; the first
//! bad one becomes a [`ConfigError`] naming the variable, the value and what was expected,
//! which `main` prints on one line before exiting with 78 (EX_CONFIG).

mod dedup;
mod documents;
mod ops;
mod policy;
mod reader;
mod settings;
mod sweepers;
pub mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;

/// Thresholds live with the resource types; re-exported where settings are read.
pub use crate::resource::Thresholds;
pub use dedup::*;
pub use documents::*;
pub use ops::*;
pub use policy::{Policy, PolicyAction};
pub use settings::*;
pub use sweepers::*;

/// A configuration value that cannot be used. Printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{variable}={value:?}: expected {expected}")]
    Invalid {
        /// The variable's name.
        variable: String,
        /// The value given (masked for secrets).
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A `JANITOR_*` variable (or a TOML key) the daemon does not know.
    #[error("unknown variable {variable}{}", suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    Unknown {
        /// The unknown name.
        variable: String,
        /// The closest known name, if one is close.
        suggestion: Option<&'static str>,
    },
    /// The TOML or `.env` file cannot be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Where configuration comes from, highest priority last.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file given with `--config`.
    pub toml: Option<PathBuf>,
    /// The `.env` file (`--env-file`, or `./.env` when present).
    pub env_file: Option<PathBuf>,
    /// The process environment (passed in so tests do not touch the real one).
    pub environment: Vec<(String, String)>,
}

impl Sources {
    /// The real process environment, with the given files.
    pub fn from_process(toml: Option<PathBuf>, env_file: Option<PathBuf>) -> Self {
        Self {
            toml,
            env_file,
            environment: std::env::vars().collect(),
        }
    }
}

/// The merged, still unvalidated values: variable name -> text.
pub type RawConfig = BTreeMap<String, String>;

/// Loads and validates the configuration.
pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
    Settings::from_raw(&merge(sources)?)
}

/// Merges the layers with figment and checks that every name is known.
pub fn merge(sources: &Sources) -> Result<RawConfig, ConfigError> {
    let defaults: RawConfig = vars::VARS
        .iter()
        .map(|v| (v.name.to_string(), v.default.to_string()))
        .collect();
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = &sources.toml {
        figment = figment.merge(Serialized::defaults(toml_layer(path)?));
    }
    if let Some(path) = &sources.env_file {
        figment = figment.merge(Serialized::defaults(env_file_layer(path)?));
    }
    figment = figment.merge(Serialized::defaults(known_only(
        sources.environment.iter().cloned(),
        false,
    )?));
    figment
        .extract::<RawConfig>()
        .map_err(|e| ConfigError::File {
            path: PathBuf::from("<merged configuration>"),
            message: e.to_string(),
        })
}

/// Keeps the variables the daemon reads (aliases resolved); an unknown `JANITOR_*` name is an
/// error, and with `strict` (TOML, where every key is ours) any unknown name is.
fn known_only(
    pairs: impl Iterator<Item = (String, String)>,
    strict: bool,
) -> Result<RawConfig, ConfigError> {
    let mut out = RawConfig::new();
    let mut aliased = Vec::new();
    for (name, value) in pairs {
        if vars::lookup(&name).is_some() {
            out.insert(name, value);
        } else if let Some((_, canonical)) = vars::ALIASES.iter().find(|(a, _)| *a == name) {
            aliased.push((canonical.to_string(), value));
        } else if vars::TOOLING.contains(&name.as_str()) {
            continue;
        } else if strict || name.starts_with("JANITOR_") {
            return Err(ConfigError::Unknown {
                suggestion: vars::closest(&name),
                variable: name,
            });
        }
    }
    // the canonical name wins over its alias when both are set
    for (canonical, value) in aliased {
        out.entry(canonical).or_insert(value);
    }
    Ok(out)
}

fn toml_layer(path: &Path) -> Result<RawConfig, ConfigError> {
    let table: BTreeMap<String, Value> =
        Figment::from(Toml::file_exact(path))
            .extract()
            .map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    let mut pairs = Vec::with_capacity(table.len());
    for (key, value) in table {
        let text = match value {
            Value::String(_, s) => s,
            Value::Char(_, c) => c.to_string(),
            Value::Bool(_, b) => b.to_string(),
            // serialises as the bare number: 2, 0.5
            num @ Value::Num(..) => serde_json::to_string(&num).unwrap_or_default(),
            _ => {
                return Err(ConfigError::File {
                    path: path.to_path_buf(),
                    message: format!("{key}: expected a string, number or boolean"),
                });
            }
        };
        pairs.push((key.to_ascii_uppercase(), text));
    }
    known_only(pairs.into_iter(), true)
}

fn env_file_layer(path: &Path) -> Result<RawConfig, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        path: path.to_path_buf(),
        message,
    };
    let iter = dotenvy::from_path_iter(path).map_err(|e| file_error(e.to_string()))?;
    let pairs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    known_only(pairs.into_iter(), false)
}

#[cfg(test)]
mod tests;
