//! `rediss://`: the Redis sweeper over TLS against a private redis-server with a TLS port,
//! a test CA made with openssl, and client certificates required (mutual TLS). A server the
//! janitor cannot verify, or one that refuses its missing client certificate, gets nothing
//! deleted and a clear error.

use std::path::Path;
use std::process::Command;

use resource_janitor::app::Janitor;
use resource_janitor::resource::Resource;
use resource_janitor::runs::{Outcome, RunRecord};

use crate::require_services;
use crate::support::process::{self, free_port};
use crate::support::{self, fill_redis};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=janitor test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for name in ["server", "client"] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                &crt,
            ],
        );
    }
}

async fn sweep(pairs: &[(String, String)], audit: &Path) -> RunRecord {
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let settings = support::settings(&pairs, audit, &[]);
    let state = Janitor::new(settings).await.unwrap();
    support::run_once(&state, support::cli_request(Resource::Redis, false))
        .await
        .record
}

#[tokio::test]
async fn sweeps_over_mutual_tls_and_fails_on_an_unverified_server() {
    let svc = require_services!();
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |n: &str| certs.path().join(n).display().to_string();
    let tls_port = free_port().to_string();
    let server = process::redis(
        svc,
        &[
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &file("server.crt"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.crt"),
            "--tls-auth-clients",
            "yes",
        ],
    );
    let plain = format!("redis://127.0.0.1:{}/0", server.port);
    fill_redis(&plain, "tmp:", 30).await;
    fill_redis(&plain, "keep:", 90).await;
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    let audit = server.dir.path().join("audit.jsonl");
    let (ca, cert, key) = (file("ca.crt"), file("client.crt"), file("client.key"));
    let base = [
        ("REDIS_URL", url.as_str()),
        ("JANITOR_REDIS_POLICIES", "tmp:*=delete"),
        ("JANITOR_BACKEND_TIMEOUT_SECONDS", "3"),
    ];
    let (ca, cert, key) = (ca.as_str(), cert.as_str(), key.as_str());
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        base.iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };

    // the system's roots do not know the test CA: the handshake fails, nothing is deleted
    let r = sweep(
        &with(&[("REDIS_TLS_CERT_FILE", cert), ("REDIS_TLS_KEY_FILE", key)]),
        &audit,
    )
    .await;
    assert_eq!((r.outcome, r.deleted), (Outcome::Failed, 0), "{r:?}");
    let message = r.message.unwrap_or_default();
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // verified, but no client certificate: the server refuses, nothing is deleted
    let r = sweep(&with(&[("REDIS_TLS_CA_FILE", ca)]), &audit).await;
    assert_eq!((r.outcome, r.deleted), (Outcome::Failed, 0), "{r:?}");

    // CA and client certificate: the sweep runs over TLS
    let r = sweep(
        &with(&[
            ("REDIS_TLS_CA_FILE", ca),
            ("REDIS_TLS_CERT_FILE", cert),
            ("REDIS_TLS_KEY_FILE", key),
        ]),
        &audit,
    )
    .await;
    assert_eq!((r.outcome, r.deleted), (Outcome::Succeeded, 30), "{r:?}");
    let mut con = crate::support::redis_con(plain.as_str()).await;
    let left: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(left, 90);
}

#[test]
fn tls_files_need_rediss_and_come_in_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("x.pem");
    std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let pem = pem.display().to_string();
    let load = |pairs: &[(&str, &str)]| {
        let sources = resource_janitor::config::Sources {
            environment: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        resource_janitor::config::load(&sources)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let err = load(&[
        ("REDIS_URL", "redis://h:6379/0"),
        ("REDIS_TLS_CA_FILE", &pem),
    ])
    .unwrap_err();
    assert!(err.starts_with("REDIS_TLS_CA_FILE="), "{err}");
    let err = load(&[
        ("REDIS_URL", "rediss://h:6379/0"),
        ("REDIS_TLS_CERT_FILE", &pem),
    ])
    .unwrap_err();
    assert!(err.starts_with("REDIS_TLS_KEY_FILE="), "{err}");
    let err = load(&[
        ("REDIS_URL", "rediss://h:6379/0"),
        ("REDIS_TLS_CA_FILE", "/nope.pem"),
    ])
    .unwrap_err();
    assert!(err.contains("a readable PEM file"), "{err}");
    load(&[
        ("REDIS_URL", "rediss://h:6379/0"),
        ("REDIS_TLS_CA_FILE", &pem),
    ])
    .unwrap();
}
