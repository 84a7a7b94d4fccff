//! The deployment files, checked against the daemon itself. No Docker engine or cluster
//! runs here, so the compose file, the Kubernetes manifests, the Dockerfile, the systemd
//! unit, the Prometheus rules and the Grafana dashboard are parsed: every variable they set
//! must be one the daemon knows, every port must match the config defaults and the service
//! URLs, and every metric the daemon exports must be on the dashboard (and nothing there
//! or in the rules may name a metric that does not exist). `promtool` and
//! `systemd-analyze` check the rules and the unit's sandbox when they are installed (CI
//! installs them; with JANITOR_REQUIRE_SERVICES=1 their absence fails).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use resource_janitor::config::vars;
use resource_janitor::resource::Resource;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Whether the daemon reads `name` (its table, an alias, or RUST_LOG).
fn known(name: &str) -> bool {
    name == "RUST_LOG"
        || vars::lookup(name).is_some()
        || vars::ALIASES.iter().any(|(alias, _)| *alias == name)
}

fn unknown<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    names.into_iter().filter(|n| !known(n)).collect()
}

/// The variables an env file sets.
fn env_file(rel: &str) -> Vec<(String, String)> {
    dotenvy::from_path_iter(root().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .map(|r| r.unwrap())
        .collect()
}

/// The port of the admin API's default address.
fn default_admin_port() -> u16 {
    let addr = vars::lookup("JANITOR_ADMIN_ADDR").unwrap().default;
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// `scheme://host:port/...` → (host, port).
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let authority = authority.rsplit('@').next().unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

fn str_of(y: &Yaml) -> String {
    match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// The container-side port of a compose port mapping (`127.0.0.1:8089:8089` → 8089).
fn container_port(mapping: &Yaml) -> u16 {
    str_of(mapping).rsplit(':').next().unwrap().parse().unwrap()
}

const URL_VARS: [(&str, &str); 4] = [
    ("REDIS_URL", "redis"),
    ("QDRANT_URL", "qdrant"),
    ("S3_ENDPOINT", "minio"),
    ("MONGODB_URI", "mongodb"),
];

#[test]
fn compose_sets_only_known_variables_and_matching_ports() {
    let doc = &yaml("deploy/compose.yaml")[0];
    let janitor = &doc["services"]["janitor"];
    let environment = janitor["environment"].as_hash().expect("environment map");
    let mut names: Vec<String> = environment.keys().map(str_of).collect();
    let mut production = Vec::new();
    for entry in janitor["env_file"].as_vec().unwrap() {
        let path = match entry {
            Yaml::String(p) => p.clone(),
            other => str_of(&other["path"]),
        };
        let rel = Path::new("deploy").join(&path);
        if root().join(&rel).exists() {
            let vars = env_file(rel.to_str().unwrap());
            names.extend(vars.iter().map(|(k, _)| k.clone()));
            production.extend(vars);
        } else {
            assert_eq!(entry["required"], Yaml::Boolean(false), "{path} is missing");
        }
    }
    assert!(!production.is_empty(), "production.env is read");
    assert_eq!(
        unknown(names.iter().map(String::as_str)),
        Vec::<&str>::new()
    );

    let admin = default_admin_port();
    let ports: Vec<u16> = janitor["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(container_port)
        .collect();
    assert_eq!(ports, [admin]);
    let get = |k: &str| {
        production
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(
        host_port(&format!("http://{}", get("JANITOR_ADMIN_ADDR"))).1,
        admin
    );
    // each backend URL names a compose service that publishes that port
    for (var, service) in URL_VARS {
        let (host, port) = host_port(&get(var));
        assert_eq!(host, service, "{var}");
        let svc = &doc["services"][service];
        assert!(!svc.is_badvalue(), "no service {service}");
        let published: Vec<u16> = svc["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(container_port)
            .collect();
        assert!(
            published.contains(&port),
            "{service} does not expose {port} ({var})"
        );
        assert!(
            !svc["healthcheck"].is_badvalue(),
            "{service} has no health check"
        );
        let depends = &janitor["depends_on"][service];
        assert!(
            !depends.is_badvalue(),
            "the janitor does not wait for {service}"
        );
    }
    // hardened: read-only root, no capabilities, the state volume at the audit log's dir
    assert_eq!(janitor["read_only"], Yaml::Boolean(true));
    assert_eq!(str_of(&janitor["cap_drop"][0]), "ALL");
    let audit = get("JANITOR_AUDIT_LOG");
    let volume = str_of(&janitor["volumes"][0]);
    let mount = volume.split(':').nth(1).unwrap();
    assert!(
        audit.starts_with(&format!("{mount}/")),
        "{audit} not under {mount}"
    );
    assert_eq!(
        str_of(&janitor["healthcheck"]["test"][1]),
        "/usr/local/bin/janitor"
    );
    assert_eq!(str_of(&janitor["healthcheck"]["test"][2]), "health");
}

#[test]
fn kubernetes_sidecar_sets_only_known_variables_with_probes_and_a_secret_token() {
    let config = &yaml("deploy/k8s/configmap.yaml")[0];
    let data = config["data"].as_hash().unwrap();
    let cm: Vec<String> = data.keys().map(str_of).collect();
    assert_eq!(unknown(cm.iter().map(String::as_str)), Vec::<&str>::new());
    let get = |k: &str| str_of(&config["data"][k]);
    // the configuration the ConfigMap holds is a valid one
    let sources = resource_janitor::config::Sources {
        environment: data
            .iter()
            .map(|(k, v)| (str_of(k), str_of(v)))
            .chain([
                ("AWS_ACCESS_KEY_ID".into(), "janitor".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "x".into()),
            ])
            .collect(),
        ..Default::default()
    };
    let settings = resource_janitor::config::load(&sources).expect("the ConfigMap is valid");
    assert!(settings.leader.enabled);

    let deployment = &yaml("deploy/k8s/deployment.yaml")[0];
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .unwrap();
    let janitor = containers
        .iter()
        .find(|c| c["name"] == Yaml::String("janitor".into()))
        .expect("a janitor sidecar");
    assert!(containers.len() >= 2, "the janitor runs beside the app");
    let env = janitor["env"].as_vec().unwrap();
    let names: Vec<String> = env.iter().map(|e| str_of(&e["name"])).collect();
    assert_eq!(
        unknown(names.iter().map(String::as_str)),
        Vec::<&str>::new()
    );
    let token = env
        .iter()
        .find(|e| e["name"] == Yaml::String("JANITOR_ADMIN_TOKEN".into()))
        .expect("the admin token is set");
    assert!(
        !token["valueFrom"]["secretKeyRef"]["name"].is_badvalue(),
        "the token comes from a Secret"
    );
    assert_eq!(
        str_of(&janitor["envFrom"][0]["configMapRef"]["name"]),
        str_of(&config["metadata"]["name"])
    );
    let admin = default_admin_port();
    assert_eq!(
        host_port(&format!("http://{}", get("JANITOR_ADMIN_ADDR"))).1,
        admin
    );
    assert_eq!(
        janitor["ports"][0]["containerPort"],
        Yaml::Integer(admin.into())
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let p = &janitor[probe]["httpGet"];
        assert_eq!(str_of(&p["path"]), path, "{probe}");
        assert_eq!(p["port"], Yaml::Integer(admin.into()), "{probe}");
    }
    let security = &janitor["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], Yaml::Boolean(true));
    assert_eq!(security["allowPrivilegeEscalation"], Yaml::Boolean(false));
    let mount = str_of(&janitor["volumeMounts"][0]["mountPath"]);
    assert!(get("JANITOR_AUDIT_LOG").starts_with(&format!("{mount}/")));
    for (var, _) in URL_VARS {
        host_port(&get(var));
    }
}

#[test]
fn dockerfile_runs_as_non_root_with_a_healthcheck_and_known_variables() {
    let text = read("deploy/Dockerfile");
    assert!(text.matches("\nFROM ").count() >= 2, "multi-stage");
    assert!(text.contains("\nUSER 65532"), "non-root");
    assert!(text.contains("HEALTHCHECK"), "health check");
    assert!(text.contains(r#"CMD ["/usr/local/bin/janitor", "health"]"#));
    let admin = default_admin_port();
    assert!(text.contains(&format!("EXPOSE {admin}")));
    // ENV A=1 \ B=2: every name known
    let env_block: String = text
        .split("\nENV ")
        .skip(1)
        .map(|b| {
            b.split("\n#")
                .next()
                .unwrap()
                .split("\nVOLUME")
                .next()
                .unwrap()
        })
        .collect::<Vec<_>>()
        .join(" ");
    let names: Vec<&str> = env_block
        .split_whitespace()
        .filter_map(|t| t.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(names.contains(&"JANITOR_AUDIT_LOG"));
    assert_eq!(unknown(names), Vec::<&str>::new());
}

/// Every metric family the daemon registers (names as exposed, with `_total` on counters).
/// A labelled family is only exposed once it has a series, so one of each is recorded.
fn exported_metrics() -> BTreeSet<String> {
    use resource_janitor::resource::CollectionStats;
    use resource_janitor::resource::{Priority, Usage};
    use resource_janitor::runs::Outcome;
    use resource_janitor::worker::WorkerStatus;
    let m = resource_janitor::metrics::Metrics::new();
    let usage = Usage {
        total_items: 1,
        size_bytes: Some(1),
        usage_fraction: Some(0.5),
        oldest_age_hours: Some(1.0),
        ..Usage::default()
    };
    m.record_usage(Resource::Redis, &usage, Priority::Medium);
    m.record_measure_error(Resource::Redis);
    m.record_run(Resource::Redis, Outcome::Succeeded, 1, 1, 0.1);
    m.record_emergency(Resource::Redis);
    m.set_leader(true);
    m.set_queue(1, 1);
    m.record_queue_dropped(1);
    m.record_workers(&[WorkerStatus::new("redis")]);
    m.record_redis_pattern("cache:*", 1, Some(1));
    m.record_dangling_references(1);
    m.record_qdrant_collections(&[CollectionStats {
        name: "c".into(),
        points: 1,
        segments: 1,
        indexed_vectors: 1,
        timestamp_indexed: true,
        oldest_age: Some(std::time::Duration::from_secs(1)),
        vector_bytes: Some(16),
    }]);
    m.record_dedup(1, true);
    let mut drift = resource_janitor::drift::Drift::default();
    drift.orphan_points.add(1, ["doc".to_string()]);
    m.record_drift(&drift);
    let text = m.encode();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            }
        })
        .collect()
}

/// The `janitor_*` metric names an expression text mentions (histogram series reduced to
/// their family).
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("janitor_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(name.to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_shows_every_exported_metric_and_rules_name_only_real_ones() {
    let exported = exported_metrics();
    // one series recorded above per registered family: none forgotten
    let registered = read("src/metrics.rs").matches("r.register(").count();
    assert_eq!(exported.len(), registered, "{exported:?}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/janitor.json")).unwrap();
    let exprs: String = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let on_dashboard = mentioned(&exprs);
    let missing: Vec<_> = exported.difference(&on_dashboard).collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
    let bogus: Vec<_> = on_dashboard.difference(&exported).collect();
    assert!(
        bogus.is_empty(),
        "dashboard names unknown metrics: {bogus:?}"
    );
    let rules = mentioned(&read("deploy/prometheus/alerts.yml"));
    let bogus: Vec<_> = rules.difference(&exported).collect();
    assert!(bogus.is_empty(), "rules name unknown metrics: {bogus:?}");
    for needed in [
        "janitor_resource_priority",
        "janitor_runs_total",
        "janitor_emergency_cleanups_total",
    ] {
        assert!(rules.contains(needed), "no rule on {needed}");
    }
}

/// Runs a checker, or skips when it is not installed (fails instead in CI).
fn tool(program: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => Some(out),
        Err(e) => {
            let required = std::env::var("JANITOR_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "{program}: {e} (CI installs it: scripts/services.sh install)"
            );
            eprintln!("skipped: {program} not installed ({e})");
            None
        }
    }
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests() {
    for args in [
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["test", "rules", "deploy/prometheus/alerts.test.yml"],
    ] {
        let Some(out) = tool("promtool", &args) else {
            return;
        };
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn systemd_unit_exposure_is_at_most_2() {
    let unit = read("systemd/janitor.service");
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "EnvironmentFile=/etc/janitor/janitor.env",
        "StateDirectory=janitor",
        "DynamicUser=yes",
        "CapabilityBoundingSet=\n",
        "MemoryMax=",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}");
    }
    let audit = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=JANITOR_AUDIT_LOG="))
        .expect("the audit log is set");
    assert!(
        audit.starts_with("/var/lib/janitor/"),
        "{audit}: in the StateDirectory"
    );
    let names: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|kv| kv.split_once('=').unwrap().0)
        .collect();
    assert_eq!(unknown(names), Vec::<&str>::new());
    // --threshold=20: exit status 1 above an exposure of 2.0
    let args = [
        "security",
        "--offline=yes",
        "--threshold=20",
        "systemd/janitor.service",
    ];
    let Some(out) = tool("systemd-analyze", &args) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .to_string();
    assert!(out.status.success(), "{overall}\n{text}");
    eprintln!("{}", overall.trim());
}
