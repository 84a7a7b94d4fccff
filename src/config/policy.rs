//! Redis cleanup policies per key pattern (`JANITOR_REDIS_POLICIES`).
//!
//! `pattern=action[:duration]`, separated by `;`:
//! - `expire[:D]`: a matching key without TTL gets one of D (default REDIS_CACHE_TTL_HOURS);
//! - `delete_idle[:D]`: a matching key without TTL, idle for at least D, is unlinked;
//! - `delete`: any matching key without TTL is unlinked (the seed's behaviour).
//!
//! Keys that have a TTL are left to Redis. Durations are humantime (`90s`, `30m`, `1h`).

use std::time::Duration;

use serde::Serialize;

/// What a policy does to a matching key that has no TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "secs")]
pub enum PolicyAction {
    /// Give it this TTL.
    Expire(#[serde(serialize_with = "secs")] Duration),
    /// Unlink it once idle this long.
    DeleteIdle(#[serde(serialize_with = "secs")] Duration),
    /// Unlink it.
    Delete,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// One policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Redis glob, used as SCAN MATCH.
    pub pattern: String,
    /// What to do.
    #[serde(flatten)]
    pub action: PolicyAction,
}

impl Policy {
    /// The same policy with its duration shortened to `limit` (under pressure).
    pub fn under_pressure(&self, limit: Duration) -> Policy {
        let action = match self.action {
            PolicyAction::Expire(d) => PolicyAction::Expire(d.min(limit)),
            PolicyAction::DeleteIdle(d) => PolicyAction::DeleteIdle(d.min(limit)),
            PolicyAction::Delete => PolicyAction::Delete,
        };
        Policy {
            pattern: self.pattern.clone(),
            action,
        }
    }

    /// One-line description for plans.
    pub fn describe(&self) -> String {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        match &self.action {
            PolicyAction::Expire(t) => format!("no TTL: expire in {} ({})", d(t), self.pattern),
            PolicyAction::DeleteIdle(t) => format!("no TTL, idle >= {} ({})", d(t), self.pattern),
            PolicyAction::Delete => format!("no TTL ({})", self.pattern),
        }
    }
}

/// Parses the policy list; `default_ttl` fills in missing durations; every duration must be
/// at least `floor`. The error says what is wrong (the caller names the variable).
pub fn parse(text: &str, default_ttl: Duration, floor: Duration) -> Result<Vec<Policy>, String> {
    let mut policies = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (pattern, spec) = part
            .rsplit_once('=')
            .ok_or_else(|| format!("`{part}`: expected pattern=action[:duration]"))?;
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(format!("`{part}`: empty pattern"));
        }
        let (action, duration) = match spec.trim().split_once(':') {
            Some((a, d)) => (a.trim(), Some(d.trim())),
            None => (spec.trim(), None),
        };
        let duration = duration
            .map(|d| {
                humantime::parse_duration(d)
                    .map_err(|_| format!("`{part}`: bad duration `{d}` (e.g. 30m, 1h)"))
            })
            .transpose()?;
        if duration.is_some_and(|d| d < floor) {
            return Err(format!(
                "`{part}`: duration below the safety floor of {}",
                humantime::format_duration(floor)
            ));
        }
        let action = match (action, duration) {
            ("expire", d) => PolicyAction::Expire(d.unwrap_or(default_ttl)),
            ("delete_idle", d) => PolicyAction::DeleteIdle(d.unwrap_or(default_ttl)),
            ("delete", None) => PolicyAction::Delete,
            ("delete", Some(_)) => return Err(format!("`{part}`: delete takes no duration")),
            (other, _) => {
                return Err(format!(
                    "`{part}`: unknown action `{other}` (expire, delete_idle, delete)"
                ));
            }
        };
        policies.push(Policy {
            pattern: pattern.to_string(),
            action,
        });
    }
    if policies.is_empty() {
        return Err("no policy given".into());
    }
    Ok(policies)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_secs(3600);
    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn parses_the_issue_example() {
        let p = parse(
            "doc_segments:*=expire:1h;chunk:*=delete_idle:1h;session:*=delete_idle:24h",
            H,
            MIN,
        )
        .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[0],
            Policy {
                pattern: "doc_segments:*".into(),
                action: PolicyAction::Expire(H)
            }
        );
        assert_eq!(p[2].action, PolicyAction::DeleteIdle(24 * H));
    }

    #[test]
    fn defaults_and_delete() {
        let p = parse(" cache:* = expire ; tmp:*=delete ;", 2 * H, MIN).unwrap();
        assert_eq!(p[0].action, PolicyAction::Expire(2 * H));
        assert_eq!(
            p[1],
            Policy {
                pattern: "tmp:*".into(),
                action: PolicyAction::Delete
            }
        );
        // a pattern may contain '=' and ':'
        let p = parse("a=b:*=delete_idle:30m", H, MIN).unwrap();
        assert_eq!(p[0].pattern, "a=b:*");
        assert_eq!(p[0].action, PolicyAction::DeleteIdle(30 * MIN));
    }

    #[test]
    fn rejects_what_it_cannot_mean() {
        for bad in [
            "",
            "cache:*",
            "=expire",
            "x=explode",
            "x=delete:1h",
            "x=expire:soon",
            "x=expire:10s",
        ] {
            assert!(parse(bad, H, MIN).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pressure_shortens_durations() {
        let p = Policy {
            pattern: "c:*".into(),
            action: PolicyAction::DeleteIdle(24 * H),
        };
        assert_eq!(p.under_pressure(H).action, PolicyAction::DeleteIdle(H));
        assert_eq!(
            p.under_pressure(48 * H).action,
            PolicyAction::DeleteIdle(24 * H)
        );
    }
}
