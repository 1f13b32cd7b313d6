//! [`L2`] over Redis: one multiplexed connection that reconnects by itself
//! (the redis crate's `ConnectionManager`), or the redis crate's async
//! cluster client for a Redis Cluster; every command under a timeout.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisError, RedisFuture, ScriptInvocation, Value};

use super::batch::Batches;
use super::coherent::{Coherence, Scripts};
use super::{validate_namespace, L2Error, L2Future, L2};
use crate::pattern::Pattern;

/// The shared tier over Redis.
///
/// Keys are stored as `<namespace>:<key>` (on a cluster
/// `<namespace>{<group>}:<key>`, below), so applications sharing a Redis
/// keep to their own keys, and [`clear`](RedisL2::clear) removes only this
/// namespace's. Pattern invalidation walks the keyspace with `SCAN ... MATCH
/// ... COUNT` and removes each page with `UNLINK`: it never runs `KEYS` or
/// `FLUSHDB`, so it never blocks the server.
///
/// On a Redis Cluster (a `redis+cluster://` URL, or
/// [`cluster`](RedisL2Builder::cluster)) the keys of a namespace are spread
/// over [`CLUSTER_GROUPS`](crate::CLUSTER_GROUPS) hash-tagged groups, stored
/// as `<namespace>{<group>}:<key>`, whose slots are spread evenly over the
/// slot range; a pattern is walked with `SCAN` on every primary.
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
/// keys of the form `<namespace>[..]`, or `<namespace>{<group>}[..]` on a
/// cluster, and an 8-byte generation in front of
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
    conn: Conn,
    namespace: Box<str>,
    /// What the keys of each group start with: the namespace alone, or on
    /// a cluster one `<namespace>{<tag>}` per group (see `base`).
    bases: Arc<[Box<str>]>,
    timeout: Duration,
    scan_count: usize,
    /// `host:port/db`, never the password.
    addr: Box<str>,
    pub(super) coherence: Coherence,
    pub(super) scripts: Arc<Scripts>,
    /// The checked reads of each group waiting to go together.
    batches: Arc<Batches>,
    /// Where invalidations are announced: the channel, and this instance.
    pub(super) bus: Option<(Arc<str>, u64)>,
}

/// The connection: to one server, or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Where a store's server is, parsed from its URL.
enum Endpoint {
    Single(redis::Client, ConnectionManagerConfig),
    /// The cluster client, and a client of each node the URL names (for
    /// pub/sub).
    Cluster(ClusterClient, ClusterConfig, Vec<redis::Client>),
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
    cluster: bool,
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
            .field("cluster", &self.is_cluster())
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

    /// Talks to a Redis Cluster through the redis crate's cluster client;
    /// the URL then names one or more of its nodes, separated by commas
    /// (`redis://:pw@10.0.0.1:7000,10.0.0.2:7000`). A `redis+cluster://`
    /// or `rediss+cluster://` URL says the same without this call.
    ///
    /// ```
    /// let b = cache_runtime::RedisL2::builder("redis://127.0.0.1:7000,127.0.0.1:7001", "app")
    ///     .cluster(true);
    /// assert!(b.check().is_ok());
    /// let same = cache_runtime::RedisL2::builder("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", "app");
    /// assert!(same.check().is_ok());
    /// ```
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Whether the store is a Redis Cluster: [`cluster`](Self::cluster), or
    /// a `+cluster` URL.
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster || cluster_scheme(self.url.trim()).is_some()
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
        self.endpoint().map(drop)
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
        let (endpoint, addr) = self.endpoint()?;
        let connecting = async {
            match endpoint {
                Endpoint::Single(client, config) => {
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map(Conn::Single)
                }
                Endpoint::Cluster(client, config, _) => client
                    .get_async_connection_with_config(config)
                    .await
                    .map(Conn::Cluster),
            }
        };
        let conn = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => {
                return Err(L2Error::Timeout {
                    op: "CONNECT",
                    after: self.connect_timeout,
                })
            }
            Ok(Err(e)) => {
                return Err(map_error(
                    "CONNECT",
                    self.connect_timeout,
                    self.is_cluster(),
                    e,
                ))
            }
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
        let (endpoint, addr) = self.endpoint()?;
        let conn = match endpoint {
            Endpoint::Single(client, config) => Conn::Single(
                ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| map_error("CONNECT", self.connect_timeout, false, e))?,
            ),
            Endpoint::Cluster(client, config, _) => {
                Conn::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        Ok(self.finish(conn, addr))
    }

    /// Announces every invalidation on `channel` as `<instance>:<pattern>`,
    /// atomically with it where it is one script.
    pub(crate) fn announce_on(mut self, channel: &str, instance: u64) -> Self {
        self.bus = Some((channel.into(), instance));
        self
    }

