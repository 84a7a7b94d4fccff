//! Alerts (seeds 001 and 002): a Slack-compatible webhook, a cooldown per alert key so a
//! store stuck at CRITICAL does not page every monitoring cycle, and retries with backoff.
//!
//! Raising an alert never blocks the caller: it is logged, passed through the cooldown, and
//! handed to a delivery task over a bounded channel. The delivery task posts
//! `{"text": "..."}` and retries server errors, 429 and network errors with exponential
//! backoff; a client error (a revoked webhook) is logged and not retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Alerts as AlertSettings;
use crate::secret::SecretUrl;

/// Alerts waiting for delivery; more are dropped (and logged) rather than queued forever.
const PENDING: usize = 64;

/// How bad it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Someone should look now.
    Critical,
    /// Someone should look soon.
    Warning,
}

impl Severity {
    /// Its name in logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
        }
    }
}

/// Admits an alert key at most once per cooldown.
#[derive(Debug)]
pub struct Cooldown {
    every: Duration,
    last: HashMap<String, Instant>,
}

impl Cooldown {
    /// A cooldown of `every` per key.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: HashMap::new(),
        }
    }

    /// Whether `key` may alert at `now`; if so, its cooldown starts again.
    pub fn admit(&mut self, key: &str, now: Instant) -> bool {
        match self.last.get(key) {
            Some(t) if now.duration_since(*t) < self.every => false,
            _ => {
                self.last.insert(key.to_string(), now);
                true
            }
        }
    }
}

/// Where raised alerts are kept besides the log (the history, for the reports).
pub trait AlertSink: Send + Sync {
    /// `key` (`kind:subject`) was raised with `message`.
    fn alerted(&self, key: &str, severity: Severity, message: &str);
}

/// The daemon's alert channel. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    cooldown: Arc<Mutex<Cooldown>>,
    tx: Option<mpsc::Sender<String>>,
    instance: Arc<str>,
    sink: Option<Arc<dyn AlertSink>>,
}

impl Alerts {
    /// Alerts that are only logged (no webhook configured).
    pub fn log_only(settings: &AlertSettings, instance: &str) -> Self {
        Self {
            cooldown: Arc::new(Mutex::new(Cooldown::new(settings.cooldown))),
            tx: None,
            instance: instance.into(),
            sink: None,
        }
    }

    /// Alerts that are also handed to `sink` as they are raised.
    pub fn with_sink(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Alerts delivered to the configured webhook (if any) by a task that runs until
    /// `cancel` fires and the pending alerts are sent. Returns the delivery task to spawn.
    pub fn start(
        settings: &AlertSettings,
        instance: &str,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> (Self, Option<impl Future<Output = ()> + Send + 'static>) {
        let mut alerts = Self::log_only(settings, instance);
        let Some(url) = settings.webhook.clone() else {
            return (alerts, None);
        };
        let (tx, rx) = mpsc::channel(PENDING);
        alerts.tx = Some(tx);
        (alerts, Some(deliver(url, timeout, rx, cancel)))
    }

    /// Sends `text` to the webhook as it is, with no cooldown (the daily report). Returns
    /// whether it was passed on for delivery (false without a webhook).
    pub fn notify(&self, text: &str) -> bool {
        let Some(tx) = &self.tx else { return false };
        tx.try_send(format!("[janitor {}] {text}", self.instance))
            .map_err(|_| tracing::error!("alert queue full or closed: report not sent"))
            .is_ok()
    }

    /// Raises an alert: logged always, sent unless `key` alerted within the cooldown.
    /// Returns whether it was passed on for delivery.
    pub fn raise(&self, key: &str, severity: Severity, message: &str) -> bool {
        let admitted = self
            .cooldown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(key, Instant::now());
        if !admitted {
            tracing::debug!(alert = key, "alert within its cooldown: not sent again");
            return false;
        }
        tracing::warn!(alert = key, severity = severity.as_str(), message, "alert");
        if let Some(sink) = &self.sink {
            sink.alerted(key, severity, message);
        }
        let Some(tx) = &self.tx else { return false };
        let text = format!(
            "[janitor {}] {message} (alert {key}, instance {})",
            severity.as_str(),
            self.instance
        );
        match tx.try_send(text) {
            Ok(()) => true,
            Err(_) => {
                tracing::error!(alert = key, "alert queue full or closed: alert dropped");
                false
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    /// Worth another try: a server error, 429, a timeout, no connection.
    #[error("{0}")]
    Transient(String),
    /// Will not get better by retrying: a 4xx.
    #[error("{0} (not retried)")]
    Permanent(String),
}

async fn deliver(
    url: SecretUrl,
    timeout: Duration,
    mut rx: mpsc::Receiver<String>,
    cancel: CancellationToken,
) {
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "alert webhook client cannot be built: alerts are only logged");
            return;
        }
    };
    loop {
        let text = tokio::select! {
            t = rx.recv() => match t { Some(t) => t, None => return },
            // at shutdown, send what is already queued, then stop
            () = cancel.cancelled() => match rx.try_recv() { Ok(t) => t, Err(_) => return },
        };
        let body = serde_json::json!({ "text": text });
        let send = || async {
            let r = client
                .post(url.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| SendError::Transient(e.without_url().to_string()))?;
            let status = r.status();
            if status.is_success() {
                Ok(())
            } else if status.is_server_error() || status.as_u16() == 429 {
                Err(SendError::Transient(format!("HTTP {status}")))
            } else {
                Err(SendError::Permanent(format!("HTTP {status}")))
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(4)
            .with_jitter();
        let sent = send
            .retry(backoff)
            .when(|e| matches!(e, SendError::Transient(_)))
            .notify(|e, after| tracing::warn!(error = %e, retry_in = ?after, "alert webhook failed; retrying"))
            .await;
        if let Err(e) = sent {
            tracing::error!(error = %e, "alert webhook failed: alert not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_is_per_key() {
        let mut c = Cooldown::new(Duration::from_secs(300));
        let t0 = Instant::now();
        assert!(c.admit("usage_critical:redis", t0));
        assert!(c.admit("usage_critical:s3", t0));
        assert!(!c.admit("usage_critical:redis", t0 + Duration::from_secs(299)));
        assert!(c.admit("usage_critical:redis", t0 + Duration::from_secs(300)));
        // a refused attempt does not restart the cooldown
        assert!(!c.admit("usage_critical:redis", t0 + Duration::from_secs(301)));
        assert!(c.admit("usage_critical:redis", t0 + Duration::from_secs(600)));
    }
}
