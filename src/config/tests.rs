//! Every validation case of the configuration.

use std::io::Write;
use std::time::Duration;

use super::*;
use crate::resource::Resource;

fn env(pairs: &[(&str, &str)]) -> Sources {
    Sources {
        environment: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Sources::default()
    }
}

fn err(pairs: &[(&str, &str)]) -> String {
    load(&env(pairs)).unwrap_err().to_string()
}

#[test]
fn defaults_are_the_seeds() {
    let s = load(&env(&[])).unwrap();
    assert_eq!(s.retention.ttl(Resource::Redis), Duration::from_secs(3600));
    assert_eq!(
        s.retention.ttl(Resource::Qdrant),
        Duration::from_secs(86_400)
    );
    assert_eq!(
        s.retention.ttl(Resource::S3),
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(
        s.sweep_interval(Resource::Qdrant),
        Some(Duration::from_secs(21_600))
    );
    assert_eq!(s.intervals.monitoring, Duration::from_secs(1800));
    assert_eq!(
        (
            s.thresholds.medium,
            s.thresholds.high,
            s.thresholds.critical
        ),
        (0.5, 0.75, 0.9)
    );
    assert_eq!(s.budgets.redis_memory_bytes, 256 << 20);
    assert_eq!(s.budgets.s3_bytes, 50 << 30);
    assert!(s.redis.is_none() && s.qdrant.is_none() && s.s3.is_none() && s.mongo.is_none());
    assert_eq!(s.admin.addr.to_string(), "127.0.0.1:8089");
    assert!(s.admin.token.is_none());
    assert_eq!(s.safety.max_delete_fraction, 0.25);
    assert_eq!(s.shutdown_timeout, Duration::from_secs(10));
    // pressure TTLs default to half, never below the floor
    assert_eq!(
        s.retention.pressure_ttl(Resource::Redis),
        Duration::from_secs(1800)
    );
    assert_eq!(
        s.retention.pressure_ttl(Resource::S3),
        Duration::from_secs(302_400)
    );
}

#[test]
fn fractional_ttls_are_accepted() {
    let s = load(&env(&[
        ("FILES_TTL_DAYS", "0.5"),
        ("REDIS_CACHE_TTL_HOURS", "0.5"),
    ]))
    .unwrap();
    assert_eq!(s.retention.ttl(Resource::S3), Duration::from_secs(43_200));
    assert_eq!(s.retention.ttl(Resource::Redis), Duration::from_secs(1800));
}

#[test]
fn blanks_empty_prefixes_and_broken_urls_are_errors_not_defaults() {
    // each of these used to pass and mean something else: no token, the whole bucket, a
    // failure only at connect (exit 1, not 78)
    for (name, value) in [
        ("JANITOR_ADMIN_TOKEN", "                    "),
        ("JANITOR_ADMIN_TOKEN_FILE", "  "),
        ("JANITOR_S3_PREFIXES", ",,"),
        ("JANITOR_S3_PREFIXES", " , "),
        ("JANITOR_S3_PREFIXES", "/"),
        ("JANITOR_S3_PROTECT", "uploads/,/"),
        ("REDIS_URL", "redis://127.0.0.1:99999"),
        ("REDIS_URL", "redis://127.0.0.1:6379/abc"),
        ("REDIS_URL", "   "),
        ("QDRANT_URL", "http://:6334"),
        ("S3_ENDPOINT", "http://127.0.0.1:70000"),
    ] {
        let msg = err(&[(name, value)]);
        assert!(
            msg.starts_with(&format!("{name}=")),
            "{name}={value:?}: {msg}"
        );
        assert!(msg.contains(": expected "), "{msg}");
    }
    // what they should be still loads
    let ok = load(&env(&[
        ("JANITOR_S3_PREFIXES", "uploads/u1, tmp/"),
        ("REDIS_URL", "redis://127.0.0.1:6379/3"),
        ("MONGODB_URI", "mongodb://a:27017,b:27017/?replicaSet=rs0"),
    ]));
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn bad_numbers_name_variable_value_and_expectation() {
    for (name, value) in [
        ("REDIS_CACHE_TTL_HOURS", "0"),
        ("REDIS_CACHE_TTL_HOURS", "-1"),
        ("RAG_SESSION_TTL_HOURS", "abc"),
        ("FILES_TTL_DAYS", "NaN"),
        ("REDIS_CLEANUP_INTERVAL_SECONDS", "0"),
        ("RESOURCE_MONITORING_INTERVAL_SECONDS", "inf"),
        ("MAX_QDRANT_POINTS", "1.5"),
        ("MAX_REDIS_MEMORY_MB", "lots"),
        ("JANITOR_MAX_DELETE_FRACTION", "1.5"),
        ("JANITOR_MAX_DELETE_COUNT", "0"),
        ("JANITOR_DRY_RUN", "maybe"),
        ("JANITOR_ADMIN_ADDR", "localhost"),
        ("JANITOR_LOG_FORMAT", "xml"),
        ("JANITOR_JITTER_FRACTION", "2"),
        ("JANITOR_SHUTDOWN_TIMEOUT", "soon"),
        ("JANITOR_AUDIT_LOG", "/dev/full"),
        ("JANITOR_AUDIT_LOG", "/tmp"),
    ] {
        let msg = err(&[(name, value)]);
        assert!(
            msg.starts_with(&format!("{name}={value:?}: expected ")),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}

#[test]
fn thresholds_must_be_ordered() {
    let msg = err(&[("CLEANUP_THRESHOLD_HIGH", "0.4")]);
    assert!(
        msg.contains("CLEANUP_THRESHOLD_HIGH=\"0.4\"") && msg.contains("MEDIUM"),
        "{msg}"
    );
    let msg = err(&[("CLEANUP_THRESHOLD_CRITICAL", "0.75")]);
    assert!(msg.contains("CLEANUP_THRESHOLD_CRITICAL"), "{msg}");
    let msg = err(&[("CLEANUP_THRESHOLD_CRITICAL", "1.2")]);
    assert!(msg.contains("at most 1"), "{msg}");
    assert!(load(&env(&[("CLEANUP_THRESHOLD_CRITICAL", "1")])).is_ok());
}

#[test]
fn ttl_floors_hold_unless_allowed() {
    let msg = err(&[("REDIS_CACHE_TTL_HOURS", "0.01")]);
    assert!(msg.contains("safety floor"), "{msg}");
    let msg = err(&[("FILES_TTL_DAYS", "0.01")]);
    assert!(
        msg.contains("FILES_TTL_DAYS") && msg.contains("1h"),
        "{msg}"
    );
    let msg = err(&[("JANITOR_QDRANT_PRESSURE_TTL_HOURS", "0.1")]);
    assert!(msg.contains("JANITOR_QDRANT_PRESSURE_TTL_HOURS"), "{msg}");
    let msg = err(&[("JANITOR_REDIS_PRESSURE_TTL_HOURS", "2")]);
    assert!(msg.contains("at most REDIS_CACHE_TTL_HOURS"), "{msg}");
    let s = load(&env(&[
        ("FILES_TTL_DAYS", "0.01"),
        ("JANITOR_ALLOW_SHORT_TTL", "true"),
    ]))
    .unwrap();
    assert_eq!(
        s.retention.ttl(Resource::S3),
        Duration::from_secs_f64(864.0)
    );
}

#[test]
fn unknown_janitor_variables_are_errors_with_a_suggestion() {
    let msg = err(&[("JANITOR_DRYRUN", "true")]);
    assert_eq!(
        msg,
        "unknown variable JANITOR_DRYRUN (did you mean JANITOR_DRY_RUN?)"
    );
    let msg = err(&[("JANITOR_FROBNICATE_EVERYTHING_NOW", "1")]);
    assert_eq!(msg, "unknown variable JANITOR_FROBNICATE_EVERYTHING_NOW");
    // other variables of the environment are none of our business, nor the test tooling's
    assert!(
        load(&env(&[
            ("PATH", "/bin"),
            ("APP_SETTING", "x"),
            ("JANITOR_REQUIRE_SERVICES", "1")
        ]))
        .is_ok()
    );
}

#[test]
fn backends_without_url_are_disabled_and_bad_urls_rejected() {
    let s = load(&env(&[("REDIS_URL", "redis://:pw@127.0.0.1:6379/3")])).unwrap();
    assert_eq!(
        s.redis.unwrap().url.expose(),
        "redis://:pw@127.0.0.1:6379/3"
    );
    let msg = err(&[("REDIS_URL", "http://u:secretpw@h")]);
    assert!(
        msg.starts_with("REDIS_URL=") && !msg.contains("secretpw"),
        "{msg}"
    );
    let msg = err(&[("S3_ENDPOINT", "http://127.0.0.1:3900")]);
    assert!(msg.starts_with("S3_BUCKET="), "{msg}");
    let msg = err(&[("MONGODB_URI", "postgres://x")]);
    assert!(msg.starts_with("MONGODB_URI="), "{msg}");
}

#[test]
fn minio_endpoint_is_an_alias() {
    let s = load(&env(&[
        ("MINIO_ENDPOINT", "http://minio:9000"),
        ("S3_BUCKET", "b"),
        ("AWS_ACCESS_KEY_ID", "k"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
    ]))
    .unwrap();
    assert_eq!(s.s3.unwrap().endpoint, "http://minio:9000");
}

#[test]
fn layers_override_in_order_defaults_toml_env_file_environment() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("janitor.toml");
    std::fs::write(
        &toml,
        "redis_cache_ttl_hours = 2\nRAG_SESSION_TTL_HOURS = 48\nFILES_TTL_DAYS = 3\n",
    )
    .unwrap();
    let dotenv = dir.path().join(".env");
    let mut f = std::fs::File::create(&dotenv).unwrap();
    writeln!(
        f,
        "RAG_SESSION_TTL_HOURS=72\nFILES_TTL_DAYS=4\nOTHER_APP_VAR=1"
    )
    .unwrap();
    let sources = Sources {
        toml: Some(toml),
        env_file: Some(dotenv),
        environment: vec![("FILES_TTL_DAYS".into(), "5".into())],
    };
    let s = load(&sources).unwrap();
    assert_eq!(
        s.retention.ttl(Resource::Redis),
        Duration::from_secs(2 * 3600)
    ); // toml
    assert_eq!(
        s.retention.ttl(Resource::Qdrant),
        Duration::from_secs(72 * 3600)
    ); // .env
    assert_eq!(
        s.retention.ttl(Resource::S3),
        Duration::from_secs(5 * 86_400)
    ); // process
}

#[test]
fn toml_keys_must_be_known_and_files_must_parse() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "redis_cache_tll_hours = 2\n").unwrap();
    let e = load(&Sources {
        toml: Some(toml.clone()),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown variable REDIS_CACHE_TLL_HOURS"),
        "{e}"
    );
    std::fs::write(&toml, "this is = = not toml").unwrap();
    let e = load(&Sources {
        toml: Some(toml),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(matches!(e, ConfigError::File { .. }), "{e}");
    let e = load(&Sources {
        env_file: Some(dir.path().join("missing.env")),
        ..Sources::default()
    })
    .unwrap_err();
    assert!(matches!(e, ConfigError::File { .. }), "{e}");
}

#[test]
fn admin_token_from_value_or_file_and_never_shown() {
    let msg = err(&[("JANITOR_ADMIN_TOKEN", "short")]);
    assert!(msg.starts_with("JANITOR_ADMIN_TOKEN=\"****\""), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
    let s = load(&env(&[(
        "JANITOR_ADMIN_TOKEN_FILE",
        file.to_str().unwrap(),
    )]))
    .unwrap();
    assert_eq!(
        s.admin.token.as_ref().unwrap().expose(),
        "0123456789abcdef0123"
    );
    let shown = serde_json::to_string(&s).unwrap();
    assert!(!shown.contains("0123456789abcdef0123"));
    let msg = err(&[("JANITOR_ADMIN_TOKEN_FILE", "/nonexistent/token")]);
    assert!(msg.starts_with("JANITOR_ADMIN_TOKEN_FILE="), "{msg}");
}

#[test]
fn secrets_are_masked_in_the_settings_dump() {
    let s = load(&env(&[
        ("REDIS_URL", "redis://app:redispw@h:6379/0"),
        ("MONGODB_URI", "mongodb://app:mongopw@h:27017/"),
        ("QDRANT_URL", "http://h:6334"),
        ("QDRANT_API_KEY", "qdrantkey"),
        ("S3_ENDPOINT", "http://h:9000"),
        ("S3_BUCKET", "b"),
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "awssecret"),
        ("JANITOR_ADMIN_TOKEN", "admintoken-admintoken"),
    ]))
    .unwrap();
    let dump = format!("{} {s:?}", serde_json::to_string(&s).unwrap());
    for secret in [
        "qdrantkey",
        "awssecret",
        "admintoken-admintoken",
        "mongopw",
        "redispw",
    ] {
        assert!(!dump.contains(secret), "{secret} leaked");
    }
    assert!(dump.contains("redis://app:****@h:6379/0"));
}

#[test]
fn every_profile_in_envs_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("envs");
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "profile-test-token-0123456789").unwrap();
    for name in [
        "high-rotation.env",
        "long-term.env",
        "development.env",
        "production.env",
        ".env.example",
    ] {
        let sources = Sources {
            env_file: Some(dir.join(name)),
            // production reads its token from a secrets file and needs S3 credentials
            environment: vec![
                (
                    "JANITOR_ADMIN_TOKEN_FILE".into(),
                    token.path().display().to_string(),
                ),
                ("AWS_ACCESS_KEY_ID".into(), "k".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "s".into()),
            ],
            ..Sources::default()
        };
        let settings = load(&sources).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            settings.retention.ttl(Resource::Redis) >= Duration::from_secs(60),
            "{name}"
        );
    }
    let dev = load(&Sources {
        env_file: Some(dir.join("development.env")),
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(
        dev.retention.ttl(Resource::Redis),
        Duration::from_secs(1800)
    );
    assert!(dev.safety.dry_run);
}

#[test]
fn s3_prefixes_are_normalised_on_segments() {
    let s = load(&env(&[
        ("JANITOR_S3_PREFIXES", "uploads/u1, tmp/ ,/lead"),
        ("JANITOR_S3_PROTECT", "uploads/u1/keep"),
    ]))
    .unwrap();
    assert_eq!(s.s3_sweep.prefixes, ["uploads/u1/", "tmp/", "lead/"]);
    assert_eq!(s.s3_sweep.protect, ["uploads/u1/keep/"]);
    assert_eq!(s.s3_sweep.ref_fields, ["minio_key"]);
    let s = load(&env(&[("JANITOR_S3_REF_FIELDS", "minio_key,minio_path")])).unwrap();
    assert_eq!(s.s3_sweep.ref_fields, ["minio_key", "minio_path"]);
    assert!(err(&[("JANITOR_S3_REF_FIELDS", "$where")]).starts_with("JANITOR_S3_REF_FIELDS="));
    assert!(err(&[("JANITOR_S3_GRACE_HOURS", "0.1")]).contains("safety floor"));
}

#[test]
fn qdrant_collections_with_their_own_ttls() {
    let s = load(&env(&[(
        "JANITOR_QDRANT_COLLECTIONS",
        "sessions=48h, chunks ,archive=7days",
    )]))
    .unwrap();
    let q = &s.qdrant_sweep;
    assert_eq!(q.ttl_of("sessions"), Some(Duration::from_secs(48 * 3600)));
    assert_eq!(q.ttl_of("chunks"), None);
    assert_eq!(q.ttl_of("archive"), Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(q.timestamp_field, "created_at");
    assert_eq!(q.timestamp_format, TimestampFormat::Auto);
    assert_eq!((q.batch_size, q.unindexed_max_points), (10_000, 10_000));
    assert!(q.orphan_field.is_none() && !q.create_index);
    for (var, bad, expected) in [
        ("JANITOR_QDRANT_COLLECTIONS", "a=1m", "at least 10m"),
        ("JANITOR_QDRANT_COLLECTIONS", "a,a", "distinct"),
        ("JANITOR_QDRANT_TIMESTAMP_FORMAT", "iso", "rfc3339"),
        ("JANITOR_QDRANT_BATCH_SIZE", "0", "greater than 0"),
        ("JANITOR_QDRANT_BATCH_SIZE", "1000000", "1 to 100000"),
        ("JANITOR_DOCUMENTS_BATCH_SIZE", "0", "greater than 0"),
        ("JANITOR_DOCUMENTS_BATCH_SIZE", "20000", "1 to 10000"),
        ("JANITOR_QDRANT_ORPHAN_GRACE_HOURS", "0.5", "safety floor"),
        ("JANITOR_QDRANT_TIMESTAMP_FIELD", "$where", "field name"),
    ] {
        let e = err(&[(var, bad)]);
        assert!(
            e.starts_with(&format!("{var}=")) && e.contains(expected),
            "{e}"
        );
    }
    let short = load(&env(&[
        ("JANITOR_ALLOW_SHORT_TTL", "true"),
        ("JANITOR_QDRANT_COLLECTIONS", "a=1m"),
    ]))
    .unwrap();
    assert_eq!(
        short.qdrant_sweep.ttl_of("a"),
        Some(Duration::from_secs(60))
    );
}
