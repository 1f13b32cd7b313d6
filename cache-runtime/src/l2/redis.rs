//! [`L2`] over Redis: one multiplexed connection that reconnects by itself
//! (the redis crate's `ConnectionManager`), every command under a timeout.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, RedisError, ScriptInvocation};

use super::coherent::{Coherence, Scripts};
use super::{validate_namespace, L2Error, L2Future, L2};
use crate::pattern::Pattern;

/// The shared tier over Redis.
///
/// Keys are stored as `<namespace>:<key>`, so applications sharing a Redis
/// keep to their own keys, and [`clear`](RedisL2::clear) removes only this
/// namespace's. Pattern invalidation walks the keyspace with `SCAN ... MATCH
/// ... COUNT` and removes each page with `UNLINK`: it never runs `KEYS` or
/// `FLUSHDB`, so it never blocks the server. (On Redis Cluster a SCAN must
/// run on every primary; this type talks to one server.)
///
/// Every command runs under [`timeout`](RedisL2Builder::timeout) (250 ms by
/// default) and fails with [`L2Error::Timeout`] past it. A dropped
/// connection fails the commands in flight with [`L2Error::Connection`] and
/// is re-established in the background; later commands use the new one.
///
/// Cloning is cheap and clones share the connection.
///
/// A [`Cache`](crate::Cache) with a Redis backend keeps its own protocol on
/// top of these keys (a generation counter, tombstones and prefix tags in
/// keys of the form `<namespace>[..]`, and an 8-byte generation in front of
/// each envelope it writes) so that invalidations on one instance bind
/// fills on every other. Writing or removing its keys through this type
/// directly bypasses that protocol.
///
/// ```no_run
/// use std::time::Duration;
/// use cache_runtime::RedisL2;
///
/// # async fn run() -> Result<(), cache_runtime::L2Error> {
/// let l2 = RedisL2::builder("redis://127.0.0.1:6380/0", "orders-svc")
///     .timeout(Duration::from_millis(100))
///     .connect()
///     .await?;
/// l2.set("order:acme:1", b"...", 120_000).await?;   // SET orders-svc:order:acme:1 ... PX 120000
/// let bytes = l2.get("order:acme:1").await?;
/// let removed = l2.invalidate("order:acme:*").await?; // SCAN + UNLINK
/// println!("{bytes:?} {removed} {:?}", l2.ping().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisL2 {
    conn: ConnectionManager,
    namespace: Box<str>,
    timeout: Duration,
    scan_count: usize,
    /// `host:port/db`, never the password.
    addr: Box<str>,
    pub(super) coherence: Coherence,
    pub(super) scripts: Arc<Scripts>,
    /// Where invalidations are announced: the channel, and this instance.
    pub(super) bus: Option<(Arc<str>, u64)>,
}

/// Settings of a [`RedisL2`], from [`RedisL2::builder`].
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::RedisL2;
///
/// let builder = RedisL2::builder("redis://:secret@127.0.0.1:6380/2", "orders-svc")
///     .timeout(Duration::from_millis(100))
///     .connect_timeout(Duration::from_secs(2))
///     .scan_count(500);
/// // Nothing connects until `connect` or `connect_lazy`; the password stays out of Debug.
/// assert!(!format!("{builder:?}").contains("secret"));
/// ```
#[must_use]
#[derive(Clone)]
pub struct RedisL2Builder {
    url: String,
    namespace: String,
    timeout: Duration,
    connect_timeout: Duration,
    scan_count: usize,
    coherence: Coherence,
    bus: Option<(Arc<str>, u64)>,
}

impl fmt::Debug for RedisL2Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisL2Builder")
            .field("url", &redact(&self.url))
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("scan_count", &self.scan_count)
            .field("max_ttl", &self.coherence.max_ttl)
            .finish()
    }
}

