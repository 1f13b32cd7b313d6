//! The settings of a [`RedisL2`] and how it connects: the URL checked and
//! parsed (one server, or the nodes of a cluster), the connection made now
//! or on first use.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};

use super::cluster::{group_tag, CLUSTER_GROUPS};
use super::diagnose::{map_error, Probe};
use super::redis::{Conn, RedisL2};
use super::sentinel::{self, SentinelConn};
use super::url::{cluster_nodes, cluster_scheme, open, redact};
use super::{validate_namespace, L2Error};

/// Where a store's server is, parsed from its URL.
enum Endpoint {
    Single(redis::Client, ConnectionManagerConfig),
    /// The cluster client, and a client of each node the URL names (for
    /// pub/sub).
    Cluster(ClusterClient, ClusterConfig, Vec<redis::Client>),
    /// The master of a service that Redis Sentinel monitors.
    Sentinel(SentinelConn),
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
    pub(super) url: String,
    pub(super) namespace: String,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) scan_count: usize,
    pub(super) max_ttl: Duration,
    pub(super) cluster: bool,
}

impl fmt::Debug for RedisL2Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisL2Builder")
            .field("url", &redact(&self.url))
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("scan_count", &self.scan_count)
            .field("max_ttl", &self.max_ttl)
            .field("cluster", &self.is_cluster())
            .finish()
    }
}

impl RedisL2 {
    /// Settings for a store at `url` (`redis://[:password@]host:port[/db]`,
    /// `rediss://` for TLS with the `tls` feature, or
    /// `redis+cluster://[:password@]host:port[,host:port...]` for a Redis
    /// Cluster, or
    /// `redis+sentinel://[:password@]host[:port][,host[:port]...]/<service>[/<db>]`
    /// for the master that the sentinels at those addresses (port 26379
    /// when left out) monitor as `<service>`, the password and database
    /// being the master's) whose keys all start with `namespace`.
    ///
    /// Behind Sentinel the store follows the master across failovers: it
    /// hears the sentinels' `+switch-master`, asks them again when a call
    /// fails as calls to a replaced master fail (`READONLY`, a dropped
    /// connection, a timeout) and every second, and the backplane
    /// subscribes again on the new master. An invalidation is done only
    /// once a replica holds it too (`WAIT 1`, while the sentinels find a
    /// replica up), so that a failover cannot lose it; otherwise it is
    /// queued and replayed on the new master.
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
            max_ttl: Duration::from_secs(24 * 3600),
            cluster: false,
        }
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
        self.max_ttl = max_ttl;
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

    /// Connects now, and sends `PING`: fails if Redis does not answer
    /// within the connect timeout, or cannot be used (a server that wants
    /// a password accepts a connection without one, and refuses its
    /// commands). Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`L2Error::Config`] for a bad URL or namespace, [`L2Error::Timeout`]
    /// or [`L2Error::Connection`] when Redis cannot be reached,
    /// [`L2Error::Unavailable`] for a known cause (refused, authentication,
    /// no such database, TLS).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cache_runtime::L2Error> {
    /// let l2 = cache_runtime::RedisL2::builder("redis://127.0.0.1:6380", "app").connect().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<RedisL2, L2Error> {
        let (endpoint, addr) = self.endpoint()?;
        let probe = endpoint.probe();
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
                // Found on the first command, the `PING` below.
                Endpoint::Sentinel(conn) => Ok(Conn::Sentinel(conn)),
            }
        };
        let failed = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(conn)) => {
                let store = self.finish(conn, addr, probe);
                return store.ping().await.map(|_| store);
            }
            Err(_) => L2Error::Timeout {
                op: "CONNECT",
                after: self.connect_timeout,
            },
            Ok(Err(e)) => map_error("CONNECT", self.connect_timeout, &addr, self.is_cluster(), e),
        };
        Err(match probe {
            Some(probe) => probe.diagnose(failed, self.connect_timeout).await,
            None => failed,
        })
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
        let probe = endpoint.probe();
        let conn = match endpoint {
            Endpoint::Single(client, config) => Conn::Single(
                ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(|e| map_error("CONNECT", self.connect_timeout, &addr, false, e))?,
            ),
            Endpoint::Cluster(client, config, _) => {
                Conn::Cluster(client.get_pending_async_connection_with_config(config))
            }
            Endpoint::Sentinel(conn) => Conn::Sentinel(conn),
        };
        Ok(self.finish(conn, addr, probe))
    }

    /// Clients of this store's server, or of the cluster nodes its URL
    /// names (where the backplane asks for the cluster's layout); none
    /// behind Sentinel, whose master is found by the store's connection.
    pub(crate) fn redis_clients(&self) -> Result<Vec<redis::Client>, L2Error> {
        Ok(match self.endpoint()?.0 {
            Endpoint::Single(client, _) => vec![client],
            Endpoint::Cluster(_, _, nodes) => nodes,
            Endpoint::Sentinel(_) => Vec::new(),
        })
    }

    fn endpoint(&self) -> Result<(Endpoint, String), L2Error> {
        validate_namespace(&self.namespace)?;
        let url = self.url.trim();
        if sentinel::is_sentinel(url) {
            let parsed = sentinel::parse(url)?;
            let addr = format!(
                "the master of `{}` (sentinels {})/{}",
                parsed.service,
                parsed
                    .sentinels
                    .iter()
                    .map(|s| s.trim_start_matches("redis://"))
                    .collect::<Vec<_>>()
                    .join(","),
                parsed.master.db()
            );
            let conn = SentinelConn::new(parsed, self.manager_config(), self.connect_timeout)?;
            return Ok((Endpoint::Sentinel(conn), addr));
        }
        if !self.is_cluster() {
            let client = open(url)?;
            let info = client.get_connection_info();
            let addr = format!("{}/{}", info.addr(), info.redis_settings().db());
            return Ok((Endpoint::Single(client, self.manager_config()), addr));
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
}

impl RedisL2Builder {
    /// The settings of a connection to one server.
    fn manager_config(&self) -> ConnectionManagerConfig {
        // Every command runs under this store's timeout (`timed`): a
        // response timeout of the connection's own would be a second timer
        // per command, and would change nothing (it does not make the
        // manager reconnect; it drops the reply, as `timed` does). One
        // attempt per connection: retried within a command, a refused
        // connection would wait out the command's timeout and read as one.
        // A failed attempt fails the command with its cause, and the next
        // command makes a new attempt (the breaker spaces them while Redis
        // stays away).
        ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(self.connect_timeout))
            .set_number_of_retries(0)
    }
}

