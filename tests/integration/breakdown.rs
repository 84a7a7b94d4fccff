//! The breakdown of what uses each store, against the real servers: exact counts per
//! prefix, sizes against the server's own MEMORY USAGE and the listing, ages against a
//! Garage whose clock is moved back, and the API's answers, cache and errors.

use aws_sdk_s3::primitives::ByteStream;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, Distance, PointStruct, UpsertPointsBuilder, VectorParamsBuilder,
};
use resource_janitor::backend::Backends;
use resource_janitor::breakdown::{Breakdown, Options, Walkers};
use resource_janitor::resource::Resource;
use tokio_util::sync::CancellationToken;

use crate::require_services;
use crate::smoke::s3_client;
use crate::support::daemon::{Daemon, env_for, tempdir};
use crate::support::process;
use crate::support::{self, Namespace};

async fn walk(pairs: &[(&str, &str)], resource: Resource, opts: Options) -> Breakdown {
    let dir = tempdir();
    let settings = support::settings(pairs, &dir.path().join("audit.jsonl"), &[]);
    let backends = Backends::new(&settings).await.unwrap();
    let walkers = Walkers::new(backends, &settings);
    walkers
        .walk(resource, opts, &CancellationToken::new())
        .await
        .unwrap()
}

fn group<'a>(b: &'a Breakdown, prefix: &str) -> &'a resource_janitor::breakdown::Group {
    b.groups
        .iter()
        .find(|g| g.prefix == prefix)
        .unwrap_or_else(|| panic!("no group {prefix:?} in {:#?}", b.groups))
}

/// `n` keys `{prefix}{i}` holding `value`, with a TTL when `ttl` is set.
async fn fill(url: &str, prefix: &str, n: usize, value: &str, ttl: Option<u64>) {
    let mut con = support::redis_con(url).await;
    let mut pipe = redis::pipe();
    for i in 0..n {
        let cmd = pipe.cmd("SET").arg(format!("{prefix}{i}")).arg(value);
        if let Some(secs) = ttl {
            cmd.arg("EX").arg(secs);
        }
        cmd.ignore();
    }
    pipe.query_async::<()>(&mut con).await.unwrap();
}

#[tokio::test]
async fn redis_keys_are_counted_exactly_per_prefix_and_sized_like_memory_usage() {
    let svc = require_services!();
    let ns = Namespace::new("breakdown-redis");
    let url = ns.fresh_redis(svc).await;
    let big = "x".repeat(300);
    for d in 0..4 {
        fill(&url, &format!("doc_segments:d{d}:"), 250, &big, None).await;
    }
    fill(&url, "session:", 200, "s", Some(3600)).await;
    fill(&url, "counter", 5, "1", None).await; // no separator
    // what the server says the doc_segments keys hold, key by key
    let mut con = support::redis_con(&url).await;
    let mut pipe = redis::pipe();
    for d in 0..4 {
        for i in 0..250 {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(format!("doc_segments:d{d}:{i}"));
        }
    }
    let sizes: Vec<u64> = pipe.query_async(&mut con).await.unwrap();
    let real: u64 = sizes.iter().sum();

    let pairs = [("REDIS_URL", url.as_str())];
    let b = walk(&pairs, Resource::Redis, Options { depth: 1, top: 20 }).await;
    assert_eq!(b.items, 1205, "{b:#?}");
    let docs = group(&b, "doc_segments:");
    assert_eq!((docs.items, docs.without_ttl), (1000, Some(1000)));
    let off = docs.bytes.abs_diff(real) as f64 / real as f64;
    assert!(
        off < 0.05,
        "estimated {} vs MEMORY USAGE {real}",
        docs.bytes
    );
    let sessions = group(&b, "session:");
    assert_eq!((sessions.items, sessions.without_ttl), (200, Some(0)));
    let bare = group(&b, "");
    assert_eq!((bare.items, bare.without_ttl), (5, Some(5)));
    assert_eq!(b.groups[0].prefix, "doc_segments:", "largest first");
    let ages = docs.ages.unwrap().counts();
    assert_eq!(ages[0], 1000, "just written: idle under an hour");

    // two segments, top 2: the rest is summed, nothing lost
    let b = walk(&pairs, Resource::Redis, Options { depth: 2, top: 2 }).await;
    assert_eq!(b.groups.len(), 2);
    assert!(
        b.groups
            .iter()
            .all(|g| g.prefix.starts_with("doc_segments:d"))
    );
    assert!(b.groups.iter().all(|g| g.items == 250));
    assert_eq!(b.other.items, 1205 - 500);
    assert_eq!(b.other.without_ttl, Some(505));
}

