//! Smoke tests: each test server is real, reachable from Rust with the product's own client
//! crates, and behaves the way the sweepers rely on.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::TryStreamExt;
use mongodb::bson::{self, Document, doc};
use mongodb::options::IndexOptions;
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Direction, Distance, FieldType, Filter, OrderByBuilder, PointStruct,
    Range, ScrollPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};

use crate::require_services;
use crate::support::{Namespace, process};

#[tokio::test]
async fn redis_set_scan_and_idletime() {
    let svc = require_services!();
    let ns = Namespace::new("smoke-redis");
    let client = redis::Client::open(svc.redis_url(ns.redis_db)).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    for i in 0..50 {
        redis::cmd("SET")
            .arg(ns.key(&format!("k{i}")))
            .arg(format!("value {i}"))
            .query_async::<()>(&mut con)
            .await
            .unwrap();
    }
    let mut cursor = 0u64;
    let mut seen = std::collections::HashSet::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(ns.key("*"))
            .arg("COUNT")
            .arg(10)
            .query_async(&mut con)
            .await
            .unwrap();
        seen.extend(keys);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        50,
        "SCAN must visit every key present for the whole pass"
    );
    let idle: i64 = redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg(ns.key("k1"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        (0..5).contains(&idle),
        "a fresh key is idle for ~0 s, got {idle}"
    );
}

pub fn s3_client(endpoint: &str, access: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("garage"))
        .credentials_provider(Credentials::new(access, secret, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test]
async fn s3_put_list_pages_and_delete_objects() {
    let svc = require_services!();
    let ns = Namespace::new("smoke-s3");
    let s3 = s3_client(
        svc.get("S3_ENDPOINT"),
        svc.get("AWS_ACCESS_KEY_ID"),
        svc.get("AWS_SECRET_ACCESS_KEY"),
    );
    let bucket = svc.get("S3_BUCKET");
    for i in 0..7 {
        s3.put_object()
            .bucket(bucket)
            .key(format!("{}obj-{i}", ns.s3_prefix()))
            .body(ByteStream::from(vec![b'x'; i]))
            .send()
            .await
            .unwrap();
    }
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(ns.s3_prefix())
        .max_keys(3)
        .into_paginator()
        .send();
    let (mut page_count, mut keys) = (0, Vec::new());
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        page_count += 1;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    assert_eq!(keys.len(), 7);
    assert_eq!(page_count, 3, "max_keys=3 over 7 objects is 3 pages");

    let objects: Vec<ObjectIdentifier> = keys
        .iter()
        .map(|k| ObjectIdentifier::builder().key(k).build().unwrap())
        .collect();
    let out = s3
        .delete_objects()
        .bucket(bucket)
        .delete(
            Delete::builder()
                .set_objects(Some(objects))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(out.deleted().len(), 7);
    assert!(out.errors().is_empty());
    let left = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(ns.s3_prefix())
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0));
}

#[tokio::test]
async fn s3_old_last_modified_through_faketime() {
    let svc = require_services!();
    let garage = process::garage_with_clock(svc);
    let s3 = s3_client(
        &garage.info["endpoint"],
        &garage.info["access_key"],
        &garage.info["secret_key"],
    );
    let bucket = &garage.info["bucket"];
    process::set_clock(&garage, "-8d");
    s3.put_object()
        .bucket(bucket)
        .key("old")
        .body(ByteStream::from_static(b"o"))
        .send()
        .await
        .unwrap();
    process::set_clock(&garage, "+0");
    // a new client: the SDK learns clock skew from responses, and the old one would now sign
    // its requests eight days in the past
    let s3 = s3_client(
        &garage.info["endpoint"],
        &garage.info["access_key"],
        &garage.info["secret_key"],
    );
    s3.put_object()
        .bucket(bucket)
        .key("new")
        .body(ByteStream::from_static(b"n"))
        .send()
        .await
        .unwrap();
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let now = SystemTime::now();
    let age = |key: &str| -> Duration {
        let o = listed
            .contents()
            .iter()
            .find(|o| o.key() == Some(key))
            .unwrap();
        let modified = SystemTime::try_from(*o.last_modified().unwrap()).unwrap();
        now.duration_since(modified).unwrap_or_default()
    };
    let day = Duration::from_secs(86_400);
    assert!(
        age("old") > 7 * day && age("old") < 9 * day,
        "old: {:?}",
        age("old")
    );
    assert!(age("new") < day, "new: {:?}", age("new"));
}