/// `redis://user:pass@host` -> `redis://***@host`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl RedisL2Builder {
    /// The time limit of each Redis command (default 250 ms). A `SCAN`
    /// walk is many commands, each with this limit.
    ///
    /// # Panics
    /// When `timeout` is zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app")
    ///     .timeout(Duration::from_millis(50));
    /// # drop(b);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "RedisL2Builder::timeout must not be zero"
        );
        self.timeout = timeout;
        self
    }

    /// The time limit of establishing a connection, first or again
    /// (default 1 s).
    ///
    /// # Panics
    /// When `timeout` is zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app")
    ///     .connect_timeout(Duration::from_millis(500));
    /// # drop(b);
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "RedisL2Builder::connect_timeout must not be zero"
        );
        self.connect_timeout = timeout;
        self
    }

    /// The `COUNT` hint of each `SCAN` call in pattern invalidation and
    /// `clear`, which is also about the size of each `UNLINK` batch
    /// (default 1000).
    ///
    /// # Panics
    /// When `count` is zero.
    ///
    /// ```
    /// let b = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app").scan_count(100);
    /// # drop(b);
    /// ```
    pub fn scan_count(mut self, count: usize) -> Self {
        assert!(count > 0, "RedisL2Builder::scan_count must not be zero");
        self.scan_count = count;
        self
    }

    /// The longest a value lives in Redis (default 1 day): longer TTLs
    /// are cut to it. Instances may differ in this: Redis records the
    /// longest value any instance wrote, and invalidation marks of prefix
    /// patterns live at least that long, so that they outlive the values
    /// they cover.
    ///
    /// # Panics
    /// When `max_ttl` is zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// let b = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app")
    ///     .max_ttl(Duration::from_secs(6 * 3600));
    /// # drop(b);
    /// ```
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        assert!(
            !max_ttl.is_zero(),
            "RedisL2Builder::max_ttl must not be zero"
        );
        self.coherence.max_ttl = max_ttl;
        self
    }

    /// The URL given to [`RedisL2::builder`].
    ///
    /// ```
    /// let b = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app");
    /// assert_eq!(b.url(), "redis://127.0.0.1:6380");
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The namespace given to [`RedisL2::builder`].
    ///
    /// ```
    /// let b = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app");
    /// assert_eq!(b.namespace(), "app");
    /// ```
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Checks the URL and the namespace without connecting.
    ///
    /// # Errors
    /// [`L2Error::Config`], as [`connect`](RedisL2Builder::connect).
    ///
    /// ```
    /// use cache_runtime::RedisL2;
    /// assert!(RedisL2::builder("redis://127.0.0.1:6380/0", "app").check().is_ok());
    /// assert!(RedisL2::builder("http://127.0.0.1", "app").check().is_err());
    /// ```
    pub fn check(&self) -> Result<(), L2Error> {
        self.client().map(drop)
    }

    /// Connects now: fails if Redis does not answer within the connect
    /// timeout. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`L2Error::Config`] for a bad URL or namespace, [`L2Error::Timeout`]
    /// or [`L2Error::Connection`] when Redis cannot be reached.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::L2Error> {
    /// let l2 = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app").connect().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<RedisL2, L2Error> {
        let (client, config, addr) = self.client()?;
        let conn = match tokio::time::timeout(
            self.connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Err(_) => {
                return Err(L2Error::Timeout {
                    op: "CONNECT",
                    after: self.connect_timeout,
                })
            }
            Ok(Err(e)) => return Err(map_error("CONNECT", self.connect_timeout, e)),
            Ok(Ok(conn)) => conn,
        };
        Ok(self.finish(conn, addr))
    }

    /// Returns at once and connects on first use, so that a service starts
    /// while Redis is down (its calls then fail, and are retried on later
    /// calls).
    ///
    /// # Errors
    /// [`L2Error::Config`] for a bad URL or namespace.
    ///
    /// # Panics
    /// Outside a tokio runtime: the connection spawns a task.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Nothing listens on port 1: building still works, calls fail.
    /// let l2 = cache_runtime::RedisL2::builder("redis://127.0.0.1:1", "app").connect_lazy().unwrap();
    /// assert!(l2.ping().await.is_err());
    /// # }
    /// ```
    pub fn connect_lazy(self) -> Result<RedisL2, L2Error> {
        let (client, config, addr) = self.client()?;
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| map_error("CONNECT", self.connect_timeout, e))?;
        Ok(self.finish(conn, addr))
    }

    /// Announces every invalidation on `channel` as `<instance>:<pattern>`,
    /// atomically with it where it is one script.
    pub(crate) fn announce_on(mut self, channel: &str, instance: u64) -> Self {
        self.bus = Some((channel.into(), instance));
        self
    }

    /// A client of this store's server (for a pub/sub connection).
    pub(crate) fn redis_client(&self) -> Result<redis::Client, L2Error> {
        self.client().map(|(client, _, _)| client)
    }

    fn client(&self) -> Result<(redis::Client, ConnectionManagerConfig, String), L2Error> {
        validate_namespace(&self.namespace)?;
        let url = self.url.trim();
        if url.starts_with("rediss://") && !cfg!(feature = "tls") {
            return Err(L2Error::Config(
                "rediss:// (TLS) needs the `tls` feature of cache-runtime; enable it, or use redis://"
                    .into(),
            ));
        }
        if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            return Err(L2Error::Config(format!(
                "`{}` is not a redis URL: expected redis://[:password@]host:port[/db], or rediss:// for TLS",
                redact(url)
            )));
        }
        let client = redis::Client::open(url)
            .map_err(|e| L2Error::Config(format!("`{}` does not parse: {}", redact(url), e)))?;
        let info = client.get_connection_info();
        let addr = format!("{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(self.connect_timeout))
            .set_max_delay(Duration::from_secs(2));
        Ok((client, config, addr))
    }

    fn finish(self, conn: ConnectionManager, addr: String) -> RedisL2 {
        RedisL2 {
            conn,
            namespace: self.namespace.into(),
            timeout: self.timeout,
            scan_count: self.scan_count,
            addr: addr.into(),
            coherence: self.coherence,
            scripts: Arc::new(Scripts::new()),
            bus: self.bus,
        }
    }
}

