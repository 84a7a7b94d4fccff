//! Every variable the daemon reads, with its default and its documentation.
//!
//! One table drives the defaults layer, the unknown-`JANITOR_*` check with its "did you
//! mean", `janitor config show`, `envs/.env.example` and the README's configuration table (a
//! test keeps the last two in sync with it), so a variable cannot exist in one place only.

/// One configuration variable.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    /// The name, as in `.env` and the process environment (TOML keys may be lowercase).
    pub name: &'static str,
    /// The default, as text; empty means unset (an optional value, or a disabled backend).
    pub default: &'static str,
    /// Whether the value is a secret: masked everywhere it is shown.
    pub secret: bool,
    /// What it does, one line.
    pub doc: &'static str,
}

const fn var(name: &'static str, default: &'static str, doc: &'static str) -> Var {
    Var {
        name,
        default,
        secret: false,
        doc,
    }
}

const fn secret(name: &'static str, doc: &'static str) -> Var {
    Var {
        name,
        default: "",
        secret: true,
        doc,
    }
}

/// `JANITOR_*` names that belong to the test tooling (scripts/services.sh, the test suite),
/// not to the daemon: ignored rather than reported as unknown, since CI exports them.
pub const TOOLING: &[&str] = &[
    "JANITOR_REQUIRE_SERVICES",
    "JANITOR_SERVICES_DIR",
    "JANITOR_SERVICES_ENV",
    "JANITOR_CACHE_DIR",
];

/// Accepted as another name for a variable: (alias, canonical).
pub const ALIASES: &[(&str, &str)] = &[("MINIO_ENDPOINT", "S3_ENDPOINT")];

