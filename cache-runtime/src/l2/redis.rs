//! The store: raw bytes under namespaced keys in Redis, over one
//! multiplexed connection that reconnects by itself (the redis crate's
//! `ConnectionManager`), or the redis crate's async cluster client for a
//! Redis Cluster; every command under a timeout.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisError, RedisFuture, ScriptInvocation, Value};

use super::cluster::{group_of, Replication, Shard, GROUP_TAG_LEN};
pub(crate) use super::diagnose::CLUSTER_NOT_DECLARED;
use super::diagnose::{map_error, Probe};
use super::sentinel::SentinelConn;
use super::L2Error;
use crate::pattern::Pattern;

/// Pattern bytes times key bytes one `SCAN` of a costly pattern may
/// match: about 10 ms of the server's time at its glob's pace (see
/// `benches/glob.rs` and `benches/l2.rs`, the worst scan).
const SCAN_BUDGET: usize = 8 << 20;
/// The fewest keys a `SCAN` asks for, however costly the pattern.
const MIN_SCAN_COUNT: usize = 10;
/// What a stored key adds to the namespace and the key: `:`, or on a
/// cluster `{<group>}:`.
const SCAN_KEY_OVERHEAD: usize = 8;

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
/// [`cluster`](crate::RedisL2Builder::cluster)) the keys of a namespace are spread
/// over [`CLUSTER_GROUPS`](crate::CLUSTER_GROUPS) hash-tagged groups, stored
/// as `<namespace>{<group>}:<key>`, whose slots are spread evenly over the
/// slot range; a pattern is walked with `SCAN` on every primary.
///
/// Every command runs under [`timeout`](crate::RedisL2Builder::timeout) (250 ms by
/// default) and fails with [`L2Error::Timeout`] past it. A dropped
/// connection fails the commands in flight with [`L2Error::Connection`] and
/// is re-established in the background; later commands use the new one.
/// A connection that cannot be made fails the command at once, with its
/// cause ([`L2Error::Unavailable`]: refused, authentication, no such
/// database, TLS), and the next command tries again: commands never wait
/// the timeout for a server that refuses them.
///
/// Cloning is cheap and clones share the connection.
///
/// A [`Cache`](crate::Cache) with a Redis backend keeps its own protocol on
/// top of these keys (a generation counter, tombstones and prefix tags in
/// keys of the form `<namespace>[..]`, or `<namespace>{<group>}[..]` on a
/// cluster, and in front of each envelope it writes the generation it was
/// filled under and a digest of its key, 16 bytes) so that invalidations on one instance bind
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
    pub(super) conn: Conn,
    pub(super) namespace: Box<str>,
    /// What the keys of each group start with: the namespace alone, or on
    /// a cluster one `<namespace>{<tag>}` per group (see `base`).
    pub(super) bases: Arc<[Box<str>]>,
    pub(super) timeout: Duration,
    pub(super) scan_count: usize,
    /// `host:port/db`, never the password.
    pub(super) addr: Box<str>,
    /// The single server, to tell what an unclear failure means.
    pub(super) probe: Option<Arc<Probe>>,
    /// On a cluster, what an invalidation waits for.
    pub(super) replication: Arc<Replication>,
}