/// What a cluster node's redirect or slot error means for this store.
pub(crate) const CLUSTER_UNSUPPORTED: &str = "REDIS_URL points at a Redis Cluster node, and the shared tier does not support Redis Cluster yet: the cache runs on its in-process tier and the origin; point REDIS_URL at a standalone Redis (or a primary with replicas)";

fn map_error(op: &'static str, after: Duration, e: RedisError) -> L2Error {
    if e.is_cluster_error() || e.code() == Some("CROSSSLOT") {
        L2Error::Command {
            op,
            source: format!("{CLUSTER_UNSUPPORTED} ({e})").into(),
        }
    } else if e.is_timeout() {
        L2Error::Timeout { op, after }
    } else if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
    {
        L2Error::Connection {
            op,
            source: Box::new(e),
        }
    } else {
        L2Error::Command {
            op,
            source: Box::new(e),
        }
    }
}

impl fmt::Debug for RedisL2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisL2")
            .field("addr", &self.addr)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("scan_count", &self.scan_count)
            .finish()
    }
}

impl RedisL2 {
    /// Settings for a store at `url` (`redis://[:password@]host:port[/db]`,
    /// or `rediss://` for TLS with the `tls` feature) whose keys all start
    /// with `namespace` and a `:`.
    ///
    /// The namespace must be non-empty ASCII without glob characters
    /// (`* ? [ ] \`), `:`, spaces or control characters: it goes into SCAN
    /// patterns as it is, and no namespace may be a prefix of another's
    /// keys. The URL and the namespace are checked when connecting.
    ///
    /// ```
    /// let builder = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380/0", "orders-svc");
    /// # drop(builder);
    /// ```
    pub fn builder(url: impl Into<String>, namespace: impl Into<String>) -> RedisL2Builder {
        RedisL2Builder {
            url: url.into(),
            namespace: namespace.into(),
            timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(1),
            scan_count: 1000,
            coherence: Coherence {
                max_ttl: Duration::from_secs(24 * 3600),
            },
            bus: None,
        }
    }

