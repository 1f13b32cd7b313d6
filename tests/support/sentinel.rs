//! A master, its replica and three sentinels that monitor them, each its
//! own process on a loopback port, stopped by its pid when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{answers_as, binary, free_port, RedisServer, Target};

/// The name the sentinels monitor the master under.
pub const SERVICE: &str = "cachetest";

/// How long the sentinels wait for a silent master before they agree it
/// is down and fail over.
const DOWN_AFTER_MS: u64 = 1000;

/// A `redis-server --sentinel` process.
pub struct SentinelProcess {
    child: Child,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SentinelProcess {
    fn start(master_port: u16, quorum: usize) -> SentinelProcess {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "cache-suite-sentinel-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the sentinel");
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {dir}/sentinel.log\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master_port} {quorum}\n\
                 sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {SERVICE} 10000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = dir.display()
            ),
        )
        .expect("write sentinel.conf");
        let mut child = Command::new(binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_as(&url, child.id()) {
            if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.join("sentinel.log")).unwrap_or_default();
                panic!("the sentinel on port {port} did not come up: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        SentinelProcess { child, port, dir }
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .expect("a loopback URL parses")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to a test sentinel")
    }

    /// `SENTINEL MASTER <service>`, as field -> value.
    fn master_fields(&self) -> std::collections::HashMap<String, String> {
        redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(SERVICE)
            .query(&mut self.connection())
            .unwrap_or_default()
    }
}

/// Two redis-servers, one replicating the other, and three sentinels
/// (quorum 2) that monitor them as [`SERVICE`].
pub struct SentinelGroup {
    /// The servers, the first one master at the start.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProcess>,
}

impl SentinelGroup {
    /// Starts the servers, waits until the replica is in sync, starts the
    /// sentinels, and waits until each knows the replica and the other
    /// sentinels.
    pub fn start() -> SentinelGroup {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
        let group = SentinelGroup {
            servers: vec![master, replica],
            sentinels: Vec::new(),
        };
        wait_replicated(&group.servers[0], 1);
        let master_port = group.servers[0].port();
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(master_port, 2))
            .collect();
        let group = SentinelGroup { sentinels, ..group };
        let deadline = Instant::now() + Duration::from_secs(30);
        for sentinel in &group.sentinels {
            loop {
                let fields = sentinel.master_fields();
                let known = |field: &str, n: &str| fields.get(field).map(String::as_str) == Some(n);
                if known("num-slaves", "1") && known("num-other-sentinels", "2") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sentinel {} does not know the group: {fields:?}",
                    sentinel.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        group
    }

    /// Waits until the master has `replicas` replicas in sync.
    pub fn wait_replicated(&self, replicas: usize) {
        wait_replicated(self.master(), replicas);
    }

    /// The port of the master the sentinels name now.
    pub fn master_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            let named: Result<(String, String), _> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(SERVICE)
                .query(&mut sentinel.connection());
            if let Ok((_, port)) = named {
                return port.parse().expect("a port");
            }
        }
        panic!("no sentinel names a master");
    }

    /// The server the sentinels name master now.
    pub fn master(&self) -> &RedisServer {
        let port = self.master_port();
        self.servers
            .iter()
            .find(|server| server.port() == port)
            .expect("the master is one of the group's servers")
    }

    /// The server that is not master now, mutably (to kill it).
    pub fn server_mut(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|server| server.port() == port)
            .expect("a server of the group")
    }

    /// `SENTINEL FAILOVER` on the first sentinel, then waits until every
    /// sentinel names the other server master and it says it is one;
    /// returns the new master's port.
    pub fn failover(&self) -> u16 {
        let old = self.master_port();
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(SERVICE)
            .query(&mut self.sentinels[0].connection())
            .expect("SENTINEL FAILOVER");
        self.wait_master_moved_from(old)
    }

    /// Waits until every sentinel names a master other than `old`, and it
    /// calls itself master; returns its port.
    pub fn wait_master_moved_from(&self, old: u16) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|sentinel| {
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(SERVICE)
                        .query::<(String, String)>(&mut sentinel.connection())
                        .ok()
                        .and_then(|(_, port)| port.parse().ok())
                })
                .collect();
            if let Some(Some(new)) = named.first().copied() {
                let agreed = named.iter().all(|port| *port == Some(new));
                let role: Option<Vec<redis::Value>> = self
                    .servers
                    .iter()
                    .find(|server| server.port() == new && server.pid().is_some())
                    .and_then(|server| redis::cmd("ROLE").query(&mut server.connection()).ok());
                let is_master = role.is_some_and(|role| {
                    matches!(role.first(), Some(redis::Value::BulkString(b)) if b == b"master")
                });
                if new != old && agreed && is_master {
                    return new;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels did not fail over from {old}: they name {named:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until `master` has `replicas` replicas in sync.
fn wait_replicated(master: &RedisServer, replicas: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut master.connection())
            .unwrap_or_default();
        if info.matches("state=online").count() >= replicas {
            return;
        }
        assert!(Instant::now() < deadline, "no replica in sync: {info}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Target for SentinelGroup {
    fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}/0", sentinels.join(","))
    }

    fn raw(&self) -> Box<dyn redis::ConnectionLike> {
        Box::new(self.master().connection())
    }

    fn nodes(&self) -> Vec<&RedisServer> {
        vec![self.master()]
    }
}