/// Every variable, grouped as in `envs/.env.example`.
pub const VARS: &[Var] = &[
    // retention (seed 003)
    var(
        "REDIS_CACHE_TTL_HOURS",
        "1",
        "Age of a cache key before it is expired (hours, fractions allowed).",
    ),
    var(
        "RAG_SESSION_TTL_HOURS",
        "24",
        "Age of a Qdrant point before it is deleted (hours).",
    ),
    var(
        "FILES_TTL_DAYS",
        "7",
        "Age of an unreferenced S3 object before it is deleted (days, e.g. 0.5).",
    ),
    // loop intervals (seed 003)
    var(
        "REDIS_CLEANUP_INTERVAL_SECONDS",
        "3600",
        "Interval of the Redis sweep timer (each firing queues a cleanup task).",
    ),
    var(
        "QDRANT_CLEANUP_INTERVAL_SECONDS",
        "21600",
        "Interval of the Qdrant sweep timer (each firing queues a cleanup task).",
    ),
    var(
        "MINIO_CLEANUP_INTERVAL_SECONDS",
        "86400",
        "Interval of the S3 sweep timer (each firing queues a cleanup task).",
    ),
    var(
        "RESOURCE_MONITORING_INTERVAL_SECONDS",
        "1800",
        "Interval of the monitoring loop (measures usage, feeds the queue).",
    ),
    // usage thresholds (seed 003)
    var(
        "CLEANUP_THRESHOLD_CRITICAL",
        "0.9",
        "Usage fraction from which a resource is CRITICAL (<= 1).",
    ),
    var(
        "CLEANUP_THRESHOLD_HIGH",
        "0.75",
        "Usage fraction from which a resource is HIGH.",
    ),
    var(
        "CLEANUP_THRESHOLD_MEDIUM",
        "0.5",
        "Usage fraction from which a resource is MEDIUM.",
    ),
    // budgets (seed 003)
    var(
        "MAX_REDIS_MEMORY_MB",
        "256",
        "Redis memory budget (used_memory), MiB.",
    ),
    var(
        "MAX_QDRANT_POINTS",
        "100000",
        "Qdrant points budget, all collections together.",
    ),
    var(
        "MAX_MINIO_STORAGE_GB",
        "50",
        "S3 bucket budget, GiB (measured by listing).",
    ),
    var(
        "MAX_MONGODB_STORAGE_MB",
        "",
        "MongoDB budget (the documents collection's data size), MiB; empty: measured without usage or priority.",
    ),
    // connections: a backend without its URL is disabled
    var(
        "REDIS_URL",
        "",
        "redis://[user:password@]host:port/db or rediss:// for TLS; empty disables Redis.",
    ),
    var(
        "REDIS_TLS_CA_FILE",
        "",
        "PEM CA certificate(s) a rediss:// server is verified against; default the system's roots.",
    ),
    var(
        "REDIS_TLS_CERT_FILE",
        "",
        "PEM client certificate for rediss:// servers that require one (with REDIS_TLS_KEY_FILE).",
    ),
    var(
        "REDIS_TLS_KEY_FILE",
        "",
        "PEM private key of REDIS_TLS_CERT_FILE.",
    ),
    var(
        "QDRANT_URL",
        "",
        "Qdrant gRPC URL, e.g. http://127.0.0.1:6334; empty disables Qdrant.",
    ),
    secret(
        "QDRANT_API_KEY",
        "Qdrant API key, if the server requires one.",
    ),
    var(
        "S3_ENDPOINT",
        "",
        "S3 endpoint URL (alias MINIO_ENDPOINT); empty disables S3.",
    ),
    var(
        "S3_BUCKET",
        "",
        "The bucket the application stores its files in.",
    ),
    var("AWS_ACCESS_KEY_ID", "", "S3 access key id."),
    secret("AWS_SECRET_ACCESS_KEY", "S3 secret key."),
    var("AWS_REGION", "us-east-1", "S3 region (Garage: garage)."),
    var(
        "MONGODB_URI",
        "",
        "MongoDB URI (the reference source); empty disables MongoDB and every sweep that needs it.",
    ),
    var(
        "MONGODB_DATABASE",
        "rag",
        "Database holding the application's documents.",
    ),
    // safety
    var(
        "JANITOR_DRY_RUN",
        "false",
        "Plan only: every sweep stops after its plan.",
    ),
    var(
        "JANITOR_MAX_DELETE_FRACTION",
        "0.25",
        "A plan deleting more than this fraction of a store is not applied (aborted_cap).",
    ),
    var(
        "JANITOR_MAX_DELETE_COUNT",
        "100000",
        "A plan deleting more items than this is not applied (aborted_cap).",
    ),
    var(
        "JANITOR_ALLOW_SHORT_TTL",
        "false",
        "Allow TTLs below the floors (Redis 1 min, Qdrant 10 min, S3 1 h).",
    ),
    var(
        "JANITOR_REDIS_PRESSURE_TTL_HOURS",
        "",
        "TTL used by HIGH/CRITICAL Redis tasks; default half of REDIS_CACHE_TTL_HOURS.",
    ),
    var(
        "JANITOR_QDRANT_PRESSURE_TTL_HOURS",
        "",
        "TTL used by HIGH/CRITICAL Qdrant tasks; default half of RAG_SESSION_TTL_HOURS.",
    ),
    var(
        "JANITOR_S3_PRESSURE_TTL_DAYS",
        "",
        "TTL used by HIGH/CRITICAL S3 tasks; default half of FILES_TTL_DAYS.",
    ),
    var(
        "JANITOR_AUDIT_LOG",
        "janitor-audit.jsonl",
        "Append-only JSONL audit log, written ahead: an intent before each batch, its outcome after.",
    ),
    // Redis sweeper
    var(
        "JANITOR_REDIS_POLICIES",
        "",
        "Policies per key pattern: pattern=expire|delete_idle|delete[:duration];... Default doc_segments:*=expire at REDIS_CACHE_TTL_HOURS.",
    ),
    var(
        "JANITOR_REDIS_PROTECT",
        "",
        "Key patterns (Redis globs, comma-separated) never touched, whatever matches.",
    ),
    var(
        "JANITOR_REDIS_SCAN_COUNT",
        "1000",
        "SCAN COUNT hint: keys examined per batch.",
    ),
    var(
        "JANITOR_REDIS_TYPE",
        "",
        "Only sweep keys of this type (SCAN TYPE: string, list, set, zset, hash, stream).",
    ),
    var(
        "JANITOR_REDIS_MAX_OPS_PER_SEC",
        "50000",
        "Most Redis commands per second a sweep sends to each server (a cluster's primaries are swept at once; 0: unpaced).",
    ),
    var(
        "JANITOR_REDIS_BATCH_PAUSE_MS",
        "2",
        "Pause between SCAN batches, milliseconds, so the application's latency stays low.",
    ),
    // S3 sweeper
    var(
        "JANITOR_S3_PREFIXES",
        "",
        "Prefixes to sweep, comma-separated (default: the whole bucket). A trailing / is added: uploads/u1 means uploads/u1/, never uploads/u10/.",
    ),
    var(
        "JANITOR_S3_PROTECT",
        "",
        "Prefixes never touched, comma-separated (normalised like JANITOR_S3_PREFIXES).",
    ),
    var(
        "JANITOR_S3_GRACE_HOURS",
        "1",
        "Objects younger than this are never deleted, whatever the TTL (in-flight uploads).",
    ),
    var(
        "JANITOR_S3_REF_COLLECTION",
        "documents",
        "MongoDB collection whose documents reference objects.",
    ),
    var(
        "JANITOR_S3_REF_FIELDS",
        "minio_key",
        "Fields holding an object key, comma-separated (e.g. minio_key,minio_path).",
    ),
    var(
        "JANITOR_S3_MEASURE_CACHE_SECONDS",
        "900",
        "The monitor reuses a whole-bucket listing (its own or the sweep's) this long; 0 lists every cycle.",
    ),
    var(
        "JANITOR_DOCUMENTS_EXPIRE",
        "false",
        "Expire the application's documents with their file, vectors and cache keys (opt-in).",
    ),
    var(
        "JANITOR_DOCUMENTS_TTL_DAYS",
        "",
        "Age of a document before it expires (days, by its created field); default FILES_TTL_DAYS.",
    ),
    var(
        "JANITOR_DOCUMENTS_INTERVAL_SECONDS",
        "86400",
        "Interval of the document expiry timer.",
    ),
    var(
        "JANITOR_DOCUMENTS_COLLECTION",
        "",
        "MongoDB collection of the documents; default JANITOR_S3_REF_COLLECTION.",
    ),
    var(
        "JANITOR_DOCUMENTS_KEY_FIELDS",
        "",
        "Fields holding a document's object key(s), comma-separated; default JANITOR_S3_REF_FIELDS.",
    ),
    var(
        "JANITOR_DOCUMENTS_CREATED_FIELD",
        "created_at",
        "Field holding a document's creation time (a Date, or epoch seconds or milliseconds).",
    ),
    var(
        "JANITOR_DOCUMENTS_STATUS_FIELD",
        "status",
        "Field holding a document's processing status.",
    ),
    var(
        "JANITOR_DOCUMENTS_FINAL_STATUSES",
        "ready,failed",
        "Statuses a document may expire in, comma-separated (others are in flight).",
    ),
    var(
        "JANITOR_DOCUMENTS_SESSIONS_COLLECTION",
        "chat_sessions",
        "Collection of chat sessions that hold documents.",
    ),
    var(
        "JANITOR_DOCUMENTS_SESSION_FIELD",
        "attached_file_ids",
        "Session field listing the ids of the documents it holds (ObjectId or string).",
    ),
    var(
        "JANITOR_DOCUMENTS_SESSION_ACTIVITY_FIELD",
        "updated_at",
        "Session field holding its last activity (a Date).",
    ),
    var(
        "JANITOR_DOCUMENTS_ACTIVITY_WINDOW_DAYS",
        "",
        "A session active within this many days keeps its documents; default the documents TTL.",
    ),
    var(
        "JANITOR_DOCUMENTS_QDRANT_FIELD",
        "document_id",
        "Payload field holding a point's document id (the document's id as a string).",
    ),
    var(
        "JANITOR_DOCUMENTS_REDIS_KEYS",
        "doc_segments:{document_id}*",
        "Redis key templates of a document's cache keys, comma-separated; each has a fixed prefix before {document_id}.",
    ),
    var(
        "JANITOR_DOCUMENTS_BATCH_SIZE",
        "1000",
        "Documents per batch of the cascade (one audit record, one request per step per store); memory grows with it.",
    ),
    var(
        "JANITOR_DOCUMENTS_RECONCILE",
        "true",
        "Each document pass also counts drift: points and cache keys whose document is gone, ready documents without vectors.",
    ),
    var(
        "JANITOR_DOCUMENTS_VECTOR_STATUSES",
        "ready",
        "Statuses of documents that should have vectors (drift: documents without any), comma-separated.",
    ),
    var(
        "JANITOR_DOCUMENTS_MARK_FIELD",
        "",
        "Field set to the time on a document before its cascade starts (the app can hide it); empty: no mark.",
    ),
    var(
        "JANITOR_S3_ALLOW_EMPTY_REFERENCES",
        "false",
        "Sweep even when the reference collection is empty or missing (otherwise refused as misconfiguration).",
    ),
    var(
        "JANITOR_S3_RECHECK_AFTER_SECONDS",
        "30",
        "References are checked again just before a delete batch once the run's first check is older than this (0: before every batch).",
    ),
    var(
        "JANITOR_S3_MAX_INFLIGHT",
        "8",
        "Most DeleteObjects requests in flight on the bucket, the S3 sweep and the document cascade together; each run's adaptive concurrency starts at 1, doubles while answers are clean, halves on a throttle (1 to 64).",
    ),
    var(
        "JANITOR_S3_LIST_PARALLELISM",
        "4",
        "Sub-prefixes (under the delimiter /) listed at once; the pages still come in key order (1: one sorted listing).",
    ),
    var(
        "JANITOR_S3_MAX_RPS",
        "0",
        "Most DeleteObjects requests a second (0: no cap).",
    ),
    // Qdrant sweeper
    var(
        "JANITOR_QDRANT_COLLECTIONS",
        "",
        "Collections to sweep, comma-separated, each optionally with its own TTL (sessions=48h); default all.",
    ),
    var(
        "JANITOR_QDRANT_TIMESTAMP_FIELD",
        "created_at",
        "Payload field holding a point's creation time.",
    ),
    var(
        "JANITOR_QDRANT_TIMESTAMP_FORMAT",
        "auto",
        "auto (from the payload index type and the values), unix_seconds, unix_millis or rfc3339.",
    ),
    var(
        "JANITOR_QDRANT_CREATE_INDEX",
        "false",
        "Create the timestamp payload index when it is missing (and wait for it).",
    ),
    var(
        "JANITOR_QDRANT_UNINDEXED_MAX_POINTS",
        "10000",
        "Largest collection swept without a timestamp index (a filtered scroll scans it all); bigger ones are refused.",
    ),
    var(
        "JANITOR_QDRANT_BATCH_SIZE",
        "10000",
        "Points per batch: expired points per time window, or ids per batch with JANITOR_QDRANT_AUDIT_IDS.",
    ),
    var(
        "JANITOR_QDRANT_AUDIT_IDS",
        "false",
        "true: list and audit every expired point's id (slower); false: delete by time windows, audited as collection, range and count.",
    ),
    var(
        "JANITOR_QDRANT_BATCH_PAUSE_MS",
        "10",
        "Pause between delete batches, milliseconds, so the application's writes keep flowing.",
    ),
    var(
        "JANITOR_QDRANT_ORPHAN_FIELD",
        "",
        "Payload field holding the point's document id: points whose document is gone from MongoDB are deleted (empty: no orphan pass).",
    ),
    var(
        "JANITOR_QDRANT_ORPHAN_COLLECTION",
        "documents",
        "MongoDB collection of the documents points belong to.",
    ),
    var(
        "JANITOR_QDRANT_ORPHAN_REF_FIELD",
        "_id",
        "Document field matched against the payload's document id (an _id matches ObjectIds given as hex too).",
    ),
    var(
        "JANITOR_QDRANT_ORPHAN_GRACE_HOURS",
        "1",
        "Points younger than this are never orphan-deleted (their document may not be written yet).",
    ),
    // dedup index
    var(
        "JANITOR_DEDUP_MAX_BYTES",
        "5368709120",
        "Largest file POST /api/dedup/check hashes (bytes); larger bodies get 413 unread.",
    ),
    var(
        "JANITOR_DEDUP_COLLECTION",
        "documents",
        "MongoDB collection holding the hashes (the documents, or a dedup collection of its own).",
    ),
    var(
        "JANITOR_DEDUP_USER_FIELD",
        "user_id",
        "Field holding the user id.",
    ),
    var(
        "JANITOR_DEDUP_HASH_FIELD",
        "metadata.file_hash",
        "Field holding the SHA-256 (hex).",
    ),
    var(
        "JANITOR_DEDUP_INDEX_NAME",
        "dedup_user_file_hash",
        "Name of the unique index on (user field, hash field).",
    ),
    var(
        "JANITOR_DEDUP_REGISTER",
        "document",
        "document: register sets the hash on the document (by _id); insert: it inserts a record {user, hash, document_id, object_key}.",
    ),
    var(
        "JANITOR_DEDUP_CREATE_INDEX",
        "false",
        "Create the unique index at startup (duplicates that block it are reported).",
    ),
    var(
        "JANITOR_DEDUP_OWNER_SEGMENT",
        "",
        "For `janitor dedup scan`: the path segment of an object key naming its owner (1 for uploads/<user>/...); empty: per bucket.",
    ),
    var(
        "JANITOR_DEDUP_SCAN_CONCURRENCY",
        "8",
        "Objects `janitor dedup scan` downloads and hashes at once.",
    ),
    // history and reports (seed 002)
    var(
        "JANITOR_HISTORY_PATH",
        "",
        "SQLite file keeping runs, measurements and alerts across restarts; empty: history.sqlite next to the audit log.",
    ),
    var(
        "JANITOR_HISTORY_DAYS",
        "30",
        "Days of runs and measurements kept in the history.",
    ),
    var(
        "JANITOR_HISTORY_MAX_MB",
        "256",
        "Largest history file; past it the oldest runs are dropped first.",
    ),
    var(
        "JANITOR_REPORT_HOUR",
        "2",
        "Hour of day (0-23, in JANITOR_TIMEZONE) the daily report is written and sent (seed 002: 2 AM).",
    ),
    var(
        "JANITOR_REPORT_DIR",
        "",
        "Where daily reports are written as JSON and Markdown; empty: reports/ next to the audit log.",
    ),
    var(
        "JANITOR_TIMEZONE",
        "UTC",
        "IANA time zone of the report hour, e.g. Europe/Madrid.",
    ),
    // alerts (seeds 001 and 002)
    secret(
        "JANITOR_ALERT_WEBHOOK_URL",
        "Slack-compatible webhook for alerts (CRITICAL usage, capped or failed-closed runs, failing workers); empty: log only.",
    ),
    var(
        "JANITOR_ALERT_COOLDOWN_SECONDS",
        "300",
        "Least time between two alerts with the same key (resource and kind).",
    ),
    var(
        "JANITOR_ALERT_WORKER_FAILURES",
        "3",
        "Failures in a row after which a worker is alerted on.",
    ),
    // several replicas, one sweeper
    var(
        "JANITOR_LEADER_ELECTION",
        "false",
        "Elect one sweeping replica through a lease in Redis; the others serve the API on standby.",
    ),
    var(
        "JANITOR_LEADER_KEY",
        "janitor:leader",
        "Redis key holding the leader lease.",
    ),
    var(
        "JANITOR_LEADER_LEASE_SECONDS",
        "30",
        "Lease length; renewed every third of it. A dead leader is replaced within it.",
    ),
    var(
        "JANITOR_INSTANCE_ID",
        "",
        "This replica's name in the lease and in logs; default hostname:pid.",
    ),
    // scheduling
    var(
        "JANITOR_QUEUE_CAPACITY",
        "64",
        "Most cleanup tasks the priority queue holds.",
    ),
    var(
        "JANITOR_QUEUE_TASKS_PER_CYCLE",
        "5",
        "Timer and monitor tasks started per monitoring cycle (CRITICAL and API tasks are not held back).",
    ),
    var(
        "JANITOR_JITTER_FRACTION",
        "0.1",
        "Random extra delay on loop intervals, as a fraction of the interval.",
    ),
    var(
        "JANITOR_BACKOFF_MAX_SECONDS",
        "300",
        "Cap of a failing worker's exponential backoff.",
    ),
    var(
        "JANITOR_BACKEND_TIMEOUT_SECONDS",
        "10",
        "Timeout of one backend request (connect, ping, measure).",
    ),
    // admin API
    var(
        "JANITOR_ADMIN_ADDR",
        "127.0.0.1:8089",
        "Address of the admin HTTP API.",
    ),
    secret(
        "JANITOR_ADMIN_TOKEN",
        "Bearer token for the admin API; without one the mutating endpoints answer 403.",
    ),
    var(
        "JANITOR_ADMIN_TOKEN_FILE",
        "",
        "File holding the admin token (instead of JANITOR_ADMIN_TOKEN).",
    ),
    var(
        "JANITOR_CLEANUP_RATE_LIMIT_PER_MINUTE",
        "6",
        "POST /api/resources/cleanup calls allowed per minute.",
    ),
    // process
    var(
        "JANITOR_LOG_FORMAT",
        "auto",
        "auto (JSON unless stdout is a terminal), json or text; RUST_LOG sets levels.",
    ),
    var(
        "JANITOR_SHUTDOWN_TIMEOUT",
        "10",
        "Seconds a SIGTERM waits for workers to finish their batch.",
    ),
];