    /// The namespace.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::L2Error> {
    /// let l2 = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app").connect().await?;
    /// assert_eq!(l2.namespace(), "app");
    /// # Ok(()) }
    /// ```
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Redis key of a cache key: `<namespace>:<key>`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::L2Error> {
    /// let l2 = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app").connect().await?;
    /// assert_eq!(l2.redis_key("order:1"), "app:order:1");
    /// # Ok(()) }
    /// ```
    pub fn redis_key(&self, key: &str) -> String {
        let mut out = String::with_capacity(self.namespace.len() + 1 + key.len());
        out.push_str(&self.namespace);
        out.push(':');
        out.push_str(key);
        out
    }

    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        op: &'static str,
        call: &ScriptInvocation<'_>,
    ) -> Result<T, L2Error> {
        let mut conn = self.conn.clone();
        self.timed(op, call.invoke_async::<T>(&mut conn)).await
    }

    pub(super) async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> Result<T, L2Error> {
        let mut conn = self.conn.clone();
        self.timed(op, cmd.query_async::<T>(&mut conn)).await
    }

    /// `call` under this store's timeout, its error mapped.
    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, L2Error> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(L2Error::Timeout {
                op,
                after: self.timeout,
            }),
            Ok(result) => result.map_err(|e| map_error(op, self.timeout, e)),
        }
    }

    /// `GET <namespace>:<key>`.
    ///
    /// # Errors
    /// Timeout, connection or server errors.
    ///
    /// ```no_run
    /// # async fn run(l2: cache_runtime::RedisL2) -> Result<(), cache_runtime::L2Error> {
    /// let bytes: Option<Vec<u8>> = l2.get("order:acme:1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, L2Error> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.redis_key(key));
        self.query("GET", &cmd).await
    }

    /// `SET <namespace>:<key> <bytes> PX <px_millis>`.
    ///
    /// # Errors
    /// [`L2Error::ZeroTtl`] when `px_millis` is 0; timeout, connection or
    /// server errors.
    ///
    /// ```no_run
    /// # async fn run(l2: cache_runtime::RedisL2) -> Result<(), cache_runtime::L2Error> {
    /// l2.set("order:acme:1", b"bytes", 60_000).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, key: &str, bytes: &[u8], px_millis: u64) -> Result<(), L2Error> {
        if px_millis == 0 {
            return Err(L2Error::ZeroTtl);
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key))
            .arg(bytes)
            .arg("PX")
            .arg(px_millis);
        self.query::<()>("SET", &cmd).await
    }

    /// `UNLINK` of these exact keys, in batches of the scan count; returns
    /// how many existed.
    ///
    /// # Errors
    /// Timeout, connection or server errors; batches before the failing one
    /// are removed.
    ///
    /// ```no_run
    /// # async fn run(l2: cache_runtime::RedisL2) -> Result<(), cache_runtime::L2Error> {
    /// let removed = l2.delete(&["order:acme:1", "order:acme:2"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, keys: &[&str]) -> Result<u64, L2Error> {
        let mut removed = 0;
        for batch in keys.chunks(self.scan_count) {
            let mut cmd = redis::cmd("UNLINK");
            for key in batch {
                cmd.arg(self.redis_key(key));
            }
            removed += self.query::<u64>("UNLINK", &cmd).await?;
        }
        Ok(removed)
    }

    /// Removes every key `pattern` matches (Redis glob syntax, see
    /// [`Pattern`]) in this namespace: a pattern without wildcards is one
    /// `UNLINK`, any other a `SCAN 0 MATCH <namespace>:<pattern> COUNT n`
    /// walk that `UNLINK`s each page. Returns how many keys were removed
    /// (a key SCAN returns twice is counted once: the second UNLINK finds
    /// nothing).
    ///
    /// Keys written while the walk runs may or may not be removed, as SCAN
    /// guarantees only the keys present for the whole walk.
    ///
    /// # Errors
    /// [`L2Error::Pattern`] for a pattern that does not parse; timeout,
    /// connection or server errors (keys of pages before are removed).
    ///
    /// ```no_run
    /// # async fn run(l2: cache_runtime::RedisL2) -> Result<(), cache_runtime::L2Error> {
    /// let removed = l2.invalidate("orders:list:acme:*").await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate(&self, pattern: &str) -> Result<u64, L2Error> {
        let parsed = Pattern::parse(pattern)?;
        match parsed.exact_key() {
            Some(key) => self.delete(&[key]).await,
            None => self.scan_unlink(&self.redis_key(parsed.as_str())).await,
        }
    }

    /// Removes every key of this namespace (`SCAN MATCH <namespace>:*` and
    /// `UNLINK`), and no other: never `FLUSHDB`. Returns how many.
    ///
    /// # Errors
    /// Timeout, connection or server errors.
    ///
    /// ```no_run
    /// # async fn run(l2: cache_runtime::RedisL2) -> Result<(), cache_runtime::L2Error> {
    /// let removed = l2.clear().await?;
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<u64, L2Error> {
        self.scan_unlink(&self.redis_key("*")).await
    }

    pub(super) async fn scan_unlink(&self, redis_pattern: &str) -> Result<u64, L2Error> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(redis_pattern)
                .arg("COUNT")
                .arg(self.scan_count);
            let (next, keys): (u64, Vec<Vec<u8>>) = self.query("SCAN", &scan).await?;
            if !keys.is_empty() {
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                removed += self.query::<u64>("UNLINK", &unlink).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Whether the server is a Redis Cluster node (`INFO cluster`).
    pub(crate) async fn is_cluster_node(&self) -> Result<bool, L2Error> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("cluster");
        let info: String = self.query("INFO", &cmd).await?;
        Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
    }

    /// `PUBLISH channel payload`; returns how many subscribers got it.
    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, L2Error> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        self.query("PUBLISH", &cmd).await
    }

    /// `PING`, timed: the round trip.
    ///
    /// # Errors
    /// Timeout, connection or server errors.
    ///
    /// ```no_run
    /// # async fn run(l2: cache_runtime::RedisL2) -> Result<(), cache_runtime::L2Error> {
    /// let rtt = l2.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, L2Error> {
        let started = Instant::now();
        let pong: String = self.query("PING", &redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(L2Error::Command {
                op: "PING",
                source: format!("unexpected answer `{}`", pong.escape_debug()).into(),
            });
        }
        Ok(started.elapsed())
    }
}

