//! Reading one variable at a time from the merged configuration, so every failure names
//! the variable, the value given (masked for secrets) and what was expected.

use std::time::Duration;

use super::{ConfigError, RawConfig, vars};
use crate::secret::{MASK, redact_url};

/// Reads values from the merged map, each failure naming its variable.
pub(super) struct Reader<'a>(pub(super) &'a RawConfig);

impl Reader<'_> {
    pub(super) fn text(&self, name: &str) -> &str {
        self.0.get(name).map(|s| s.trim()).unwrap_or_default()
    }

    pub(super) fn optional(&self, name: &str) -> Option<String> {
        Some(self.text(name))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }

    pub(super) fn invalid(&self, name: &str, expected: impl Into<String>) -> ConfigError {
        let secret = vars::lookup(name).is_some_and(|v| v.secret);
        ConfigError::Invalid {
            variable: name.to_string(),
            value: if secret {
                MASK.to_string()
            } else {
                self.text(name).to_string()
            },
            expected: expected.into(),
        }
    }

    pub(super) fn positive(&self, name: &str) -> Result<f64, ConfigError> {
        match self.text(name).parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            _ => Err(self.invalid(name, "a number greater than 0")),
        }
    }

    pub(super) fn fraction(&self, name: &str) -> Result<f64, ConfigError> {
        match self.text(name).parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
            _ => Err(self.invalid(name, "a fraction greater than 0 and at most 1")),
        }
    }

    pub(super) fn count(&self, name: &str) -> Result<u64, ConfigError> {
        match self.text(name).parse::<u64>() {
            Ok(v) if v > 0 => Ok(v),
            _ => Err(self.invalid(name, "a whole number greater than 0")),
        }
    }

    /// A whole number, 0 allowed (`expected` says what 0 means).
    pub(super) fn whole(&self, name: &str, expected: &str) -> Result<u64, ConfigError> {
        self.text(name)
            .parse::<u64>()
            .map_err(|_| self.invalid(name, expected))
    }

    pub(super) fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
        match self.text(name).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err(self.invalid(name, "true or false")),
        }
    }

    /// A duration given in `unit` seconds (hours, days, seconds), fractions allowed.
    pub(super) fn duration(&self, name: &str, unit: f64) -> Result<Duration, ConfigError> {
        Duration::try_from_secs_f64(self.positive(name)? * unit)
            .map_err(|_| self.invalid(name, "a number greater than 0 (and not absurdly large)"))
    }

    pub(super) fn url(&self, name: &str, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
        let Some(url) = self.optional(name) else {
            return Ok(None);
        };
        let ok = schemes
            .iter()
            .any(|s| url.starts_with(&format!("{s}://")) && url.len() > s.len() + 3);
        if ok {
            Ok(Some(url))
        } else {
            Err(ConfigError::Invalid {
                variable: name.to_string(),
                value: redact_url(&url),
                expected: format!("a URL starting with {}://", schemes.join("://, ")),
            })
        }
    }
}
