//! Private server instances for tests that stop, restart or re-clock a server.
//!
//! Each [`Server`] owns its port and data directory, is stopped when dropped, and can be
//! stopped and started again on the same port with its data kept (the "server died
//! mid-pass" cases). Binaries come from the services env file (`TEST_*_BIN`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Services;

/// A free loopback port (the listener is dropped at once; a race is possible but rare).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// What a private server needs to be (re)started.
struct Spec {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
}

/// A private server process. Stopped (SIGKILL) when dropped.
pub struct Server {
    spec: Spec,
    child: Option<Child>,
    /// The port clients use.
    pub port: u16,
    /// Holds the data directory; removed when the server is dropped.
    pub dir: tempfile::TempDir,
    /// Extra facts a test needs (credentials, clock file).
    pub info: std::collections::HashMap<&'static str, String>,
}

impl Server {
    fn launch(spec: Spec, port: u16, dir: tempfile::TempDir) -> Server {
        let mut server = Server {
            spec,
            child: None,
            port,
            dir,
            info: Default::default(),
        };
        server.start();
        server
    }

    /// Starts (again) on the same port and data directory; waits until it accepts TCP.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.spec.name);
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let child = Command::new(&self.spec.program)
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.spec.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + self.spec.ready_timeout;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} not ready on port {} (log {})",
                self.spec.name,
                self.port,
                self.dir.path().join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL: a crash, not a clean stop) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("janitor-{name}-"))
        .tempdir()
        .expect("tempdir")
}

/// A private redis-server; `extra` adds config flags (e.g. `--maxmemory-policy allkeys-lfu`).
pub fn redis(svc: &Services, extra: &[&str]) -> Server {
    redis_on(svc, free_port(), extra)
}

fn redis_on(svc: &Services, port: u16, extra: &[&str]) -> Server {
    let dir = tempdir("redis");
    let mut args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.path().display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let spec = Spec {
        name: "redis-server",
        program: svc.get("TEST_REDIS_SERVER_BIN").into(),
        args,
        env: vec![],
        ready_timeout: Duration::from_secs(10),
    };
    Server::launch(spec, port, dir)
}