impl L2 for RedisL2 {
    fn get<'a>(&'a self, key: &'a str) -> L2Future<'a, Option<Vec<u8>>> {
        Box::pin(RedisL2::get(self, key))
    }

    fn set<'a>(&'a self, key: &'a str, bytes: &'a [u8], px_millis: u64) -> L2Future<'a, ()> {
        Box::pin(RedisL2::set(self, key, bytes, px_millis))
    }

    fn delete<'a>(&'a self, keys: &'a [&'a str]) -> L2Future<'a, u64> {
        Box::pin(RedisL2::delete(self, keys))
    }

    fn invalidate<'a>(&'a self, pattern: &'a str) -> L2Future<'a, u64> {
        Box::pin(RedisL2::invalidate(self, pattern))
    }

    fn clear(&self) -> L2Future<'_, u64> {
        Box::pin(RedisL2::clear(self))
    }

    fn ping(&self) -> L2Future<'_, Duration> {
        Box::pin(RedisL2::ping(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://u:p@ss@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    #[tokio::test]
    async fn bad_configuration_is_an_error_without_the_password() {
        #[cfg(not(feature = "tls"))]
        {
            let err = RedisL2::builder("rediss://:pw@h:1", "app")
                .check()
                .unwrap_err();
            assert!(err.to_string().contains("`tls` feature"), "{err}");
        }
        #[cfg(feature = "tls")]
        assert!(RedisL2::builder("rediss://:pw@h:1", "app").check().is_ok());
        for (url, ns, needle) in [
            ("http://:pw@h:1", "app", "not a redis URL"),
            ("redis://:pw@h:notaport", "app", "does not parse"),
            ("redis://:pw@h:1", "a:b", "namespace"),
        ] {
            let err = RedisL2::builder(url, ns).connect_lazy().unwrap_err();
            let text = err.to_string();
            assert!(text.contains(needle), "{text}");
            assert!(!text.contains("pw"), "{text}");
        }
    }
}
