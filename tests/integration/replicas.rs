//! Several replicas, one sweeper: real `janitor` processes sharing one redis-server and a
//! leader lease in it. Exactly one sweeps; a killed leader is replaced within the lease; a
//! stopped one hands over at once; a leader paused past its lease deletes nothing more.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::require_services;
use crate::support::daemon::{self, Daemon, TOKEN};
use crate::support::{Namespace, Services, fill_redis};

/// A Redis-only replica in `ns` with leader election on a `lease_secs` lease.
fn replica_env(
    svc: &Services,
    ns: &Namespace,
    dir: &std::path::Path,
    name: &str,
    lease_secs: &str,
) -> Vec<(String, String)> {
    let mut env = daemon::redis_env(svc, ns, dir);
    for (k, v) in [
        ("REDIS_CLEANUP_INTERVAL_SECONDS", "3600"),
        ("JANITOR_REDIS_POLICIES", "tmp:*=delete"),
        ("JANITOR_MAX_DELETE_FRACTION", "1"),
        ("JANITOR_LEADER_ELECTION", "true"),
        ("JANITOR_LEADER_KEY", "janitor:leader"),
        ("JANITOR_LEADER_LEASE_SECONDS", lease_secs),
        ("JANITOR_INSTANCE_ID", name),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

async fn start(svc: &Services, ns: &Namespace, name: &str, lease: &str) -> Daemon {
    start_with(svc, ns, name, lease, &[]).await
}

async fn start_with(
    svc: &Services,
    ns: &Namespace,
    name: &str,
    lease: &str,
    extra: &[(&str, &str)],
) -> Daemon {
    let dir = daemon::tempdir();
    let mut env = replica_env(svc, ns, dir.path(), name, lease);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Daemon::start(env, dir).await
}

async fn role(d: &Daemon) -> String {
    d.get_json("/api/workers").await["role"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn worker_state(workers: &Value, name: &str) -> String {
    workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .map(|w| w["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Waits until one of `ds` reports `leader`; returns its index and how long it took.
async fn wait_leader(ds: &[&Daemon], within: Duration) -> (usize, Duration) {
    let start = Instant::now();
    loop {
        for (i, d) in ds.iter().enumerate() {
            if role(d).await == "leader" {
                return (i, start.elapsed());
            }
        }
        assert!(start.elapsed() < within, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Applied batches in a replica's audit log.
fn audited_batches(d: &Daemon) -> Vec<Value> {
    crate::support::applied_batches(&d.audit_log())
}

#[tokio::test]
async fn one_replica_sweeps_and_a_killed_leader_is_replaced_within_the_lease() {
    let svc = require_services!();
    let ns = Namespace::new("replicas-takeover");
    let url = ns.fresh_redis(svc).await;
    fill_redis(&url, "tmp:a", 50).await;
    let a = start(svc, &ns, "replica-a", "2").await;
    let b = start(svc, &ns, "replica-b", "2").await;
    let (first, _) = wait_leader(&[&a, &b], Duration::from_secs(5)).await;
    let (mut leader, standby) = if first == 0 { (a, b) } else { (b, a) };
    wait_for(
        "the leader audits its batch",
        Duration::from_secs(10),
        async || !audited_batches(&leader).is_empty(),
    )
    .await;
    assert_eq!(crate::support::count_keys(&url, "tmp:*").await, 0);

    // the standby measures and serves, never sweeps
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(role(&standby).await, "standby");
    let workers = standby.get_json("/api/workers").await;
    assert_eq!(worker_state(&workers, "redis"), "standby", "{workers:#}");
    assert!(
        standby.get_json("/api/resources/runs").await["runs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(audited_batches(&standby).is_empty());
    assert_eq!(audited_batches(&leader).len(), 1);
    let metrics = reqwest::get(standby.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("janitor_leader 0"), "{metrics}");
    let cleanup = |d: &Daemon, body: &'static str| {
        reqwest::Client::new()
            .post(d.url("/api/resources/cleanup"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
    };
    let r = cleanup(&standby, r#"{"resource_type": "redis_cache"}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "standby", "{body:#}");
    let r = cleanup(
        &standby,
        r#"{"resource_type": "redis_cache", "dry_run": true}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "a standby plans a dry run");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["runs"][0]["outcome"], "dry_run", "{body:#}");

    // kill -9 the leader: the lease is not released, it expires; the standby takes over
    fill_redis(&url, "tmp:b", 30).await;
    leader.signal("KILL");
    leader.wait_exit(Duration::from_secs(5)).unwrap();
    let killed = Instant::now();
    let (_, _) = wait_leader(&[&standby], Duration::from_secs(5)).await;
    let took = killed.elapsed();
    // within the lease (2 s) plus one renewal period (2/3 s) and polling slack
    assert!(took < Duration::from_millis(3200), "takeover took {took:?}");
    // the audit record is appended (and fsynced) just after the keys go: wait for the record,
    // not for the keys, or a slow disk reads as a missing record
    wait_for(
        "the new leader audits its batch",
        Duration::from_secs(10),
        async || !audited_batches(&standby).is_empty(),
    )
    .await;
    assert_eq!(audited_batches(&standby).len(), 1);
    assert_eq!(crate::support::count_keys(&url, "tmp:*").await, 0);
    eprintln!("takeover after kill -9: {took:?} (lease 2 s)");
}

#[tokio::test]
async fn a_stopping_leader_hands_over_at_once() {
    let svc = require_services!();
    let ns = Namespace::new("replicas-handover");
    ns.fresh_redis(svc).await;
    let a = start(svc, &ns, "replica-a", "6").await;
    let b = start(svc, &ns, "replica-b", "6").await;
    let (first, _) = wait_leader(&[&a, &b], Duration::from_secs(5)).await;
    let (mut leader, standby) = if first == 0 { (a, b) } else { (b, a) };
    // a one-off sweep needs the lease as well: refused while a daemon holds it; a dry run
    // (which deletes nothing) goes ahead
    let dir = daemon::tempdir();
    let env = replica_env(svc, &ns, dir.path(), "cli", "6");
    let sweep = |extra: &[&str]| {
        let mut cmd = daemon::janitor(&env, &dir);
        cmd.args(["sweep", "--once", "--resource", "redis"])
            .args(extra);
        let status = cmd.status().unwrap();
        let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
        (status.code(), stderr)
    };
    let (code, stderr) = sweep(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("another replica holds the leader lease (replica-"),
        "{stderr}"
    );
    assert_eq!(sweep(&["--dry-run"]).0, Some(0));
    leader.signal("TERM");
    assert!(leader.wait_exit(Duration::from_secs(10)).unwrap().success());
    let stopped = Instant::now();
    wait_leader(&[&standby], Duration::from_secs(10)).await;
    let took = stopped.elapsed();
    // released on shutdown: taken at the standby's next attempt (every 2 s), not after 6 s
    assert!(took < Duration::from_millis(3500), "handover took {took:?}");
    assert!(
        leader.output().contains("leader lease released"),
        "{}",
        leader.output()
    );
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_deletes_nothing_more() {
    let svc = require_services!();
    let ns = Namespace::new("replicas-fencing");
    let url = ns.fresh_redis(svc).await;
    let paced = [("JANITOR_REDIS_MAX_OPS_PER_SEC", "2000")];
    let a = start_with(svc, &ns, "replica-a", "2", &paced).await;
    wait_leader(&[&a], Duration::from_secs(5)).await;
    let b = start_with(svc, &ns, "replica-b", "2", &paced).await;
    // 10,000 keys at 2,000 commands/s: two batches of 5,000, each followed by a 2.5 s pause
    fill_redis(&url, "tmp:", 10_000).await;
    let r = reqwest::Client::new()
        .post(a.url("/api/resources/cleanup?async=true"))
        .bearer_auth(TOKEN)
        .body(r#"{"resource_type": "redis_cache"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // paused in the pause after its first batch, A loses the lease to B
    wait_for(
        "A deletes its first batch",
        Duration::from_secs(30),
        async || crate::support::count_keys(&url, "tmp:*").await < 10_000,
    )
    .await;
    a.signal("STOP");
    let paused = Instant::now();
    wait_leader(&[&b], Duration::from_secs(6)).await;
    let b_took_over = paused.elapsed();
    a.signal("CONT");
    wait_for("A's run ends", Duration::from_secs(30), async || {
        a.get_json("/api/resources/runs").await["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["trigger"] == "api")
    })
    .await;
    let runs = a.get_json("/api/resources/runs").await;
    let run = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trigger"] == "api")
        .unwrap()
        .clone();
    assert_eq!(run["outcome"], "not_leader", "{run:#}");
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("leader lease lost"),
        "{run:#}"
    );
    // A's trail: the one batch applied before the pause (about 5,000 keys), nothing after
    let batches = audited_batches(&a);
    assert_eq!(batches.len(), 1, "{batches:#?}");
    let first = batches[0]["items"].as_array().unwrap().len() as u64;
    assert!((5000..10_000).contains(&first), "{first}");
    assert_eq!(run["deleted"], first, "{run:#}");
    assert_eq!(role(&a).await, "standby");
    // B finishes the job on its own lease
    wait_for("B sweeps the rest", Duration::from_secs(30), async || {
        crate::support::count_keys(&url, "tmp:*").await == 0
    })
    .await;
    eprintln!("paused leader fenced; B took over after {b_took_over:?}");
}
