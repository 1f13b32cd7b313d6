//! Test support: throwaway `redis-server` processes.
//!
//! Each [`RedisServer`] is its own process on a free loopback port, with no
//! persistence, stopped by its own pid when dropped. Tests never touch a
//! shared Redis (in particular not the one on 127.0.0.1:6379).
//!
//! Use from an integration test with `mod support;`.
#![allow(dead_code)] // each test crate uses a different part

pub mod chaos;
pub mod proxy;
pub mod sentinel;

use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The binary to run: `$REDIS_SERVER`, or `redis-server` on the PATH.
fn binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

/// How long a fresh server has to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(10);
/// Attempts at a fresh port before giving up.
const PORT_ATTEMPTS: usize = 8;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A `redis-server` child process bound to 127.0.0.1 on its own port.
///
/// ```ignore
/// let server = RedisServer::start();
/// let l2 = RedisL2::builder(server.url(), "test").connect().await?;
/// server.pause();   // SIGSTOP: calls now time out
/// server.resume();  // SIGCONT
/// server.kill();    // SIGKILL: calls now fail
/// server.restart(); // same port, empty
/// ```
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// The TLS port, for a server from [`RedisServer::start_tls`].
    tls_port: Option<u16>,
    /// More arguments of redis-server, kept for restarts.
    extra: Vec<String>,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is not installed, or no server came up after
    /// several ports.
    pub fn start() -> RedisServer {
        Self::start_with(false, &[])
    }

    /// A server started with these further arguments of redis-server.
    pub fn start_with_args(extra: &[&str]) -> RedisServer {
        Self::start_with(false, extra)
    }

    /// Starts a server that also listens for TLS on a second free port,
    /// with a self-signed certificate for 127.0.0.1 made by `openssl` for
    /// this server ([`tls_url`](RedisServer::tls_url)).
    ///
    /// # Panics
    /// As [`start`](RedisServer::start), and when `openssl` is not
    /// installed or redis-server was built without TLS.
    pub fn start_tls() -> RedisServer {
        Self::start_with(true, &[])
    }

    fn start_with(tls: bool, extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        check_installed();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("cache-suite-redis-{}-{id}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a directory for redis-server");
        if tls {
            make_certificate(&dir);
        }
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let tls_port = tls.then(free_port);
            match spawn_ready(port, tls_port, &extra, &dir) {
                Ok(child) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        tls_port,
                        extra,
                        dir,
                    }
                }
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!(
            "could not start redis-server after {PORT_ATTEMPTS} ports:\n{}",
            failures.join("\n")
        );
    }

    /// `redis://127.0.0.1:<port>/0`, with the password of a server started
    /// with `--requirepass` (`redis://:<password>@127.0.0.1:<port>/0`).
    pub fn url(&self) -> String {
        match password_of(&self.extra) {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// `rediss://127.0.0.1:<tls port>/0#insecure`: TLS, without checking the
    /// self-signed certificate.
    ///
    /// # Panics
    /// For a server from [`start`](RedisServer::start).
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("a server from RedisServer::start_tls");
        format!("rediss://127.0.0.1:{port}/0#insecure")
    }

    /// The TLS port of a server from [`start_tls`](RedisServer::start_tls).
    ///
    /// # Panics
    /// For a server from [`start`](RedisServer::start).
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("a server from RedisServer::start_tls")
    }

    /// The port, kept across [`restart`](RedisServer::restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid of the running process, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A client for raw commands (writing garbage, counting keys).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a loopback URL parses")
    }

    /// A blocking connection for raw commands.
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to the test redis-server")
    }

    /// SIGKILL, and waits for the process. Calls then fail; the port stays
    /// reserved for [`restart`](RedisServer::restart) only by convention.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's kill sends SIGKILL, which also ends a stopped process.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process holds its connections but answers nothing.
    /// Returns once the process is stopped (a signal lands asynchronously).
    ///
    /// # Panics
    /// When the server is not running, or not stopped within 5 seconds.
    pub fn pause(&self) {
        self.signal("-STOP");
        let pid = self.pid().expect("the test redis-server is not running");
        for _ in 0..500 {
            if process_state(pid) == "T" {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server {pid} did not stop after SIGSTOP");
    }

    /// SIGCONT after [`pause`](RedisServer::pause).
    ///
    /// # Panics
    /// When the server is not running.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server if it runs, and starts an empty one on the same
    /// port; returns once it answers PING.
    ///
    /// # Panics
    /// When the port cannot be bound again within a few seconds.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match spawn_ready(self.port, self.tls_port, &self.extra, &self.dir) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(why) if Instant::now() >= deadline => {
                    panic!(
                        "could not restart redis-server on port {}: {why}",
                        self.port
                    )
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the test redis-server is not running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed: {status}");
    }
}

