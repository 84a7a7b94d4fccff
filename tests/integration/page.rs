//! The status page in a real browser (Debian's headless chromium): the daemon runs against
//! the real servers with a day of history, the page is loaded and its rendered DOM checked
//! against the API; screenshots at laptop and phone size are saved (under
//! `JANITOR_SCREENSHOT_DIR` when set, else the test's temp dir) for a person to look at.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use resource_janitor::history::History;
use resource_janitor::resource::{Priority, Resource, Usage};
use serde_json::Value;

use crate::require_services;
use crate::support::daemon::{self, Daemon};
use crate::support::{self, Namespace};

/// The chromium binary, or `None` (the test is skipped unless services are required).
fn chromium() -> Option<String> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("JANITOR_REQUIRE_SERVICES").is_none_or(|v| v != "1"),
            "JANITOR_REQUIRE_SERVICES=1 but chromium is missing: run scripts/services.sh install"
        );
        eprintln!("skipped: chromium is not installed (scripts/services.sh install)");
    }
    found.map(str::to_owned)
}

fn headless(bin: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
        ])
        .args(["--virtual-time-budget=8000", "--no-first-run"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The attributes of every tag in `dom` that has `attr` (a plain scan: the page writes its
/// hooks as `name="value"` attributes).
fn tags_with(dom: &str, attr: &str) -> Vec<BTreeMap<String, String>> {
    dom.split('<')
        .filter_map(|t| t.split('>').next())
        .filter(|t| t.contains(&format!(" {attr}=")))
        .map(|t| {
            let mut attrs = BTreeMap::new();
            let mut rest = t;
            while let Some(eq) = rest.find("=\"") {
                let name = rest[..eq]
                    .rsplit(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let value_start = eq + 2;
                let Some(len) = rest[value_start..].find('"') else {
                    break;
                };
                attrs.insert(name, rest[value_start..value_start + len].to_string());
                rest = &rest[value_start + len + 1..];
            }
            attrs
        })
        .collect()
}

/// A day of measurements and a few runs, written before the daemon starts.
fn seed_history(path: &Path) {
    let settings = resource_janitor::config::History {
        path: path.to_path_buf(),
        retention: Duration::from_secs(30 * 86_400),
        max_bytes: u64::MAX,
        report_hour: 2,
        report_dir: path.with_file_name("reports"),
        timezone: "UTC".into(),
    };
    let h = History::open(&settings);
    let now = SystemTime::now();
    for i in 0..96u64 {
        let at = now - Duration::from_secs(i * 900);
        for (r, base) in [
            (Resource::Redis, 0.3),
            (Resource::Qdrant, 0.55),
            (Resource::S3, 0.1),
        ] {
            let fraction = base + (i % 12) as f64 / 100.0;
            let usage = Usage {
                total_items: 1000 + i * 10,
                size_bytes: Some(1 << 20),
                size_source: None,
                usage_fraction: Some(fraction),
                oldest_age_hours: Some(2.0),
                oldest_source: None,
                notes: Vec::new(),
            };
            h.record_usage(r, at, &usage, Priority::Low);
        }
    }
}

#[tokio::test]
async fn the_status_page_renders_what_the_api_says_in_a_real_browser() {
    let svc = require_services!();
    let Some(bin) = chromium() else { return };
    let ns = Namespace::new("page-browser");
    let url = ns.fresh_redis(svc).await;
    support::fill_redis(&url, "doc_segments:", 50).await;
    let dir = daemon::tempdir();
    let history = dir.path().join("seeded-history.sqlite");
    seed_history(&history);
    let mut env = daemon::env_for(svc, &ns, dir.path());
    env.retain(|(k, _)| k != "JANITOR_ADMIN_TOKEN");
    env.push(("JANITOR_HISTORY_PATH".into(), history.display().to_string()));
    let work = daemon::tempdir();
    let d = Daemon::start(env, dir).await;
    // the timers' first runs, so the runs table has rows
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while d.get_json("/api/resources/runs").await["total"].as_u64() < Some(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "no runs: {}",
            d.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // the monitor measures every second: what the page shows is the API's answer from
    // just before or just after it loaded
    let before = d.get_json("/api/resources/runs?limit=20").await;
    let metrics_before = d.get_json("/api/resources/metrics").await;
    let dom = headless(&bin, work.path(), &["--dump-dom", &d.url("/")]);
    let after = d.get_json("/api/resources/runs?limit=20").await;
    let metrics_after = d.get_json("/api/resources/metrics").await;
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page finished loading: {dom}"
    );

    // each store's bar shows the API's usage
    let bars = tags_with(&dom, "data-testid");
    let bars: Vec<_> = bars
        .iter()
        .filter(|a| a["data-testid"] == "usage-bar")
        .collect();
    for store in ["redis", "qdrant", "minio", "mongodb"] {
        let bar = bars
            .iter()
            .find(|a| a["data-resource"] == store)
            .unwrap_or_else(|| panic!("no bar for {store}"));
        let shows = |api: &Value| {
            let api = &api[store];
            let usage = match api["usage_percentage"].as_f64() {
                Some(u) => bar["data-usage"]
                    .parse::<f64>()
                    .is_ok_and(|shown| (shown - u).abs() < 1e-9),
                None => bar["data-usage"] == "null",
            };
            usage && bar["data-priority"] == api["cleanup_priority"].as_str().unwrap()
        };
        assert!(
            shows(&metrics_before) || shows(&metrics_after),
            "{store}: the bar says {bar:?}, the API {} then {}",
            metrics_before[store],
            metrics_after[store]
        );
    }
    // the runs table is the API's list
    let rows: Vec<String> = tags_with(&dom, "data-run-id")
        .into_iter()
        .map(|a| a["data-run-id"].clone())
        .collect();
    let ids = |v: &Value| -> Vec<String> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        rows == ids(&before) || rows == ids(&after),
        "{rows:?} vs {:?}",
        ids(&after)
    );
    assert!(rows.len() >= 3);
    // the charts have the seeded day's points
    let charts = tags_with(&dom, "data-chart");
    for store in ["redis", "qdrant", "minio"] {
        let usage = charts
            .iter()
            .find(|a| {
                a["data-chart"] == "usage"
                    && a["data-resource"] == store
                    && a["data-period"] == "24h"
            })
            .unwrap_or_else(|| panic!("no 24h usage chart for {store}"));
        let points: u64 = usage["data-points"].parse().unwrap();
        assert!(points >= 90, "{store}: {points} points drawn");
    }
    assert!(!tags_with(&dom, "data-worker").is_empty());

    let shots = std::env::var_os("JANITOR_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| work.path().to_path_buf());
    std::fs::create_dir_all(&shots).unwrap();
    for (name, size) in [
        ("laptop", "1366,900"),
        ("laptop-full", "1366,2400"),
        ("phone", "390,844"),
    ] {
        let file = shots.join(format!("status-{name}.png"));
        headless(
            &bin,
            work.path(),
            &[
                &format!("--window-size={size}"),
                &format!("--screenshot={}", file.display()),
                &d.url("/"),
            ],
        );
        let len = std::fs::metadata(&file).unwrap().len();
        assert!(len > 10_000, "{} is {len} bytes", file.display());
        eprintln!("screenshot: {}", file.display());
    }
}
