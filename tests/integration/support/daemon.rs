//! The real `janitor` binary, started for a test with a config pointing at the test
//! servers (in the test's namespace), an admin API on a free port and its own audit log.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{Namespace, Services, process::free_port};

/// The admin token the test daemons use.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// The environment of a daemon for `ns`: every backend, admin API, audit log, fast monitor.
pub fn env_for(svc: &Services, ns: &Namespace, dir: &std::path::Path) -> Vec<(String, String)> {
    let vars = [
        ("REDIS_URL", svc.redis_url(ns.redis_db)),
        ("QDRANT_URL", svc.get("QDRANT_URL").to_string()),
        ("S3_ENDPOINT", svc.get("S3_ENDPOINT").to_string()),
        ("S3_BUCKET", svc.get("S3_BUCKET").to_string()),
        (
            "AWS_ACCESS_KEY_ID",
            svc.get("AWS_ACCESS_KEY_ID").to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            svc.get("AWS_SECRET_ACCESS_KEY").to_string(),
        ),
        ("AWS_REGION", svc.get("AWS_REGION").to_string()),
        ("MONGODB_URI", svc.get("MONGODB_URI").to_string()),
        ("MONGODB_DATABASE", ns.mongo_db()),
        ("JANITOR_ADMIN_TOKEN", TOKEN.to_string()),
        (
            "JANITOR_AUDIT_LOG",
            dir.join("audit.jsonl").display().to_string(),
        ),
        ("JANITOR_LOG_FORMAT", "json".to_string()),
        ("RESOURCE_MONITORING_INTERVAL_SECONDS", "1".to_string()),
        ("JANITOR_BACKEND_TIMEOUT_SECONDS", "3".to_string()),
        ("RUST_LOG", "info".to_string()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The environment of a Redis-only daemon for `ns` (admin API, audit log, fast monitor).
pub fn redis_env(svc: &Services, ns: &Namespace, dir: &std::path::Path) -> Vec<(String, String)> {
    env_for(svc, ns, dir)
        .into_iter()
        .filter(|(k, _)| {
            !["QDRANT_URL", "S3_", "AWS_", "MONGODB_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect()
}

/// A running `janitor run`.
pub struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Holds the audit log and the captured output.
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `janitor run` with `env` (on top of a clean environment) and waits for /readyz.
    pub async fn start(env: Vec<(String, String)>, dir: tempfile::TempDir) -> Daemon {
        let port = free_port();
        let child = janitor(&env, &dir)
            .env("JANITOR_ADMIN_ADDR", format!("127.0.0.1:{port}"))
            .arg("run")
            .spawn()
            .expect("spawn janitor");
        let daemon = Daemon {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        daemon.wait_ready(Duration::from_secs(20)).await;
        daemon
    }

    async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = reqwest::get(self.url("/readyz")).await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "janitor not ready: {}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A URL of the admin API.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path` with the admin token; the JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GET `path` with the admin token: the status and the body (JSON, or the text as a
    /// JSON string).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }

    /// The audit log's path.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Waits for the process to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut()?.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the daemon printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read("stdout.log"), read("stderr.log"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `janitor` command with a clean environment plus `env`, output captured in `dir`.
pub fn janitor(env: &[(String, String)], dir: &tempfile::TempDir) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_janitor"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
    cmd
}

/// A fresh temp dir for a daemon.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("janitor-daemon-")
        .tempdir()
        .unwrap()
}
