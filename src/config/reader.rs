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

    /// Like [`Reader::optional`], but a value of blanks only is an error, not "unset": a
    /// token or URL of spaces is a mistake, never a way to turn the feature off.
    pub(super) fn optional_not_blank(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let raw = self.0.get(name).map(String::as_str).unwrap_or_default();
        if !raw.is_empty() && raw.trim().is_empty() {
            return Err(self.invalid(name, "a value, not blanks (leave it empty to unset it)"));
        }
        Ok(self.optional(name))
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

    /// A URL of one of `schemes`, checked whole at load time (host, a port up to 65535, a
    /// Redis database number), so a bad one exits 78 instead of failing at connect.
    pub(super) fn url(&self, name: &str, schemes: &[&str]) -> Result<Option<String>, ConfigError> {
        let Some(url) = self.optional_not_blank(name)? else {
            return Ok(None);
        };
        let invalid = |expected: String| ConfigError::Invalid {
            variable: name.to_string(),
            value: redact_url(&url),
            expected,
        };
        let ok = schemes
            .iter()
            .any(|s| url.starts_with(&format!("{s}://")) && url.len() > s.len() + 3);
        if !ok {
            return Err(invalid(format!(
                "a URL starting with {}://",
                schemes.join("://, ")
            )));
        }
        if url.starts_with("mongodb") {
            // a MongoDB URI may list several hosts (h1:27017,h2:27017): the driver parses it
            return Ok(Some(url));
        }
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| invalid(format!("a valid URL ({e})")))?;
        let networked = !parsed.scheme().contains("unix");
        if networked && parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("a URL with a host".into()));
        }
        if parsed.scheme().starts_with("redis") && networked {
            let db = parsed.path().trim_start_matches('/');
            if !db.is_empty() && db.parse::<u16>().is_err() {
                return Err(invalid(
                    "a Redis URL whose path is a database number (/0)".into(),
                ));
            }
        }
        Ok(Some(url))
    }
}