#[tokio::test]
async fn s3_objects_are_grouped_by_prefix_with_measured_sizes_and_ages() {
    let svc = require_services!();
    let garage = process::garage_with_clock(svc);
    let info = |k: &str| garage.info[k].clone();
    let bucket = info("bucket");
    let put = |client: aws_sdk_s3::Client, key: String, len: usize| {
        let bucket = bucket.clone();
        async move {
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(vec![b'x'; len]))
                .send()
                .await
                .unwrap();
        }
    };
    let client = || s3_client(&info("endpoint"), &info("access_key"), &info("secret_key"));
    process::set_clock(&garage, "-10d");
    let old = client();
    for i in 0..6 {
        put(old.clone(), format!("uploads/u1/old{i}.pdf"), 1000).await;
    }
    put(old.clone(), "tmp/old.bin".into(), 50).await;
    process::set_clock(&garage, "+0");
    let new = client(); // the SDK learns clock skew: a fresh client for the new clock
    for i in 0..4 {
        put(new.clone(), format!("uploads/u2/new{i}.pdf"), 100).await;
    }
    put(new.clone(), "root.txt".into(), 7).await;

    let pairs = [
        ("S3_ENDPOINT", info("endpoint")),
        ("S3_BUCKET", bucket.clone()),
        ("AWS_ACCESS_KEY_ID", info("access_key")),
        ("AWS_SECRET_ACCESS_KEY", info("secret_key")),
        ("AWS_REGION", "garage".into()),
        ("FILES_TTL_DAYS", "7".into()),
    ];
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let b = walk(&pairs, Resource::S3, Options { depth: 1, top: 20 }).await;
    assert_eq!((b.items, b.bytes), (12, 6000 + 50 + 400 + 7), "{b:#?}");
    let uploads = group(&b, "uploads/");
    assert_eq!((uploads.items, uploads.bytes), (10, 6400));
    assert_eq!(uploads.bytes_older_than_ttl, Some(6000));
    let ages = uploads.ages.unwrap().counts();
    assert_eq!(
        (ages[0], ages[3]),
        (4, 6),
        "{ages:?}: 4 new, 6 ten days old"
    );
    assert_eq!(group(&b, "tmp/").bytes_older_than_ttl, Some(50));
    assert_eq!(group(&b, "").items, 1, "root.txt has no prefix");

    let b = walk(&pairs, Resource::S3, Options { depth: 2, top: 20 }).await;
    assert_eq!(group(&b, "uploads/u1/").bytes, 6000);
    assert_eq!(group(&b, "uploads/u2/").bytes, 400);
}

#[tokio::test]
async fn the_api_answers_each_store_caches_and_refuses_bad_requests() {
    let svc = require_services!();
    let ns = Namespace::new("breakdown-api");
    let url = ns.fresh_redis(svc).await;
    fill(&url, "cache:", 40, "v", None).await;
    let q = qdrant_client::Qdrant::from_url(svc.get("QDRANT_URL"))
        .skip_compatibility_check()
        .build()
        .unwrap();
    let name = ns.collection("chunks");
    q.create_collection(
        CreateCollectionBuilder::new(&name)
            .vectors_config(VectorParamsBuilder::new(8, Distance::Cosine)),
    )
    .await
    .unwrap();
    let points: Vec<PointStruct> = (1..=30u64)
        .map(|i| PointStruct::new(i, vec![0.5; 8], qdrant_client::Payload::new()))
        .collect();
    q.upsert_points(UpsertPointsBuilder::new(&name, points).wait(true))
        .await
        .unwrap();

    let dir = tempdir();
    let d = Daemon::start(env_for(svc, &ns, dir.path()), dir).await;
    let (status, redis) = d.get("/api/resources/breakdown?resource=redis").await;
    assert_eq!(status, 200, "{redis}");
    assert_eq!(redis["items"], 40);
    assert_eq!(redis["groups"][0]["prefix"], "cache:");
    assert_eq!(redis["groups"][0]["without_ttl"], 40);

    // cached: keys added since do not show until a refresh
    fill(&url, "later:", 10, "v", None).await;
    let (_, again) = d.get("/api/resources/breakdown?resource=redis_cache").await;
    assert_eq!(again["items"], 40);
    assert_eq!(again["generated_at"], redis["generated_at"]);
    let (_, fresh) = d
        .get("/api/resources/breakdown?resource=redis&refresh=true")
        .await;
    assert_eq!(fresh["items"], 50);

    let (status, qd) = d
        .get("/api/resources/breakdown?resource=qdrant&top=1000")
        .await;
    assert_eq!(status, 200, "{qd}");
    let ours = qd["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["prefix"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} missing: {qd:#}"));
    assert_eq!(ours["items"], 30);
    assert_eq!(ours["bytes"], 30 * 8 * 4, "points x dimension x float32");
    assert_eq!(ours["timestamp_indexed"], false);

    let (status, s3) = d.get("/api/resources/breakdown?resource=minio").await;
    assert_eq!((status, s3["resource"].as_str()), (200, Some("s3")), "{s3}");

    for (query, want) in [
        ("resource=mongodb", 422),
        ("resource=nope", 422),
        ("resource=redis&depth=0", 422),
        ("resource=redis&top=5000", 422),
        ("resource=redis&depth=x", 400),
        ("", 400),
    ] {
        let (status, body) = d.get(&format!("/api/resources/breakdown?{query}")).await;
        assert_eq!(status, want, "{query}: {body}");
        assert_eq!(body["success"], false, "{query}: {body}");
        assert!(body["request_id"].is_string(), "{query}: {body}");
    }
    let anonymous = reqwest::get(d.url("/api/resources/breakdown?resource=redis"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    q.delete_collection(&name).await.unwrap();
}
