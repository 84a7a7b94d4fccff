//! Secrets that cannot leak by accident.
//!
//! A [`Secret`] prints as `****` through `Debug`, `Display` and `Serialize`; the only way to
//! the value is [`Secret::expose`], called where a client is built. URLs may carry a
//! password (`redis://user:pw@host`, `mongodb://user:pw@h1,h2/`): [`redact_url`] masks it
//! before a URL reaches a log line, the API or `config show`.

use std::fmt;

/// What a masked value prints as.
pub const MASK: &str = "****";

/// A secret string (API key, token, password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

/// A URL that may carry a password: shown through [`redact_url`] everywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the client that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl serde::Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_url(&self.0))
    }
}

/// The URL with the password of its user-info part replaced by `****`; other parts are kept.
/// Works on URLs the `url` crate would reject too (MongoDB seed lists).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.find(':') {
        Some(colon) => format!("{}:{MASK}", &userinfo[..colon]),
        // redis://secret@host: a lone user-info is a password in Redis URLs
        None => MASK.to_string(),
    };
    format!("{}{}{}", &url[..scheme_end], masked, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "**** ****");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"****\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_password_only() {
        assert_eq!(
            redact_url("redis://default:p%40ss@cache:6379/2"),
            "redis://default:****@cache:6379/2"
        );
        assert_eq!(redact_url("rediss://:pw@h:6380"), "rediss://:****@h:6380");
        assert_eq!(redact_url("redis://pw@h"), "redis://****@h");
        assert_eq!(
            redact_url("mongodb://app:s3cr@t@m1:27017,m2:27017/?replicaSet=rs"),
            "mongodb://app:****@m1:27017,m2:27017/?replicaSet=rs"
        );
        assert_eq!(redact_url("http://127.0.0.1:6334"), "http://127.0.0.1:6334");
        assert_eq!(redact_url("not a url"), "not a url");
        // an @ after the authority is not user-info
        assert_eq!(redact_url("http://h/p@x"), "http://h/p@x");
    }
}