/// A private Redis Cluster of `n` primaries without replicas, slots spread by
/// `redis-cli --cluster create`; returns once every node says `cluster_state:ok`.
pub fn redis_cluster(svc: &Services, n: usize) -> Vec<Server> {
    let flags = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
    ];
    // a cluster node also listens on its port + 10000 (the bus), so the port must be below
    // 55536; the kernel hands out ports up to 60999
    let port = || loop {
        let p = free_port();
        if p < 55_000 {
            break p;
        }
    };
    let nodes: Vec<Server> = (0..n).map(|_| redis_on(svc, port(), &flags)).collect();
    let cli = Path::new(svc.get("TEST_REDIS_SERVER_BIN")).with_file_name("redis-cli");
    let addrs: Vec<String> = nodes
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let out = Command::new(&cli)
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", cli.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        loop {
            let info = Command::new(&cli)
                .args(["-p", &node.port.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster not ok on {}", node.port);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}

/// A private secantusd-rs (MongoDB wire protocol); URI in `info["uri"]`.
pub fn mongo(svc: &Services) -> Server {
    let port = free_port();
    let dir = tempdir("mongo");
    let spec = Spec {
        name: "secantusd-rs",
        program: svc.get("TEST_SECANTUSD_BIN").into(),
        args: vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
            "--storage-path".into(),
            dir.path().join("db").display().to_string(),
            "--cache-size".into(),
            "128M".into(),
            "--log-level".into(),
            "WARNING".into(),
        ],
        env: vec![],
        ready_timeout: Duration::from_secs(30),
    };
    let mut server = Server::launch(spec, port, dir);
    server.info.insert(
        "uri",
        format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
    );
    server
}

/// A private Qdrant test server (Qdrant's engine), optionally requiring an API key.
pub fn qdrant(svc: &Services, api_key: Option<&str>) -> Server {
    let port = free_port();
    let dir = tempdir("qdrant");
    let mut args = vec![
        svc.get("TEST_QDRANT_SERVER").to_string(),
        "--port".into(),
        port.to_string(),
        "--storage-path".into(),
        dir.path().join("storage").display().to_string(),
    ];
    if let Some(key) = api_key {
        args.extend(["--api-key".into(), key.to_string()]);
    }
    let spec = Spec {
        name: "qdrant test server",
        program: svc.get("TEST_QDRANT_PYTHON").into(),
        args,
        env: vec![],
        ready_timeout: Duration::from_secs(60),
    };
    let mut server = Server::launch(spec, port, dir);
    server
        .info
        .insert("url", format!("http://127.0.0.1:{port}"));
    server
}

/// A private single-node Garage with bucket `janitor-test`, running under libfaketime so
/// that [`set_clock`] can give new objects an old LastModified.
/// `info` holds `endpoint`, `access_key`, `secret_key`, `bucket`, `clock_file`.
pub fn garage_with_clock(svc: &Services) -> Server {
    let (s3, rpc, admin) = (free_port(), free_port(), free_port());
    let dir = tempdir("garage");
    let d = dir.path().display().to_string();
    let config = format!(
        "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
         replication_factor = 1\nmetadata_fsync = false\ndata_fsync = false\n\
         rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_secret = \"{}\"\n[s3_api]\ns3_region = \"garage\"\n\
         api_bind_addr = \"127.0.0.1:{s3}\"\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n\
         admin_token = \"{}\"\n",
        hex::encode(rand_bytes(32)),
        hex::encode(rand_bytes(16)),
    );
    let config_path = dir.path().join("garage.toml");
    std::fs::write(&config_path, config).expect("garage.toml");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let clock = dir.path().join("faketime");
    std::fs::write(&clock, "+0\n").unwrap();
    let access = format!("GK{}", hex::encode(rand_bytes(12)));
    let secret = hex::encode(rand_bytes(32));
    let spec = Spec {
        name: "garage",
        program: svc.get("TEST_GARAGE_BIN").into(),
        args: vec![
            "-c".into(),
            config_path.display().to_string(),
            "server".into(),
            "--single-node".into(),
            "--default-bucket".into(),
        ],
        env: vec![
            ("LD_PRELOAD".into(), svc.get("TEST_LIBFAKETIME").into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                clock.display().to_string(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("GARAGE_DEFAULT_ACCESS_KEY".into(), access.clone()),
            ("GARAGE_DEFAULT_SECRET_KEY".into(), secret.clone()),
            ("GARAGE_DEFAULT_BUCKET".into(), "janitor-test".into()),
            ("RUST_LOG".into(), "warn".into()),
        ],
        ready_timeout: Duration::from_secs(30),
    };
    let mut server = Server::launch(spec, s3, dir);
    // the S3 port opens before the default bucket and key exist: wait for the admin health
    wait_http_ok(&format!("127.0.0.1:{admin}"), "/health");
    server
        .info
        .insert("endpoint", format!("http://127.0.0.1:{s3}"));
    server.info.insert("access_key", access);
    server.info.insert("secret_key", secret);
    server.info.insert("bucket", "janitor-test".into());
    server
        .info
        .insert("clock_file", clock.display().to_string());
    server
}

/// Shifts a [`garage_with_clock`] server's clock, e.g. `"-8d"` or `"+0"`.
pub fn set_clock(server: &Server, offset: &str) {
    std::fs::write(&server.info["clock_file"], format!("{offset}\n")).expect("clock file");
}

fn rand_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|_| fastrand::u8(..)).collect()
}

/// Polls a plain-HTTP GET until it answers 200.
fn wait_http_ok(addr: &str, path: &str) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            let mut buf = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut buf).is_ok()
                && buf.split_whitespace().nth(1) == Some("200")
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{addr}{path} never answered 200");
        std::thread::sleep(Duration::from_millis(100));
    }
}
