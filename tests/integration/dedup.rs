//! The SHA-256 dedup index through the real daemon's API, against secantusd-rs, and
//! `janitor dedup scan` against Garage.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use mongodb::bson::{Document, doc, oid::ObjectId};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::require_services;
use crate::smoke::s3_client;
use crate::support::daemon::{Daemon, TOKEN, janitor, tempdir};
use crate::support::process;
use crate::support::{Namespace, Services};

const MAX: u64 = 32 << 20;

fn env(
    uri: &str,
    db: &str,
    dir: &std::path::Path,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("MONGODB_URI", uri),
        ("MONGODB_DATABASE", db),
        ("JANITOR_ADMIN_TOKEN", TOKEN),
        ("JANITOR_LOG_FORMAT", "json"),
        ("JANITOR_BACKEND_TIMEOUT_SECONDS", "3"),
        ("JANITOR_DEDUP_MAX_BYTES", &MAX.to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    v.push((
        "JANITOR_AUDIT_LOG".into(),
        dir.join("audit.jsonl").display().to_string(),
    ));
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn post(d: &Daemon, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(d.url(path))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_json(d: &Daemon, path: &str, body: Value) -> (u16, Value) {
    post(d, path, body.to_string()).await
}

async fn readyz_index(d: &Daemon, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r: Value = reqwest::get(d.url("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["dedup_index"]["state"] == want {
            return r["dedup_index"].clone();
        }
        assert!(Instant::now() < deadline, "dedup index never {want}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Streams `total` bytes with chunked encoding over a raw connection; returns the status
/// line and how many bytes were written before the server answered or closed.
async fn chunked_upload(d: &Daemon, total: u64) -> (String, u64) {
    let addr = d.base.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /api/dedup/check?user_id=u1 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        wr.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'z'; 1 << 20];
        let mut sent = 0u64;
        while sent < total {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if wr.write_all(&frame).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
        sent
    });
    let mut response = vec![0u8; 512];
    let n = rd.read(&mut response).await.unwrap();
    let status = String::from_utf8_lossy(&response[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    drop(rd);
    let sent = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .unwrap()
        .unwrap();
    (status, sent)
}

/// Sends only the head of a check request declaring a `length`-byte body; the response.
async fn declared_upload(d: &Daemon, length: u64) -> String {
    let addr = d.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/dedup/check?user_id=u1 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("answered without the body")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn check_lookup_register_race_limits_and_mongodb_down() {
    let svc: &Services = require_services!();
    let ns = Namespace::new("dedup-api");
    let mut mongo = process::mongo(svc);
    let uri = mongo.info["uri"].clone();
    let db = ns.mongo_db();
    let docs = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db)
        .collection::<Document>("documents");
    let a = ObjectId::new();
    docs.insert_many([
        doc! { "_id": a, "user_id": "u1", "minio_key": "uploads/u1/a.pdf" },
        doc! { "_id": "doc-b", "user_id": "u1" },
        doc! { "_id": "doc-c", "user_id": "u1" },
    ])
    .await
    .unwrap();
    let dir = tempdir();
    let d = Daemon::start(
        env(
            &uri,
            &db,
            dir.path(),
            &[("JANITOR_DEDUP_CREATE_INDEX", "true")],
        ),
        dir,
    )
    .await;
    readyz_index(&d, "present").await;

    // a new file, then registered, then found (for its user only)
    let (s, r) = post(&d, "/api/dedup/check?user_id=u1", "hello").await;
    assert_eq!(
        (s, &r["duplicate"], &r["size"]),
        (200, &json!(false), &json!(5)),
        "{r}"
    );
    let hello = sha(b"hello");
    assert_eq!(r["sha256"], hello);
    let reg = json!({ "user_id": "u1", "sha256": hello, "document_id": a.to_hex(), "object_key": "uploads/u1/a.pdf" });
    assert_eq!(
        post_json(&d, "/api/dedup/register", reg.clone()).await.0,
        201
    );
    assert_eq!(
        post_json(&d, "/api/dedup/register", reg).await.0,
        200,
        "idempotent"
    );
    let (_, r) = post(&d, "/api/dedup/check?user_id=u1", "hello").await;
    assert_eq!(
        (&r["duplicate"], &r["document_id"]),
        (&json!(true), &json!(a.to_hex()))
    );
    let (_, r) = post_json(
        &d,
        "/api/dedup/lookup",
        json!({ "user_id": "u1", "sha256": hello.to_uppercase() }),
    )
    .await;
    assert_eq!(r["document_id"], a.to_hex());
    let (_, r) = post_json(
        &d,
        "/api/dedup/lookup",
        json!({ "user_id": "u2", "sha256": hello }),
    )
    .await;
    assert_eq!(r["duplicate"], false);

    // two registers of one hash at once: the unique index lets exactly one win
    let other = sha(b"other file");
    let reg = |doc: &str| json!({ "user_id": "u1", "sha256": other, "document_id": doc });
    let (b, c) = tokio::join!(
        post_json(&d, "/api/dedup/register", reg("doc-b")),
        post_json(&d, "/api/dedup/register", reg("doc-c"))
    );
    let mut statuses = [b.0, c.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{b:?} {c:?}");
    let (winner, loser) = if b.0 == 201 { (b, c) } else { (c, b) };
    assert_eq!(loser.1["document_id"], winner.1["document_id"]);
    // the loser trying again is told the same
    let loser_doc = if winner.1["document_id"] == "doc-b" {
        "doc-c"
    } else {
        "doc-b"
    };
    let again = post_json(&d, "/api/dedup/register", reg(loser_doc)).await;
    assert_eq!(
        (again.0, &again.1["document_id"]),
        (409, &winner.1["document_id"])
    );
    let unknown = json!({ "user_id": "u1", "sha256": sha(b"x"), "document_id": "nope" });
    assert_eq!(post_json(&d, "/api/dedup/register", unknown).await.0, 404);

    // a large body is hashed as it streams
    let big: Vec<u8> = (0..MAX as usize - 1).map(|i| (i % 251) as u8).collect();
    let expected = sha(&big);
    let (s, r) = post(&d, "/api/dedup/check?user_id=u1", big).await;
    assert_eq!(
        (s, r["sha256"].as_str().unwrap(), r["size"].as_u64()),
        (200, expected.as_str(), Some(MAX - 1))
    );

    // over the limit: 413, declared or found while streaming, and the body is not read to the
    // end. A declared length over the limit is answered before any of the body is sent (a
    // client writing the body meanwhile may see the connection closed under it instead)
    let status = declared_upload(&d, MAX + 1).await;
    assert!(
        status.starts_with("HTTP/1.1 413 ") && status.contains("payload_too_large"),
        "{status}"
    );
    let (status, sent) = chunked_upload(&d, 8 * MAX).await;
    assert!(status.contains(" 413 "), "{status}");
    assert!(
        sent < 8 * MAX,
        "the server read the whole body ({sent} bytes)"
    );

    // bad input: 400 with a JSON error
    for (path, body) in [
        ("/api/dedup/check", "x".to_string()),
        (
            "/api/dedup/lookup",
            json!({ "user_id": "u1", "sha256": "abc" }).to_string(),
        ),
        ("/api/dedup/lookup", json!({ "sha256": hello }).to_string()),
        (
            "/api/dedup/register",
            json!({ "user_id": "u1", "sha256": hello }).to_string(),
        ),
        ("/api/dedup/register", "{not json".to_string()),
    ] {
        let (s, r) = post(&d, path, body.clone()).await;
        assert_eq!(
            (s, r["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{path} {body}: {r}"
        );
    }

    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for m in [
        "janitor_dedup_checks_total",
        "janitor_dedup_duplicates_total",
        "janitor_dedup_bytes_hashed_total",
    ] {
        assert!(metrics.contains(m), "{m}");
    }

    // MongoDB down: 503, never "not a duplicate"
    mongo.kill();
    let (s, r) = post(&d, "/api/dedup/check?user_id=u1", "hello").await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{r}"
    );
    let (s, _) = post_json(
        &d,
        "/api/dedup/lookup",
        json!({ "user_id": "u1", "sha256": hello }),
    )
    .await;
    assert_eq!(s, 503);
    let (s, _) = post_json(
        &d,
        "/api/dedup/register",
        json!({ "user_id": "u1", "sha256": sha(b"y"), "document_id": "doc-b" }),
    )
    .await;
    assert_eq!(s, 503);
}

#[tokio::test]
async fn duplicates_that_block_the_unique_index_are_reported_and_registers_refused() {
    let svc: &Services = require_services!();
    let ns = Namespace::new("dedup-blocked");
    let uri = svc.get("MONGODB_URI");
    let db = ns.mongo_db();
    let docs = mongodb::Client::with_uri_str(uri)
        .await
        .unwrap()
        .database(&db)
        .collection::<Document>("documents");
    let h = sha(b"same");
    docs.insert_many([
        doc! { "_id": "d1", "user_id": "u1", "metadata": { "file_hash": &h } },
        doc! { "_id": "d2", "user_id": "u1", "metadata": { "file_hash": &h } },
        doc! { "_id": "d3", "user_id": "u2", "metadata": { "file_hash": &h } },
    ])
    .await
    .unwrap();
    let dir = tempdir();
    let d = Daemon::start(env(uri, &db, dir.path(), &[]), dir).await;
    readyz_index(&d, "missing").await;
    drop(d);

    let dir = tempdir();
    let d = Daemon::start(
        env(
            uri,
            &db,
            dir.path(),
            &[("JANITOR_DEDUP_CREATE_INDEX", "true")],
        ),
        dir,
    )
    .await;
    let blocked = readyz_index(&d, "blocked").await;
    assert_eq!(
        blocked["duplicates"],
        json!([{ "user_id": "u1", "sha256": h, "document_ids": ["d1", "d2"] }])
    );
    let (s, r) = post_json(
        &d,
        "/api/dedup/register",
        json!({ "user_id": "u2", "sha256": sha(b"n"), "document_id": "d3" }),
    )
    .await;
    assert_eq!(s, 503, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not be race-free"),
        "{r}"
    );
    assert!(
        d.output()
            .contains("duplicate hash blocks the dedup unique index")
    );
}

#[tokio::test]
async fn scan_groups_identical_content_per_owner() {
    let svc: &Services = require_services!();
    let ns = Namespace::new("dedup-scan");
    let s3 = s3_client(
        svc.get("S3_ENDPOINT"),
        svc.get("AWS_ACCESS_KEY_ID"),
        svc.get("AWS_SECRET_ACCESS_KEY"),
    );
    let bucket = svc.get("S3_BUCKET");
    let p = ns.s3_prefix();
    for (key, body) in [
        ("uploads/u1/a.pdf", "same content"),
        ("uploads/u1/b.pdf", "same content"),
        ("uploads/u2/c.pdf", "same content"),
        ("uploads/u1/d.pdf", "SAME CONTENT"), // same size, other content
        ("uploads/u1/e.pdf", "unique"),
    ] {
        s3.put_object()
            .bucket(bucket)
            .key(format!("{p}{key}"))
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }
    let base: Vec<(String, String)> = [
        "S3_ENDPOINT",
        "S3_BUCKET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
    ]
    .iter()
    .map(|k| (k.to_string(), svc.get(k).to_string()))
    .collect();
    let scan = |extra: Option<(&str, &str)>| {
        let mut env = base.clone();
        env.extend(extra.map(|(k, v)| (k.to_string(), v.to_string())));
        let dir = tempdir();
        let status = janitor(&env, &dir)
            .args(["dedup", "scan", "--prefix", &p, "--json"])
            .status()
            .unwrap();
        let out = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
        assert!(status.success(), "{out}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let size = "same content".len() as u64;
    let per_user = scan(Some(("JANITOR_DEDUP_OWNER_SEGMENT", "2")));
    assert_eq!(per_user["objects"], 5);
    assert_eq!(
        per_user["hashed_objects"], 3,
        "only same-size objects of one owner are hashed"
    );
    assert_eq!(
        per_user["groups"],
        json!([{ "owner": "u1", "sha256": sha(b"same content"), "size": size,
                 "keys": [format!("{p}uploads/u1/a.pdf"), format!("{p}uploads/u1/b.pdf")] }])
    );
    assert_eq!(per_user["reclaimable_bytes"], size);
    let bucket_wide = scan(None);
    assert_eq!(
        bucket_wide["groups"][0]["keys"].as_array().unwrap().len(),
        3
    );
    assert_eq!(bucket_wide["reclaimable_bytes"], 2 * size);
}