#[tokio::test]
async fn mongo_unique_index_datetime_range_and_projection() {
    let svc = require_services!();
    let ns = Namespace::new("smoke-mongo");
    let client = mongodb::Client::with_uri_str(svc.get("MONGODB_URI"))
        .await
        .unwrap();
    let db = client.database(&ns.mongo_db());
    let docs = db.collection::<Document>("documents");
    let index = mongodb::IndexModel::builder()
        .keys(doc! { "user_id": 1, "metadata.file_hash": 1 })
        .options(IndexOptions::builder().unique(true).build())
        .build();
    docs.create_index(index).await.unwrap();

    let now = bson::DateTime::now();
    let old = bson::DateTime::from_millis(now.timestamp_millis() - 10 * 86_400_000);
    docs.insert_one(doc! { "user_id": "u1", "metadata": { "file_hash": "aa" },
    "minio_key": "uploads/u1/a.pdf", "created_at": old })
        .await
        .unwrap();
    docs.insert_one(doc! { "user_id": "u1", "metadata": { "file_hash": "bb" },
    "minio_key": "uploads/u1/b.pdf", "created_at": now })
        .await
        .unwrap();
    let dup = docs
        .insert_one(doc! { "user_id": "u1", "metadata": { "file_hash": "aa" } })
        .await
        .unwrap_err();
    match *dup.kind {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(ref e)) => {
            assert_eq!(e.code, 11000, "{e:?}")
        }
        ref other => panic!("expected a duplicate-key write error, got {other:?}"),
    }

    let cutoff = bson::DateTime::from_millis(now.timestamp_millis() - 86_400_000);
    let older: Vec<Document> = docs
        .find(doc! { "created_at": { "$lt": cutoff } })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].get_str("minio_key").unwrap(), "uploads/u1/a.pdf");

    let found: Vec<Document> = docs
        .find(doc! { "minio_key": { "$in": ["uploads/u1/a.pdf", "uploads/u1/zzz.pdf"] } })
        .projection(doc! { "minio_key": 1, "_id": 0 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found, vec![doc! { "minio_key": "uploads/u1/a.pdf" }]);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn qdrant_range_count_order_by_and_filtered_delete() {
    let svc = require_services!();
    let ns = Namespace::new("smoke-qdrant");
    let client = Qdrant::from_url(svc.get("QDRANT_URL")).build().unwrap();
    let name = ns.collection("c");
    client
        .create_collection(
            CreateCollectionBuilder::new(&name)
                .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
        )
        .await
        .unwrap();
    let points: Vec<PointStruct> = (1..=100u64)
        .map(|i| {
            let payload =
                serde_json::json!({ "created_at": 1_000 + i, "doc": format!("d{}", i % 3) });
            PointStruct::new(
                i,
                vec![0.1, 0.2, 0.3, i as f32],
                qdrant_client::Payload::try_from(payload).unwrap(),
            )
        })
        .collect();
    client
        .upsert_points(UpsertPointsBuilder::new(&name, points).wait(true))
        .await
        .unwrap();

    // order_by needs a range index: the engine's own error passes through
    let err = client
        .scroll(
            ScrollPointsBuilder::new(&name)
                .limit(1)
                .order_by(OrderByBuilder::new("created_at")),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("No range index"), "{err}");

    client
        .create_field_index(
            CreateFieldIndexCollectionBuilder::new(&name, "created_at", FieldType::Integer)
                .wait(true),
        )
        .await
        .unwrap();
    let older = Filter::must([Condition::range(
        "created_at",
        Range {
            lt: Some(1_050.0),
            ..Default::default()
        },
    )]);
    let count = client
        .count(
            CountPointsBuilder::new(&name)
                .filter(older.clone())
                .exact(true),
        )
        .await
        .unwrap();
    assert_eq!(count.result.unwrap().count, 49);

    let oldest = client
        .scroll(
            ScrollPointsBuilder::new(&name)
                .limit(1)
                .order_by(OrderByBuilder::new("created_at").direction(Direction::Asc.into())),
        )
        .await
        .unwrap();
    assert_eq!(oldest.result.len(), 1);
    assert_eq!(
        oldest.result[0].payload["created_at"].as_integer(),
        Some(1_001)
    );

    client
        .delete_points(DeletePointsBuilder::new(&name).points(older).wait(true))
        .await
        .unwrap();
    let left = client
        .count(CountPointsBuilder::new(&name).exact(true))
        .await
        .unwrap();
    assert_eq!(left.result.unwrap().count, 51);
    client.delete_collection(&name).await.unwrap();
}
