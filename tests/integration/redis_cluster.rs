//! The Redis sweeper on a real Redis Cluster (three private redis-server primaries): every
//! primary is scanned, each batch is applied on the primary that holds its keys, the
//! monitor's figures add up the primaries, and the dry run plans what the run deletes.

use resource_janitor::app::Janitor;
use resource_janitor::resource::Resource;
use resource_janitor::runs::{Outcome, RunRecord};

use crate::require_services;
use crate::support::{self, process};

async fn run(state: &Janitor, dry_run: bool) -> RunRecord {
    support::run_once(state, support::cli_request(Resource::Redis, dry_run))
        .await
        .record
}

/// (tmp keys, keep keys) held by the node on `port`.
async fn held(port: u16) -> (usize, usize) {
    let url = format!("redis://127.0.0.1:{port}/0");
    let count = async |pattern| crate::support::count_keys(&url, pattern).await;
    (count("tmp:*").await, count("keep:*").await)
}

#[tokio::test]
async fn every_primary_is_swept_on_its_own_connection() {
    let svc = require_services!();
    let nodes = process::redis_cluster(svc, 3);
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}/", n.port))
        .collect();
    let mut cluster = redis::cluster::ClusterClient::new(urls.clone())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    for i in 0..300 {
        for prefix in ["tmp", "keep"] {
            redis::cmd("SET")
                .arg(format!("{prefix}:{i}"))
                .arg("v")
                .query_async::<()>(&mut cluster)
                .await
                .unwrap();
        }
    }
    let mut before = Vec::new();
    for n in &nodes {
        before.push(held(n.port).await);
    }
    assert!(
        before.iter().all(|&(tmp, _)| tmp > 50),
        "keys spread over the primaries: {before:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    // any node will do as the seed: the primaries are discovered from it
    let settings = support::settings(
        &[
            ("REDIS_URL", urls[1].as_str()),
            ("JANITOR_REDIS_POLICIES", "tmp:*=delete"),
            ("JANITOR_MAX_DELETE_FRACTION", "1"),
        ],
        &audit,
        &[],
    );
    let state = Janitor::new(settings).await.unwrap();
    let usage = state
        .backends
        .redis
        .as_ref()
        .unwrap()
        .measure(1 << 30)
        .await
        .unwrap();
    assert_eq!(usage.total_items, 600);

    let dry = run(&state, true).await;
    assert_eq!((dry.outcome, dry.planned_deletions), (Outcome::DryRun, 300));
    let r = run(&state, false).await;
    assert_eq!(
        (r.outcome, r.deleted, r.failed),
        (Outcome::Succeeded, 300, 0),
        "{r:?}"
    );
    // every primary lost exactly its own tmp keys, and nothing else
    for (n, (_, keep)) in nodes.iter().zip(&before) {
        assert_eq!(held(n.port).await, (0, *keep), "node {}", n.port);
    }
    // one batch per primary, each naming its shard
    let shards: std::collections::BTreeSet<String> = crate::support::applied_batches(&audit)
        .iter()
        .map(|r| r["shard"].as_str().unwrap().to_string())
        .collect();
    let expected: std::collections::BTreeSet<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    assert_eq!(shards, expected);
}

#[tokio::test]
async fn the_leader_lease_lives_on_the_primary_of_its_slot() {
    use resource_janitor::backend::redis::Redis;
    use resource_janitor::config::{Leader, RedisConn};
    use resource_janitor::leader::{Leadership, Role};
    use std::time::Duration;

    let svc = require_services!();
    let nodes = process::redis_cluster(svc, 3);
    // two replicas, each seeded with a different node of the cluster
    let contender = |i: usize, name: &str| {
        let conn = RedisConn {
            url: resource_janitor::secret::SecretUrl::new(format!(
                "redis://127.0.0.1:{}/0",
                nodes[i].port
            )),
            tls_ca_file: None,
            tls_client: None,
        };
        let settings = Leader {
            enabled: true,
            key: "janitor:leader".into(),
            lease: Duration::from_secs(5),
            instance: name.into(),
        };
        Leadership::new(
            Redis::new(&conn, Duration::from_secs(3)).unwrap(),
            &settings,
        )
    };
    let (a, b) = (contender(0, "a"), contender(2, "b"));
    assert_eq!(a.tick().await.unwrap(), (Role::Leader, true));
    assert_eq!(b.tick().await.unwrap(), (Role::Standby, false));
    assert_eq!(b.holder().as_deref(), Some(a.token()));
    a.confirm().await.unwrap();
    // the key is on the one primary serving its slot
    let mut holders = 0;
    for n in &nodes {
        let url = format!("redis://127.0.0.1:{}/0", n.port);
        let mut con = crate::support::redis_con(url.as_str()).await;
        let size: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
        holders += size;
    }
    assert_eq!(holders, 1);
    a.release().await;
    assert_eq!(b.tick().await.unwrap(), (Role::Leader, true));
    assert!(
        a.confirm().await.is_err(),
        "a released lease is not ours any more"
    );
}
