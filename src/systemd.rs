//! The systemd notify protocol, for a `Type=notify` unit with `WatchdogSec=`.
//!
//! `READY=1` once the config is valid, the admin API listens and the workers started;
//! `STATUS=` with a one-line summary; `WATCHDOG=1` every half watchdog period, but only when
//! the runtime proves responsive (a spawned task runs within a quarter period), so a wedged
//! daemon is restarted by systemd instead of pinging on; `STOPPING=1` at shutdown. Outside
//! systemd (`NOTIFY_SOCKET` unset) every call does nothing. The protocol is one datagram per
//! message on a Unix socket, so it is written here rather than pulled in as a crate.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends notify messages to systemd, if it listens.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.into_string().ok()?;
            let addr = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt;
                    SocketAddr::from_abstract_name(name.as_bytes()).ok()?
                }
                None => SocketAddr::from_pathname(&path).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Self { socket, watchdog }
    }

    /// Whether systemd listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog period systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled())
    }

    /// Sends `state` (newline-separated `KEY=value` lines). Errors are logged, never fatal.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.socket
            && let Err(e) = socket.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "systemd notify failed");
        }
    }

    /// Readiness, with a first status line.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping: finishing current batches");
    }

    /// Pings the watchdog every half period while the runtime is responsive, refreshing
    /// the status line each time, until `cancel` fires.
    pub async fn watchdog_loop(
        &self,
        status: impl Fn() -> String,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let Some(period) = self.watchdog() else {
            return;
        };
        let mut tick = tokio::time::interval(period / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => return,
            }
            let probe = tokio::spawn(async {});
            if tokio::time::timeout(period / 4, probe).await.is_ok() {
                self.notify(&format!("WATCHDOG=1\nSTATUS={}", one_line(&status())));
            } else {
                tracing::error!("runtime unresponsive: watchdog not pinged");
            }
        }
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        n.ready("leader;\nredis idle");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..len]).unwrap(),
            "READY=1\nSTATUS=leader; redis idle"
        );
        assert_eq!(n.watchdog(), None);
    }
}