impl Endpoint {
    fn probe(&self) -> Option<Probe> {
        let Endpoint::Single(client, _) = self else {
            return None;
        };
        let info = client.get_connection_info();
        let (host, port, tls) = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host, *port, false),
            redis::ConnectionAddr::TcpTls { host, port, .. } => (host, *port, true),
            _ => return None,
        };
        Some(Probe {
            host: host.clone(),
            port,
            tls,
            addr: format!("{}:{port}", host),
        })
    }
}

/// The end of [`RedisL2Builder::connect`] and
/// [`connect_lazy`](RedisL2Builder::connect_lazy): the store over `conn`.
impl RedisL2Builder {
    pub(super) fn finish(self, conn: Conn, addr: String, probe: Option<Probe>) -> RedisL2 {
        let bases = match conn {
            Conn::Single(_) | Conn::Sentinel(_) => vec![self.namespace.as_str().into()],
            Conn::Cluster(_) => (0..CLUSTER_GROUPS)
                .map(|group| format!("{}{{{}}}", self.namespace, group_tag(group)).into())
                .collect(),
        };
        let bases: Arc<[Box<str>]> = bases.into();
        RedisL2 {
            conn,
            bases,
            namespace: self.namespace.into(),
            timeout: self.timeout,
            scan_count: self.scan_count,
            addr: addr.into(),
            probe: probe.map(Arc::new),
            replication: Arc::default(),
        }
    }
}