    /// Clients of this store's server, or of the cluster nodes its URL
    /// names (for a pub/sub connection: on a cluster, messages published on
    /// any node reach the subscribers of every node).
    pub(crate) fn redis_clients(&self) -> Result<Vec<redis::Client>, L2Error> {
        Ok(match self.endpoint()?.0 {
            Endpoint::Single(client, _) => vec![client],
            Endpoint::Cluster(_, _, nodes) => nodes,
        })
    }

    fn endpoint(&self) -> Result<(Endpoint, String), L2Error> {
        validate_namespace(&self.namespace)?;
        let url = self.url.trim();
        if !self.is_cluster() {
            let client = open(url)?;
            let info = client.get_connection_info();
            let addr = format!("{}/{}", info.addr(), info.redis_settings().db());
            // Every command runs under this store's timeout (`timed`): a
            // response timeout of the connection's own would be a second
            // timer per command, and would change nothing (it does not make
            // the manager reconnect; it drops the reply, as `timed` does).
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(Some(self.connect_timeout))
                .set_max_delay(Duration::from_secs(2));
            return Ok((Endpoint::Single(client, config), addr));
        }
        if let Some(brace) = self.namespace.chars().find(|c| matches!(c, '{' | '}')) {
            return Err(L2Error::Config(format!(
                "namespace `{}` contains `{brace}`: on Redis Cluster the cache puts a hash tag in braces after the namespace, so the namespace itself may not contain {{ or }}",
                self.namespace
            )));
        }
        let nodes = cluster_nodes(url)?;
        let clients = nodes
            .iter()
            .map(|node| open(node))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(db) = clients
            .iter()
            .map(|c| c.get_connection_info().redis_settings().db())
            .find(|db| *db != 0)
        {
            return Err(L2Error::Config(format!(
                "`{}` names database {db}, and a Redis Cluster has only database 0: leave the database out",
                redact(url)
            )));
        }
        let cluster = ClusterClient::builder(nodes.iter().map(String::as_str))
            .build()
            .map_err(|e| L2Error::Config(format!("`{}` does not parse: {}", redact(url), e)))?;
        let config = ClusterConfig::new()
            .set_response_timeout(self.timeout)
            .set_connection_timeout(self.connect_timeout);
        let addr = clients
            .iter()
            .map(|c| c.get_connection_info().addr().to_string())
            .collect::<Vec<_>>()
            .join(",");
        Ok((
            Endpoint::Cluster(cluster, config, clients),
            format!("cluster {addr}"),
        ))
    }

    fn finish(self, conn: Conn, addr: String) -> RedisL2 {
        let bases = match conn {
            Conn::Single(_) => vec![self.namespace.as_str().into()],
            Conn::Cluster(_) => (0..CLUSTER_GROUPS)
                .map(|group| format!("{}{{{}}}", self.namespace, group_tag(group)).into())
                .collect(),
        };
        let bases: Arc<[Box<str>]> = bases.into();
        RedisL2 {
            conn,
            bases: Arc::clone(&bases),
            namespace: self.namespace.into(),
            timeout: self.timeout,
            scan_count: self.scan_count,
            addr: addr.into(),
            coherence: self.coherence,
            scripts: Arc::new(Scripts::new()),
            batches: Arc::new(Batches::new(bases.len())),
            bus: self.bus,
        }
    }
}

/// Opens a client of one server, checking the URL.
fn open(url: &str) -> Result<redis::Client, L2Error> {
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(L2Error::Config(
            "rediss:// (TLS) needs the `tls` feature of cache-runtime; enable it, or use redis://"
                .into(),
        ));
    }
    if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        return Err(L2Error::Config(format!(
            "`{}` is not a redis URL: expected redis://[:password@]host:port[/db], rediss:// for TLS, or redis+cluster://host:port[,host:port...] for a Redis Cluster",
            redact(url)
        )));
    }
    redis::Client::open(url)
        .map_err(|e| L2Error::Config(format!("`{}` does not parse: {}", redact(url), e)))
}

/// `redis+cluster://...` -> `redis`, `rediss+cluster://...` -> `rediss`.
fn cluster_scheme(url: &str) -> Option<&'static str> {
    if url.starts_with("redis+cluster://") {
        Some("redis")
    } else if url.starts_with("rediss+cluster://") {
        Some("rediss")
    } else {
        None
    }
}