/// The connection: to one server, to a cluster, or to the master that
/// Redis Sentinel names.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
            Conn::Sentinel(conn) => conn.req_packed_command(cmd),
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
            Conn::Sentinel(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
            Conn::Sentinel(conn) => conn.get_db(),
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

    /// The connection to the master Redis Sentinel names, for a store
    /// behind Sentinel.
    pub(crate) fn sentinel(&self) -> Option<&SentinelConn> {
        match &self.conn {
            Conn::Sentinel(conn) => Some(conn),
            _ => None,
        }
    }

    /// Behind Sentinel, when the sentinels know a replica that is up,
    /// waits until it holds this connection's writes so far (`WAIT`): an
    /// invalidation that a failover could lose (no replica holds it: they
    /// are behind, cut off, or one already took over) fails, and is queued
    /// and replayed on the master the sentinels name, instead of being
    /// taken as done. One that no replica confirms because every replica
    /// refuses connections (they are down) is done.
    ///
    /// `epoch` is [`master_epoch`](Self::master_epoch) from before the
    /// writes: when the master changed since, what they wrote may be only
    /// on the old one (and a wait on the new connection would confirm
    /// nothing), so that fails too.
    ///
    /// On a cluster, the same of each primary the writes reached: the one
    /// that serves `key`'s group when the writes were to that key alone,
    /// else every primary (see `cluster_replicated`).
    ///
    /// # Errors
    /// [`L2ErrorKind::NotReplicated`](super::L2ErrorKind::NotReplicated)
    /// when no replica confirms within three quarters of the timeout and
    /// one is up or cut off, or when the master changed; the errors of any
    /// call.
    pub(crate) async fn replicated(&self, epoch: u64, key: Option<&str>) -> Result<(), L2Error> {
        let conn = match &self.conn {
            Conn::Single(_) => return Ok(()),
            Conn::Cluster(conn) => {
                let slot = key.map(|key| super::cluster::slot_of(&self.redis_key(key)));
                return self.cluster_replicated(conn, slot).await;
            }
            Conn::Sentinel(conn) => conn,
        };
        let not_replicated = |why: String| L2Error::Unavailable {
            op: "WAIT",
            kind: super::L2ErrorKind::NotReplicated,
            message: format!(
                "{why} (the invalidation is queued, and replayed on the master the sentinels name)"
            ),
        };
        let moved = || {
            not_replicated(format!(
                "the master of {} changed during the invalidation",
                self.addr
            ))
        };
        if conn.epoch() != epoch {
            return Err(moved());
        }
        let needed = conn.acks_needed();
        if needed == 0 {
            return Ok(());
        }
        let within = (self.timeout.as_millis() * 3 / 4).max(1) as u64;
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(needed).arg(within);
        let acked: usize = self.query("WAIT", &cmd).await?;
        if conn.epoch() != epoch {
            return Err(moved());
        }
        if acked >= needed || conn.replicas_down(self.timeout).await {
            return Ok(());
        }
        Err(not_replicated(format!(
            "no replica of {} confirmed the invalidation within {within} ms, and one is up or cut off: a failover could promote it without the invalidation",
            self.addr
        )))
    }

    /// Behind Sentinel, the number of changes of master so far (0
    /// otherwise): taken before an invalidation, for
    /// [`replicated`](Self::replicated).
    pub(crate) fn master_epoch(&self) -> u64 {
        self.sentinel().map_or(0, SentinelConn::epoch)
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

    /// How long a call may take.
    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The base of every group.
    pub(crate) fn bases(&self) -> &[Box<str>] {
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
            Err(_) => {
                // A master that stopped answering may have been replaced.
                if let Conn::Sentinel(conn) = &self.conn {
                    conn.suspect();
                }
                Err(L2Error::Timeout {
                    op,
                    after: self.timeout,
                })
            }
            Ok(result) => {
                result.map_err(|e| map_error(op, self.timeout, &self.addr, self.is_cluster(), e))
            }
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
            None => {
                let redis_pattern = self.scan_pattern(parsed.as_str());
                self.scan_unlink(&redis_pattern, parsed.cost_factor()).await
            }
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
        self.scan_unlink(&self.scan_pattern("*"), 0).await
    }

    /// The `COUNT` of each `SCAN` of a pattern whose glob costs `cost`
    /// (see `Pattern::cost_factor`) per key byte: the configured count, cut
    /// so that one `SCAN` matches at most [`SCAN_BUDGET`] pattern bytes
    /// against key bytes for keys this library writes (at most
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES) after the namespace), so
    /// that no `SCAN` of a costly pattern holds the server for long.
    pub(crate) fn scan_count_for(&self, cost: usize) -> usize {
        let longest_key = crate::MAX_KEY_BYTES + self.namespace.len() + SCAN_KEY_OVERHEAD;
        let per_key = cost.saturating_mul(longest_key).max(1);
        (SCAN_BUDGET / per_key).clamp(MIN_SCAN_COUNT, self.scan_count.max(MIN_SCAN_COUNT))
    }

    /// Removes the keys `redis_pattern` matches, whose glob costs `cost`
    /// per key byte: on each primary of a cluster, or on the one server.
    pub(super) async fn scan_unlink(
        &self,
        redis_pattern: &str,
        cost: usize,
    ) -> Result<u64, L2Error> {
        let count = self.scan_count_for(cost);
        if !self.is_cluster() {
            return self.scan_unlink_on(None, redis_pattern, count).await;
        }
        let mut removed = 0;
        for slot in self.primaries().await? {
            removed += self
                .scan_unlink_on(Some(slot), redis_pattern, count)
                .await?;
        }
        Ok(removed)
    }

    /// One slot served by each primary of the cluster, to route a `SCAN`
    /// to that primary through the client's own slot map.
    async fn primaries(&self) -> Result<Vec<u16>, L2Error> {
        Ok(self
            .shards()
            .await?
            .iter()
            .map(|shard| shard.slot)
            .collect())
    }

    /// The primaries of the cluster (`CLUSTER NODES`, asked of a
    /// primary): the slots each serves, its address, and its replicas that
    /// the cluster does not flag as failed.
    pub(crate) async fn shards(&self) -> Result<Vec<Shard>, L2Error> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text: String = match &self.conn {
            Conn::Cluster(conn) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
                let answer = self
                    .timed("CLUSTER NODES", conn.clone().route_command(cmd, routing))
                    .await?;
                FromRedisValue::from_redis_value(answer).map_err(|e| {
                    map_error(
                        "CLUSTER NODES",
                        self.timeout,
                        &self.addr,
                        true,
                        RedisError::from(e),
                    )
                })?
            }
            _ => self.query("CLUSTER NODES", &cmd).await?,
        };
        let shards = super::cluster::parse_nodes(&text);
        if shards.is_empty() {
            return Err(L2Error::Command {
                op: "CLUSTER NODES",
                source: "an answer without a primary that serves slots".into(),
            });
        }
        Ok(shards)
    }

    /// On a cluster, waits until a replica of each primary that has one
    /// (or of the primary that serves `slot`, when given) holds this
    /// client's writes to it so far (`WAIT 1` on each, at once): an
    /// invalidation that the loss of a primary could undo (its replica,
    /// promoted, would not hold it) fails, and is queued and replayed on
    /// the primary that serves its slots then. A primary with
    /// no replica in step with it (each down, or copying its data anew
    /// after a restart: `INFO replication` lists none online) is not
    /// waited for, for a second. The layout is asked at most once a
    /// second; when it cannot be, the last one known is used.
    async fn cluster_replicated(
        &self,
        conn: &ClusterConnection,
        slot: Option<u16>,
    ) -> Result<(), L2Error> {
        let replication = &self.replication;
        let shards = match replication.layout(true) {
            Some(shards) => shards,
            None => match self.shards().await {
                Ok(shards) => {
                    let shards: Arc<[Shard]> = shards.into();
                    replication.set_layout(Arc::clone(&shards));
                    shards
                }
                Err(e) => replication.layout(false).ok_or(e)?,
            },
        };
        let within = (self.timeout.as_millis() * 3 / 4).max(1) as u64;
        let waits = shards
            .iter()
            .filter(|shard| slot.is_none_or(|slot| shard.serves(slot)))
            .filter(|shard| shard.replicas > 0 && !replication.is_quiet(shard.slot))
            .map(|shard| async move {
                let routing = || {
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                        shard.slot,
                        SlotAddr::Master,
                    )))
                };
                let mut cmd = redis::cmd("WAIT");
                cmd.arg(1).arg(within);
                let answer = self
                    .timed("WAIT", conn.clone().route_command(cmd, routing()))
                    .await?;
                if usize::from_redis_value(answer).is_ok_and(|acked| acked >= 1) {
                    return Ok(());
                }
                let mut cmd = redis::cmd("INFO");
                cmd.arg("replication");
                let info = self
                    .timed("INFO", conn.clone().route_command(cmd, routing()))
                    .await?;
                let online = String::from_redis_value(info).is_ok_and(|info| {
                    info.lines()
                        .any(|line| line.starts_with("slave") && line.contains("state=online"))
                });
                if !online {
                    replication.quiet_for_a_while(shard.slot);
                    return Ok(());
                }
                Err(L2Error::Unavailable {
                    op: "WAIT",
                    kind: super::L2ErrorKind::NotReplicated,
                    message: format!(
                        "no replica of the primary serving slot {} confirmed the invalidation within {within} ms, and one is online: a failover could promote it without the invalidation (the invalidation is queued, and replayed)",
                        shard.slot
                    ),
                })
            });
        futures_util::future::try_join_all(waits).await?;
        Ok(())
    }

    /// `SCAN` + `UNLINK` on one server: this store's, or the cluster's
    /// primary of `slot`.
    async fn scan_unlink_on(
        &self,
        slot: Option<u16>,
        redis_pattern: &str,
        count: usize,
    ) -> Result<u64, L2Error> {
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(redis_pattern)
                .arg("COUNT")
                .arg(count);
            let (next, keys): (u64, Vec<Vec<u8>>) = match (slot, &self.conn) {
                (Some(slot), Conn::Cluster(conn)) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                        Route::new(slot, SlotAddr::Master),
                    ));
                    let mut conn = conn.clone();
                    let page = self
                        .timed("SCAN", conn.route_command(scan, routing))
                        .await?;
                    FromRedisValue::from_redis_value(page).map_err(|e| {
                        map_error("SCAN", self.timeout, &self.addr, true, RedisError::from(e))
                    })?
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

    /// `PUBLISH channel payload`, on a cluster `SPUBLISH` (sharded
    /// pub/sub, to the primary of the channel's slot); returns how many
    /// subscribers got it.
    pub(crate) async fn publish(&self, channel: &str, payload: &[u8]) -> Result<u64, L2Error> {
        let op = if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let mut cmd = redis::cmd(op);
        cmd.arg(channel).arg(payload);
        self.query(op, &cmd).await
    }

    /// `PING`, timed: the round trip.
    ///
    /// When it fails without a clear cause (a timeout, a reset connection)
    /// on a single server, a second, plain-text connection looks at the
    /// port, to tell a TLS mismatch ([`L2ErrorKind::Tls`](crate::L2ErrorKind::Tls): `rediss://` to a
    /// port that answers in plain text, `redis://` to one that hangs up on
    /// plain text) or a refused connection from a slow server; this takes
    /// at most the timeout again.
    ///
    /// # Errors
    /// Timeout, connection or server errors; [`L2Error::Unavailable`] with
    /// the cause when it is known.
    ///
    /// ```no_run
    /// # async fn run(l2: cache_runtime::RedisL2) -> Result<(), cache_runtime::L2Error> {
    /// let rtt = l2.ping().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, L2Error> {
        let started = Instant::now();
        let pong: String = match self.query("PING", &redis::cmd("PING")).await {
            Ok(pong) => pong,
            Err(e) => {
                return Err(match &self.probe {
                    Some(probe) => probe.diagnose(e, self.timeout).await,
                    None => e,
                })
            }
        };
        if pong != "PONG" {
            return Err(L2Error::Command {
                op: "PING",
                source: format!("unexpected answer `{}`", pong.escape_debug()).into(),
            });
        }
        Ok(started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
