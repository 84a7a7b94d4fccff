//! The fanned-out bucket listing against Garage: whatever the parallelism, the same keys in
//! the same order as the single sorted listing.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use resource_janitor::backend::s3::S3;

use crate::require_services;
use crate::smoke::s3_client;
use crate::support::{self, Namespace, Services};

/// Every key `s3` lists under `prefix`, in the order its pages came.
async fn keys(s3: &S3, prefix: &str) -> Vec<String> {
    let mut pages = s3.list_pages(prefix);
    let mut keys = Vec::new();
    loop {
        match pages.recv().await.expect("the listing says when it ends") {
            Ok(Some(page)) => keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            ),
            Ok(None) => return keys,
            Err(e) => panic!("{prefix}: {e}"),
        }
    }
}

#[tokio::test]
async fn parallel_listing_is_the_single_sorted_listing() {
    let svc: &Services = require_services!();
    let ns = Namespace::new("s3-list");
    let root = format!("{}tree", ns.s3_prefix());
    let bucket = svc.get("S3_BUCKET");
    let client = s3_client(
        svc.get("S3_ENDPOINT"),
        svc.get("AWS_ACCESS_KEY_ID"),
        svc.get("AWS_SECRET_ACCESS_KEY"),
    );
    // objects beside and between sub-prefixes ("a.txt" < "a/…" < "a0"), an empty segment,
    // non-ASCII, nesting, a sub-prefix of two pages and a level of two delimiter pages
    let mut layout: Vec<String> = [
        "a.txt", "a/1", "a/2", "a0", "b", "b/x/1", "b/y/2", "c/", "/x", "ünï/1", "z",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    layout.extend((0..1_200).map(|i| format!("big/k{i:05}")));
    layout.extend((0..1_050).map(|i| format!("top{i:05}")));
    layout.extend((0..60).map(|i| format!("p{i:02}/only")));
    futures::stream::iter(&layout)
        .map(|k| {
            let client = &client;
            let key = format!("{root}/{k}");
            async move {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from_static(b"x"))
                    .send()
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let mut expected: Vec<String> = layout.iter().map(|k| format!("{root}/{k}")).collect();
    expected.sort();

    let dir = tempfile::tempdir().unwrap();
    let settings = support::settings(
        &[
            ("S3_ENDPOINT", svc.get("S3_ENDPOINT")),
            ("S3_BUCKET", bucket),
            ("AWS_ACCESS_KEY_ID", svc.get("AWS_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY", svc.get("AWS_SECRET_ACCESS_KEY")),
            ("AWS_REGION", "garage"),
        ],
        &dir.path().join("a.jsonl"),
        &[],
    );
    let conn = settings.s3.as_ref().unwrap();
    for n in [1, 2, 4, 16] {
        let s3 = S3::connect(conn, Duration::from_secs(10)).with_list_parallelism(n);
        // `root` without its slash: the lone sub-prefix `root/` is gone down into
        assert_eq!(keys(&s3, &root).await, expected, "parallelism {n}");
        let under_b: Vec<&String> = expected
            .iter()
            .filter(|k| k.starts_with(&format!("{root}/b")))
            .collect();
        let listed = keys(&s3, &format!("{root}/b")).await;
        assert_eq!(
            listed.iter().collect::<Vec<_>>(),
            under_b,
            "parallelism {n}"
        );
    }
}