/// The node URLs of a cluster URL: `redis[s][+cluster]://[auth@]a:1,b:2[/0]`
/// -> `redis[s]://[auth@]a:1[/0]`, `redis[s]://[auth@]b:2[/0]`.
fn cluster_nodes(url: &str) -> Result<Vec<String>, L2Error> {
    let (scheme, rest) = match (cluster_scheme(url), url.split_once("://")) {
        (Some(scheme), Some((_, rest))) => (scheme, rest),
        (None, Some((scheme, rest))) => (scheme, rest),
        (_, None) => {
            // Let `open` say what is wrong with it.
            return open(url).map(|_| vec![url.to_owned()]);
        }
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (auth, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{auth}{host}{path}"))
        .collect();
    if nodes.is_empty() {
        return Err(L2Error::Config(format!(
            "`{}` names no node: expected redis+cluster://host:port[,host:port...]",
            redact(url)
        )));
    }
    Ok(nodes)
}

/// What a cluster node's redirect or slot error means for a store that is
/// not told it talks to a cluster.
pub(crate) const CLUSTER_NOT_DECLARED: &str = "REDIS_URL points at a Redis Cluster node: write it as redis+cluster://host:port[,host:port...] so that the cache uses the cluster client; meanwhile the cache runs on its in-process tier and the origin";

fn map_error(op: &'static str, after: Duration, cluster: bool, e: RedisError) -> L2Error {
    if !cluster && (e.is_cluster_error() || e.code() == Some("CROSSSLOT")) {
        L2Error::Command {
            op,
            source: format!("{CLUSTER_NOT_DECLARED} ({e})").into(),
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
    /// `rediss://` for TLS with the `tls` feature, or
    /// `redis+cluster://[:password@]host:port[,host:port...]` for a Redis
    /// Cluster) whose keys all start with `namespace`.
    ///
    /// The namespace must be non-empty ASCII without glob characters
    /// (`* ? [ ] \`), `:`, spaces or control characters (on a cluster also
    /// without `{ }`, which would take the place of the groups' hash tags):
    /// it goes into SCAN patterns as it is, and no namespace may be a prefix
    /// of another's keys. The URL and the namespace are checked when
    /// connecting.
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
            cluster: false,
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

    /// The Redis key of a cache key: `<namespace>:<key>`, or on a cluster
    /// `<namespace>{<group>}:<key>`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::L2Error> {
    /// let l2 = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app").connect().await?;
    /// assert_eq!(l2.redis_key("order:1"), "app:order:1");
    /// # Ok(()) }
    /// ```
    pub fn redis_key(&self, key: &str) -> String {
        let base = self.base(key);
        let mut out = String::with_capacity(base.len() + 1 + key.len());
        out.push_str(base);
        out.push(':');
        out.push_str(key);
        out
    }

    /// Whether this store talks to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// What every Redis key of `key`'s group starts with: the namespace, or
    /// on a cluster the namespace and the group's hash tag
    /// (`<namespace>{<group>}`), so that a key and the protocol's keys that
    /// cover it share a slot.
    pub(super) fn base(&self, key: &str) -> &str {
        &self.bases[self.group_index(key)]
    }

    /// The group of `key`: 0 on a single server.
    pub(super) fn group_index(&self, key: &str) -> usize {
        if self.bases.len() == 1 {
            0
        } else {
            group_of(key)
        }
    }

    pub(super) fn batches(&self) -> &Batches {
        &self.batches
    }

    /// How long a call may take.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The base of every group.
    pub(super) fn bases(&self) -> &[Box<str>] {
        &self.bases
    }

    /// The `SCAN` pattern of a key pattern: `<namespace>:<pattern>`, on a
    /// cluster `<namespace>{????}:<pattern>` (every group).
    pub(super) fn scan_pattern(&self, pattern: &str) -> String {
        if self.is_cluster() {
            format!(
                "{}{{{}}}:{pattern}",
                self.namespace,
                "?".repeat(GROUP_TAG_LEN)
            )
        } else {
            format!("{}:{pattern}", self.namespace)
        }
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
            Ok(result) => result.map_err(|e| map_error(op, self.timeout, self.is_cluster(), e)),
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
            None => self.scan_unlink(&self.scan_pattern(parsed.as_str())).await,
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
        self.scan_unlink(&self.scan_pattern("*")).await
    }

    /// Removes the keys `redis_pattern` matches: on each primary of a
    /// cluster, or on the one server.
    pub(super) async fn scan_unlink(&self, redis_pattern: &str) -> Result<u64, L2Error> {
        if !self.is_cluster() {
            return self.scan_unlink_on(None, redis_pattern).await;
        }
        let mut removed = 0;
        for slot in self.primaries().await? {
            removed += self.scan_unlink_on(Some(slot), redis_pattern).await?;
        }
        Ok(removed)
    }

    /// One slot served by each primary of the cluster (`CLUSTER SLOTS`:
    /// the first slot of a range of each primary), to route a `SCAN` to
    /// that primary through the client's own slot map.
    async fn primaries(&self) -> Result<Vec<u16>, L2Error> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let ranges: Vec<Vec<Value>> = self.query("CLUSTER SLOTS", &cmd).await?;
        let malformed = || L2Error::Command {
            op: "CLUSTER SLOTS",
            source: "an answer without a slot range and its primary".into(),
        };
        let mut seen = Vec::new();
        let mut slots = Vec::new();
        for range in ranges {
            let start = range
                .first()
                .and_then(|v| u16::from_redis_value_ref(v).ok())
                .ok_or_else(malformed)?;
            let Some(Value::Array(primary)) = range.get(2) else {
                return Err(malformed());
            };
            // The node's id when given, else its port.
            let id = primary.get(2).or(primary.get(1)).cloned();
            if !seen.contains(&id) {
                seen.push(id);
                slots.push(start);
            }
        }
        Ok(slots)
    }

    /// `SCAN` + `UNLINK` on one server: this store's, or the cluster's
    /// primary of `slot`.
    async fn scan_unlink_on(&self, slot: Option<u16>, redis_pattern: &str) -> Result<u64, L2Error> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(redis_pattern)
                .arg("COUNT")
                .arg(self.scan_count);
            let (next, keys): (u64, Vec<Vec<u8>>) = match (slot, &self.conn) {
                (Some(slot), Conn::Cluster(conn)) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                        Route::new(slot, SlotAddr::Master),
                    ));
                    let mut conn = conn.clone();
                    let page = self
                        .timed("SCAN", conn.route_command(scan, routing))
                        .await?;
                    FromRedisValue::from_redis_value(page)
                        .map_err(|e| map_error("SCAN", self.timeout, true, RedisError::from(e)))?
                }
                _ => self.query("SCAN", &scan).await?,
            };
            // On a cluster the client splits the UNLINK by slot.
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

    /// Whether the server is a Redis Cluster node (`INFO cluster`): `false`
    /// for a store that talks to it as a cluster.
    pub(crate) async fn is_cluster_node(&self) -> Result<bool, L2Error> {
        if self.is_cluster() {
            return Ok(false);
        }
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

/// How many groups a namespace's keys are spread over on a Redis Cluster:
/// each group is one hash slot, with its own generation counter and marks
/// (see the coherence protocol), so a namespace uses at most this many
/// primaries, and an invalidation of a prefix pattern writes one mark per
/// group.
pub const CLUSTER_GROUPS: usize = 16;

const GROUP_TAG_LEN: usize = 4;

/// The group of a cache key: its CRC16 (XMODEM, as Redis hashes keys) modulo
/// [`CLUSTER_GROUPS`]. The same in every process and every version: it is
/// part of the layout in Redis.
fn group_of(key: &str) -> usize {
    crc16_of(key) % CLUSTER_GROUPS
}

/// CRC16 (XMODEM) of `text`, what Redis Cluster hashes keys with.
fn crc16_of(text: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(text.as_bytes()))
}

/// The hash slots of Redis Cluster.
const SLOTS: usize = 16384;

/// The hash tag of a group: the first four hex digits whose hash slot lies
/// in the group's share of the slots, so that the groups spread over the
/// primaries as the slots do.
fn group_tag(group: usize) -> String {
    let share = group * SLOTS / CLUSTER_GROUPS..(group + 1) * SLOTS / CLUSTER_GROUPS;
    (0..=0xffff_u32)
        .map(|n| format!("{n:04x}"))
        .find(|tag| share.contains(&(crc16_of(tag) % SLOTS)))
        .expect("every share of the slots has a four-digit tag")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_spread_over_the_slots() {
        for group in 0..CLUSTER_GROUPS {
            let tag = group_tag(group);
            assert_eq!(tag.len(), GROUP_TAG_LEN);
            assert_eq!(
                crc16_of(&tag) % SLOTS * CLUSTER_GROUPS / SLOTS,
                group,
                "{tag}"
            );
        }
        let mut seen = [0; CLUSTER_GROUPS];
        for n in 0..1600 {
            seen[group_of(&format!("order:{n}"))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn cluster_urls() {
        let nodes = cluster_nodes("redis+cluster://:pw@a:1,b:2/0").unwrap();
        assert_eq!(nodes, ["redis://:pw@a:1/0", "redis://:pw@b:2/0"]);
        let nodes = cluster_nodes("redis://a:1, b:2").unwrap();
        assert_eq!(nodes, ["redis://a:1", "redis://b:2"]);
        let nodes = cluster_nodes("rediss+cluster://a:1,b:2#insecure").unwrap();
        assert_eq!(nodes, ["rediss://a:1#insecure", "rediss://b:2#insecure"]);
        let err = RedisL2::builder("redis+cluster://a:1", "app{1}")
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("may not contain {"), "{err}");
        assert!(RedisL2::builder("redis://a:1", "app{1}").check().is_ok());
        let err = RedisL2::builder("redis+cluster://:pw@a:1/3", "app")
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only database 0") && !err.contains("pw"),
            "{err}"
        );
        let err = RedisL2::builder("redis+cluster:///0", "app")
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("names no node"), "{err}");
    }

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