/// The variable called `name` (canonical names only).
pub fn lookup(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}

/// The known `JANITOR_*` name closest to an unknown one, if any is reasonably close.
pub fn closest(unknown: &str) -> Option<&'static str> {
    VARS.iter()
        .filter(|v| v.name.starts_with("JANITOR_"))
        .map(|v| (strsim::damerau_levenshtein(unknown, v.name), v.name))
        .filter(|(d, _)| *d <= unknown.len().max(8) / 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// `envs/.env.example`: every variable with its documentation and default.
pub fn render_env_example() -> String {
    let mut out = String::from(
        "# resource-janitor configuration: every variable, with its default.\n\
         # Generated from src/config/vars.rs (a test keeps the two in sync).\n\
         # Precedence: defaults < --config TOML < this file (--env-file) < process environment.\n",
    );
    for v in VARS {
        out.push_str(&format!("\n# {}\n", v.doc));
        if v.default.is_empty() {
            out.push_str(&format!("# {}=\n", v.name));
        } else {
            out.push_str(&format!("{}={}\n", v.name, v.default));
        }
    }
    out
}

/// The README's configuration table (Markdown).
pub fn render_markdown_table() -> String {
    let mut out = String::from("| Variable | Default | Description |\n|---|---|---|\n");
    for v in VARS {
        let default = if v.default.is_empty() {
            "(unset)".to_string()
        } else {
            format!("`{}`", v.default)
        };
        let secret = if v.secret {
            " Secret: never shown."
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{}` | {} | {}{} |\n",
            v.name,
            default,
            v.doc.replace('|', "\\|"),
            secret
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compares a generated file with the committed one; `UPDATE_GENERATED=1` rewrites it.
    fn check_generated(path: &str, expected: &str) {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if std::env::var_os("UPDATE_GENERATED").is_some() {
            std::fs::write(&full, expected).unwrap();
        }
        let actual = std::fs::read_to_string(&full).unwrap_or_default();
        assert!(
            actual == expected,
            "{path} is out of date: run UPDATE_GENERATED=1 cargo test --lib generated"
        );
    }

    #[test]
    fn generated_env_example_is_current() {
        check_generated("envs/.env.example", &render_env_example());
    }

    #[test]
    fn generated_readme_table_is_current() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let (start, end) = ("<!-- config-table:start -->\n", "<!-- config-table:end -->");
        let from = readme
            .find(start)
            .expect("README has the config table markers")
            + start.len();
        let to = readme
            .find(end)
            .expect("README has the config table end marker");
        let expected = format!(
            "{}{}{}",
            &readme[..from],
            render_markdown_table(),
            &readme[to..]
        );
        check_generated("README.md", &expected);
    }

    #[test]
    fn names_are_unique_and_uppercase() {
        let mut names: Vec<_> = VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARS.len());
        assert!(VARS.iter().all(|v| v.name == v.name.to_ascii_uppercase()));
    }

    #[test]
    fn closest_suggests_typos_only() {
        assert_eq!(closest("JANITOR_DRYRUN"), Some("JANITOR_DRY_RUN"));
        assert_eq!(closest("JANITOR_ADMIN_TOKN"), Some("JANITOR_ADMIN_TOKEN"));
        assert_eq!(closest("JANITOR_SOMETHING_ELSE_ENTIRELY"), None);
    }
}