/// A Redis Cluster of redis-servers on loopback ports, made with
/// `redis-cli --cluster create`; each node stops with it.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `primaries` nodes, no replicas: starts them, joins them, and waits
    /// until the cluster is up.
    ///
    /// # Panics
    /// When `redis-cli` is missing or the cluster does not come up within
    /// 30 seconds.
    pub fn start(primaries: usize) -> RedisCluster {
        RedisCluster::start_with_replicas(primaries, 0)
    }

    /// `primaries` nodes with `replicas` replicas each; returns once the
    /// cluster is up and every replica is in step with its primary.
    ///
    /// # Panics
    /// As [`start`](RedisCluster::start).
    pub fn start_with_replicas(primaries: usize, replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| {
                RedisServer::start_with_args(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        // Under `timeout`: a create that never finishes fails the test.
        let mut create = Command::new("timeout");
        create.args(["60", "redis-cli", "--cluster", "create"]);
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli (it comes with redis-server: apt-get install redis-server)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_settled(|_| true);
        cluster
    }

    /// Waits until every node that runs and `include` takes sees the
    /// cluster up, and every replica among them is in step with its
    /// primary.
    ///
    /// # Panics
    /// When that takes more than 30 seconds.
    pub fn wait_settled(&self, include: impl Fn(usize) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (n, node) in self.nodes.iter().enumerate() {
            if !include(n) || node.pid().is_none() {
                continue;
            }
            loop {
                let mut conn = node.connection();
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut conn)
                    .unwrap_or_default();
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut conn)
                    .unwrap_or_default();
                let in_step = replication.contains("role:master")
                    || replication.contains("master_link_status:up");
                if info.contains("cluster_state:ok") && in_step {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster is not up on node {n}: {info}{replication}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Whether node `n` is a primary now.
    pub fn is_primary(&self, n: usize) -> bool {
        let role: Vec<redis::Value> = redis::cmd("ROLE")
            .query(&mut self.nodes[n].connection())
            .unwrap_or_default();
        matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master")
    }

    /// The node that replicates node `n`, if one does.
    pub fn replica_of(&self, n: usize) -> Option<usize> {
        let port = self.nodes[n].port().to_string();
        (0..self.nodes.len()).find(|&m| {
            m != n
                && self.nodes[m].pid().is_some()
                && redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut self.nodes[m].connection())
                    .is_ok_and(|info| {
                        info.contains("role:slave")
                            && info.contains(&format!("master_port:{port}\r\n"))
                    })
        })
    }
}

impl RedisCluster {
    /// `redis+cluster://127.0.0.1:<port>,...`: every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// A blocking cluster connection for raw commands (it follows the
    /// slots).
    pub fn connection(&self) -> redis::cluster::ClusterConnection {
        let nodes: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        redis::cluster::ClusterClient::new(nodes)
            .expect("loopback URLs parse")
            .get_connection()
            .expect("connect to the test cluster")
    }
}

/// What a cache in a test is pointed at, and how the test looks at its
/// keys: a [`RedisServer`], a [`RedisCluster`] or either ([`Redis`]).
pub trait Target {
    /// The URL a cache is given: `redis://...` or `redis+cluster://...`.
    fn url(&self) -> String;

    /// A blocking connection for raw commands on keys (on a cluster it
    /// follows the slots).
    fn raw(&self) -> Box<dyn redis::ConnectionLike>;

    /// The Redis key of cache key `key` under `namespace`, as the cache
    /// lays it out (on a cluster, with its group's hash tag). Needs a
    /// tokio runtime.
    fn key(&self, namespace: &str, key: &str) -> String {
        cache_runtime::RedisL2::builder(self.url(), namespace)
            .connect_lazy()
            .expect("a valid URL and namespace")
            .redis_key(key)
    }

    /// Every key `pattern` matches (`KEYS`, on every node of a cluster).
    fn keys(&self, pattern: &str) -> Vec<String> {
        self.nodes()
            .into_iter()
            .flat_map(|node| {
                redis::cmd("KEYS")
                    .arg(pattern)
                    .query::<Vec<String>>(&mut node.connection())
                    .expect("KEYS on a test redis-server")
            })
            .collect()
    }

    /// Each server: this one, or every node of the cluster.
    fn nodes(&self) -> Vec<&RedisServer>;

    /// How many times `command` (as `mget`) ran, on every node together
    /// (`INFO commandstats`).
    fn calls(&self, command: &str) -> u64 {
        let field = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
        self.nodes()
            .into_iter()
            .map(|node| {
                let info: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query(&mut node.connection())
                    .expect("INFO on a test redis-server");
                info.lines()
                    .find_map(|line| line.strip_prefix(&field))
                    .and_then(|rest| rest.split(',').next())
                    .map_or(0, |calls| calls.parse().expect("a count of calls"))
            })
            .sum()
    }

    /// What the protocol's keys that cover `key` start with: its group
    /// (`<namespace>`, or on a cluster `<namespace>{<group>}`).
    fn group(&self, namespace: &str, key: &str) -> String {
        let full = self.key(namespace, key);
        full.strip_suffix(&format!(":{key}"))
            .expect("<group>:<key>")
            .to_owned()
    }

    /// `GET` of the cache key `key` under `namespace`.
    fn get(&self, namespace: &str, key: &str) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(self.key(namespace, key))
            .query(&mut *self.raw())
            .expect("GET on the test Redis")
    }
}

impl Target for RedisServer {
    fn url(&self) -> String {
        RedisServer::url(self)
    }

    fn raw(&self) -> Box<dyn redis::ConnectionLike> {
        Box::new(self.connection())
    }

    fn nodes(&self) -> Vec<&RedisServer> {
        vec![self]
    }
}

impl Target for RedisCluster {
    fn url(&self) -> String {
        RedisCluster::url(self)
    }

    fn raw(&self) -> Box<dyn redis::ConnectionLike> {
        Box::new(self.connection())
    }

    fn nodes(&self) -> Vec<&RedisServer> {
        self.nodes.iter().collect()
    }
}

impl Target for Redis {
    fn url(&self) -> String {
        match self {
            Redis::Server(server) => server.url(),
            Redis::Cluster(cluster) => cluster.url(),
        }
    }

    fn raw(&self) -> Box<dyn redis::ConnectionLike> {
        match self {
            Redis::Server(server) => server.raw(),
            Redis::Cluster(cluster) => cluster.raw(),
        }
    }

    fn nodes(&self) -> Vec<&RedisServer> {
        match self {
            Redis::Server(server) => server.nodes(),
            Redis::Cluster(cluster) => cluster.nodes(),
        }
    }
}

/// A `hybrid` cache on `server` under the key prefix `prefix`, with a
/// 2 s Redis timeout.
pub fn hybrid(server: &impl Target, prefix: &str) -> cache_runtime::Cache {
    cache_runtime::Cache::builder()
        .backend(cache_runtime::Backend::Hybrid)
        .redis_url(server.url())
        .key_prefix(prefix)
        .redis_timeout(Duration::from_secs(2))
        .build()
        .expect("a cache")
}

/// `cache`, once it is in step with the other instances (subscribed).
pub async fn synced(cache: cache_runtime::Cache) -> cache_runtime::Cache {
    assert!(
        cache.wait_in_sync(Duration::from_secs(10)).await,
        "no backplane subscription within 10 s"
    );
    cache
}

/// What a test of the shared tier runs against: one redis-server, or a
/// local 3-primary Redis Cluster. Tests written once for both use
/// [`on_server_and_cluster!`](crate::on_server_and_cluster).
pub enum Redis {
    Server(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    pub fn server() -> Redis {
        Redis::Server(RedisServer::start())
    }

    pub fn cluster() -> Redis {
        Redis::Cluster(RedisCluster::start(3))
    }

    /// The single server, for tests that fault it.
    pub fn as_server(&self) -> Option<&RedisServer> {
        match self {
            Redis::Server(server) => Some(server),
            Redis::Cluster(_) => None,
        }
    }
}

/// Writes a test of the shared tier once and runs it twice: against one
/// redis-server (`<name>::server`) and against a 3-primary Redis Cluster
/// (`<name>::cluster`). The test is an `async fn` taking `redis: &Redis`,
/// with its tokio test attribute:
///
/// ```ignore
/// on_server_and_cluster! {
///     #[tokio::test]
///     async fn an_instance_finds_what_another_stored(redis: &Redis) { ... }
/// }
/// ```
#[macro_export]
macro_rules! on_server_and_cluster {
    ($(
        $(#[doc = $doc:literal])*
        #[tokio::test $(($($test:tt)*))?]
        async fn $name:ident($redis:ident: &Redis) $body:block
    )*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($redis: &$crate::support::Redis) $body

            #[tokio::test $(($($test)*))?]
            async fn server() {
                run(&$crate::support::Redis::server()).await
            }

            #[tokio::test $(($($test)*))?]
            async fn cluster() {
                run(&$crate::support::Redis::cluster()).await
            }
        }
    )*};
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check_installed() {
    let bin = binary();
    match Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{bin}` is not installed: the Redis tests start their own redis-server \
             (Debian/Ubuntu: `apt-get install redis-server`; or set REDIS_SERVER to its path)"
        ),
        Err(e) => panic!("cannot run `{bin}`: {e}"),
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn make_certificate(dir: &std::path::Path) {
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("openssl could not make a test certificate: {status}"),
        Err(e) => panic!(
            "`openssl` is needed to make a test certificate (Debian/Ubuntu: `apt-get install openssl`): {e}"
        ),
    }
}

/// A port the OS just handed out on 127.0.0.1 (bind to 0, read, drop).
/// Another process may take it before redis-server binds it: callers retry.
fn free_port() -> u16 {
    loop {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 for a free port");
        let port = listener.local_addr().expect("local address").port();
        drop(listener);
        if port != 6379 {
            return port;
        }
    }
}

/// Spawns redis-server on `port` and waits until it answers PING as itself
/// (INFO's process_id is the child's pid, not some other server's).
fn spawn_ready(
    port: u16,
    tls_port: Option<u16>,
    extra: &[String],
    dir: &std::path::Path,
) -> Result<Child, String> {
    let log = dir.join(format!("redis-{port}.log"));
    let _ = std::fs::remove_file(&log);
    let mut command = Command::new(binary());
    if let Some(tls_port) = tls_port {
        let cert = dir.join("cert.pem");
        command
            .args(["--tls-port", &tls_port.to_string()])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(dir.join("key.pem"))
            .arg("--tls-ca-cert-file")
            .arg(&cert)
            .args(["--tls-auth-clients", "no"]);
    }
    let mut child = command
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", binary()))?;
    let pid = child.id();
    let url = match password_of(extra) {
        Some(password) => format!("redis://:{password}@127.0.0.1:{port}/0"),
        None => format!("redis://127.0.0.1:{port}/0"),
    };
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            return Err(format!(
                "redis-server exited ({status}): {}{}",
                stderr.trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        if answers_as(&url, pid) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no PING answer within {READY_WITHIN:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The password of a server started with `--requirepass <password>`.
fn password_of(extra: &[String]) -> Option<&str> {
    let at = extra.iter().position(|arg| arg == "--requirepass")?;
    extra.get(at + 1).map(String::as_str)
}

fn answers_as(url: &str, pid: u32) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(pong) = redis::cmd("PING").query::<String>(&mut conn) else {
        return false;
    };
    let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut conn) else {
        return false;
    };
    pong == "PONG"
        && info
            .lines()
            .any(|line| line.trim() == format!("process_id:{pid}"))
}

/// The state letter of process `pid` (`R`, `S`, `T`, ...): the field after
/// the parenthesised command name in `/proc/<pid>/stat`.
pub fn process_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("")
        .to_owned()
}

/// The most this runtime wakes a task late: the largest lateness of 200
/// sleeps of 1 ms, measured in the run that uses it (a margin for a bound
/// that is a time by nature).
pub async fn wake_up_noise() -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..200 {
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
        worst = worst.max(started.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    worst
}

/// How long after `since` an instance stopped serving an invalidated value
/// from process: `served` is polled every millisecond, for 5 s at most;
/// `None` if it was still served then.
pub async fn stale_window(
    since: Instant,
    mut served: impl AsyncFnMut() -> bool,
) -> Option<Duration> {
    for _ in 0..5_000 {
        if !served().await {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Asserts that a stale window (see [`stale_window`]) under `fault` stayed
/// within `bound`, plus a margin from `noise` (see [`wake_up_noise`]):
/// twice it (the poll, and the subscriber), and 10 ms for the coarse
/// clock's tick. Prints the window.
pub fn assert_stale_window(
    fault: &str,
    window: Option<Duration>,
    bound: Duration,
    noise: Duration,
) {
    let window = window.unwrap_or_else(|| {
        panic!("{fault}: the invalidated value was served from process for 5 s")
    });
    let margin = noise * 2 + Duration::from_millis(10);
    eprintln!("{fault}: stale window after the invalidation returned: {window:?} (bound {bound:?}, margin {margin:?})");
    assert!(
        window <= bound + margin,
        "{fault}: the invalidated value was served {window:?} after the invalidation returned (bound {bound:?}, margin {margin:?})"
    );
}
