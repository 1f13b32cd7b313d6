//! Redis Sentinel: the master of a monitored service, found through the
//! sentinels (the redis crate's `Sentinel`, which also checks that the
//! server it names calls itself master), and followed across failovers.
//!
//! A failover is noticed four ways: the sentinels announce it
//! (`+switch-master`, to which one sentinel at a time is subscribed), a
//! command fails as a moved master fails (its connection dropped or
//! refused, `READONLY` from a master turned replica, a timeout), the
//! sentinels are asked again every [`CHECK_EVERY`], or the first command
//! finds no master yet. Each asks the sentinels (one question at a time,
//! and again at once if something happened meanwhile); a different master
//! gets a new connection, and every holder of a [`Switches`] hears of it
//! (the backplane subscribes again, on the new master).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Cmd, RedisError, RedisFuture, RedisResult, Value};

use super::url::{redact, split_hosts};
use super::L2Error;

/// How often the sentinels are asked which server is master, failing or
/// not: a failover that leaves the old master answering (`SENTINEL
/// FAILOVER`, a partition) is followed within this.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The least time between two questions to the sentinels that follow each
/// other (calls failing one after another while the master is away).
const ASK_SPACING: Duration = Duration::from_millis(50);

/// The sentinels' channel of changes of master.
const SWITCH_CHANNEL: &str = "+switch-master";

/// The default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

/// A `redis+sentinel://` URL, parsed.
pub(super) struct SentinelUrl {
    /// `redis://host:port` of each sentinel.
    pub(super) sentinels: Vec<String>,
    /// The name the sentinels monitor the master under.
    pub(super) service: String,
    /// The master's user, password and database.
    pub(super) master: redis::RedisConnectionInfo,
}

/// Whether `url` names sentinels: `redis+sentinel://`.
pub(super) fn is_sentinel(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

const SHAPE: &str =
    "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<service>[/<db>]";

/// Parses `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<service>[/<db>]`:
/// the sentinels (port 26379 when left out), the service they monitor, and
/// the user, password and database of its master.
pub(super) fn parse(url: &str) -> Result<SentinelUrl, L2Error> {
    let shown = redact(url);
    if url.starts_with("rediss+sentinel://") {
        return Err(L2Error::Config(format!(
            "`{shown}`: TLS to sentinels is not supported; use {SHAPE}"
        )));
    }
    let Some(rest) = url.strip_prefix("redis+sentinel://") else {
        return Err(L2Error::Config(format!(
            "`{shown}` is not a sentinel URL: expected {SHAPE}"
        )));
    };
    let (auth, hosts, path) = split_hosts(rest);
    let sentinels: Vec<String> = hosts
        .map(|host| match host.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => format!("redis://{host}"),
            _ => format!("redis://{host}:{SENTINEL_PORT}"),
        })
        .collect();
    if sentinels.is_empty() {
        return Err(L2Error::Config(format!(
            "`{shown}` names no sentinel: expected {SHAPE}"
        )));
    }
    let mut parts = path.trim_start_matches('/').split('/');
    let service = parts.next().unwrap_or("").to_owned();
    let db = parts.next().unwrap_or("0");
    if service.is_empty() || service.contains(['?', '#']) || parts.next().is_some() {
        return Err(L2Error::Config(format!(
            "`{shown}` names no service: expected {SHAPE}, the service being the name the sentinels monitor the master under (`sentinel monitor <service> ...`)"
        )));
    }
    if db.parse::<u16>().is_err() {
        return Err(L2Error::Config(format!(
            "`{shown}`: `{db}` is not a database number: expected {SHAPE}"
        )));
    }
    for sentinel in &sentinels {
        redis::Client::open(sentinel.as_str()).map_err(|e| {
            L2Error::Config(format!(
                "`{shown}`: a sentinel's address does not parse ({e}): expected {SHAPE}, with a password's `/ ? # @` percent-encoded"
            ))
        })?;
    }
    // The master's settings, read the way a server URL is.
    let master = redis::Client::open(format!("redis://{auth}127.0.0.1/{db}"))
        .map_err(|e| L2Error::Config(format!("`{shown}` does not parse: {e}")))?
        .get_connection_info()
        .redis_settings()
        .clone();
    Ok(SentinelUrl {
        sentinels,
        service,
        master,
    })
}

/// The connection to a service's master, through its sentinels. Cloning is
/// cheap; clones share the connection.
#[derive(Clone)]
pub(crate) struct SentinelConn(Arc<Inner>);

struct Inner {
    service: String,
    sentinels: tokio::sync::Mutex<Sentinel>,
    /// A client of each sentinel, for the subscription to their news.
    sentinel_clients: Vec<redis::Client>,
    /// How to talk to the master: its user, password and database.
    master: SentinelNodeConnectionInfo,
    db: i64,
    config: ConnectionManagerConfig,
    /// The longest a question to the sentinels takes, with the check of the
    /// master they name.
    ask_within: Duration,
    current: parking_lot::Mutex<Option<Arc<Master>>>,
    /// The addresses of the master's replicas that the sentinels found up
    /// when last asked.
    replica_addrs: parking_lot::Mutex<Vec<(String, u16)>>,
    /// Until when writes wait for no replica: none confirmed the last
    /// wait, and every one refused connections (they are down, and no
    /// failover can promote them meanwhile).
    no_wait_until: parking_lot::Mutex<Option<Instant>>,
    /// Counts changes of master.
    switches: tokio::sync::watch::Sender<u64>,
    /// A question to the sentinels is under way; something happened since
    /// it was asked; the task that listens to the sentinels runs.
    asking: AtomicBool,
    again: AtomicBool,
    checking: AtomicBool,
}

/// The master, and the connection to it.
struct Master {
    addr: Arc<str>,
    client: redis::Client,
    conn: ConnectionManager,
}

/// Tells of changes of master: [`changed`](Switches::changed) returns at
/// the next one.
pub(crate) struct Switches(tokio::sync::watch::Receiver<u64>);

impl Switches {
    /// Returns at the next change of master (never, once the connection is
    /// gone).
    pub(crate) async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl fmt::Debug for SentinelConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConn")
            .field("service", &self.0.service)
            .field("master", &self.master_addr())
            .finish()
    }
}

impl SentinelConn {
    pub(super) fn new(
        url: SentinelUrl,
        config: ConnectionManagerConfig,
        ask_within: Duration,
    ) -> Result<SentinelConn, L2Error> {
        let db = url.master.db();
        let sentinel_clients = url
            .sentinels
            .iter()
            .map(|sentinel| redis::Client::open(sentinel.as_str()))
            .collect::<RedisResult<Vec<_>>>()
            .map_err(|e| L2Error::Config(format!("the sentinels do not parse: {e}")))?;
        let sentinels = Sentinel::build(url.sentinels)
            .map_err(|e| L2Error::Config(format!("the sentinels do not parse: {e}")))?;
        Ok(SentinelConn(Arc::new(Inner {
            service: url.service,
            sentinels: tokio::sync::Mutex::new(sentinels),
            sentinel_clients,
            master: SentinelNodeConnectionInfo::default().set_redis_connection_info(url.master),
            db,
            config,
            ask_within,
            current: parking_lot::Mutex::new(None),
            replica_addrs: parking_lot::Mutex::new(Vec::new()),
            no_wait_until: parking_lot::Mutex::new(None),
            switches: tokio::sync::watch::channel(0).0,
            asking: AtomicBool::new(false),
            again: AtomicBool::new(false),
            checking: AtomicBool::new(false),
        })))
    }

    /// `host:port` of the master in use, once one was found.
    pub(crate) fn master_addr(&self) -> Option<Arc<str>> {
        self.0.current.lock().as_ref().map(|m| Arc::clone(&m.addr))
    }

    /// Changes of master from now on.
    pub(crate) fn switches(&self) -> Switches {
        let mut rx = self.0.switches.subscribe();
        rx.borrow_and_update();
        Switches(rx)
    }

    /// A client of the master (for the backplane's own connection): the
    /// one in use, or the one the sentinels name now.
    pub(crate) async fn master_client(&self) -> RedisResult<redis::Client> {
        Ok(self.master().await?.client.clone())
    }

    async fn master(&self) -> RedisResult<Arc<Master>> {
        if let Some(master) = self.0.current.lock().clone() {
            return Ok(master);
        }
        self.ask(false).await
    }

    /// The number of changes of master so far: a write and the wait for
    /// its replica go to the same master only if it did not change.
    pub(crate) fn epoch(&self) -> u64 {
        *self.0.switches.borrow()
    }

    /// Asks the sentinels which server is master (after the question under
    /// way, if one is: the first calls share the first answer, `again`
    /// false), and moves to it if it is another.
    async fn ask(&self, again: bool) -> RedisResult<Arc<Master>> {
        self.start_checking();
        let mut sentinels = self.0.sentinels.lock().await;
        if !again {
            if let Some(master) = self.0.current.lock().clone() {
                return Ok(master);
            }
        }
        let asked = sentinels.async_master_for(&self.0.service, Some(&self.0.master));
        let client = match tokio::time::timeout(self.0.ask_within, asked).await {
            Ok(client) => client?,
            Err(_) => {
                return Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no sentinel named a master for `{}` within {:?}",
                        self.0.service, self.0.ask_within
                    ),
                )))
            }
        };
        let addr: Arc<str> = client.get_connection_info().addr().to_string().into();
        if let Some(replicas) = self.live_replicas().await {
            *self.0.replica_addrs.lock() = replicas;
        }
        let mut current = self.0.current.lock();
        if let Some(master) = current.as_ref().filter(|m| m.addr == addr) {
            return Ok(Arc::clone(master));
        }
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), self.0.config.clone())?;
        let master = Arc::new(Master { addr, client, conn });
        let moved = current.replace(Arc::clone(&master)).is_some();
        drop(current);
        if moved {
            self.0.switches.send_modify(|n| *n += 1);
        }
        Ok(master)
    }

    /// How many replica acknowledgements a write that must outlive a
    /// failover waits for (`WAIT`): one when the sentinels know a replica
    /// that is up, none otherwise.
    pub(crate) fn acks_needed(&self) -> usize {
        let mut no_wait_until = self.0.no_wait_until.lock();
        if no_wait_until.is_some_and(|until| Instant::now() < until) {
            return 0;
        }
        *no_wait_until = None;
        self.replicas().min(1)
    }

    /// After a wait that no replica confirmed: whether every replica of
    /// the master is down (refuses connections: nothing listens there), so
    /// that none can be promoted without what only this master holds. Then
    /// writes wait for none for [`CHECK_EVERY`]: a replica that died costs
    /// one wait a second, not one per invalidation. A replica that answers
    /// (as master: a failover under way; as a replica: behind) or does not
    /// answer (cut off, it may be promoted on the other side) could be
    /// promoted without the write.
    pub(crate) async fn replicas_down(&self, within: Duration) -> bool {
        let addrs = self.0.replica_addrs.lock().clone();
        let Some(master) = self.0.current.lock().clone() else {
            return false;
        };
        for (ip, port) in addrs {
            let info = master
                .client
                .get_connection_info()
                .clone()
                .set_addr(redis::ConnectionAddr::Tcp(ip, port));
            let Ok(client) = redis::Client::open(info) else {
                continue;
            };
            let answer = async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<Value>(&mut conn).await
            };
            match tokio::time::timeout(within, answer).await {
                Ok(Err(e)) if e.is_connection_refusal() => {}
                _ => return false,
            }
        }
        *self.0.no_wait_until.lock() = Some(Instant::now() + CHECK_EVERY);
        true
    }

    /// The master's replicas that the sentinels found up when last asked.
    pub(crate) fn replicas(&self) -> usize {
        self.0.replica_addrs.lock().len()
    }

    /// The replicas of the service the first sentinel that answers finds
    /// up (`SENTINEL REPLICAS`: not flagged down). A replica that
    /// lost its link to the master still counts: a failover may promote
    /// it, and what it does not hold would be lost.
    async fn live_replicas(&self) -> Option<Vec<(String, u16)>> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("REPLICAS").arg(&self.0.service);
        for client in &self.0.sentinel_clients {
            let asked = async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                cmd.query_async::<Vec<std::collections::HashMap<String, String>>>(&mut conn)
                    .await
            };
            let Ok(Ok(replicas)) = tokio::time::timeout(self.0.ask_within, asked).await else {
                continue;
            };
            let up = replicas.iter().filter_map(|replica| {
                let flags = replica.get("flags").map_or("", String::as_str);
                let down = ["s_down", "o_down", "disconnected"]
                    .iter()
                    .any(|flag| flags.contains(flag));
                let addr = (
                    replica.get("ip")?.clone(),
                    replica.get("port")?.parse().ok()?,
                );
                (!down).then_some(addr)
            });
            return Some(up.collect());
        }
        None
    }

    /// A call failed as calls to a moved master fail, or the sentinels
    /// announced a change: ask them, in the background (after the question
    /// under way, if one is).
    pub(crate) fn suspect(&self) {
        self.0.again.store(true, Ordering::SeqCst);
        if self.0.asking.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.0.asking.store(false, Ordering::SeqCst);
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            loop {
                let asking = Lowers::new(&this.0, |inner| &inner.asking);
                this.0.again.store(false, Ordering::SeqCst);
                let _ = this.ask(true).await;
                drop(asking);
                if !this.0.again.load(Ordering::SeqCst)
                    || this.0.asking.swap(true, Ordering::SeqCst)
                {
                    return;
                }
                tokio::time::sleep(ASK_SPACING).await;
            }
        });
    }

    /// Starts, once, the task that listens to the sentinels' announcements
    /// of a new master and asks them every [`CHECK_EVERY`], for as long as
    /// a clone of this connection lives.
    fn start_checking(&self) {
        if self.0.checking.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.0.checking.store(false, Ordering::SeqCst);
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.0);
        let (clients, service, within) = (
            self.0.sentinel_clients.clone(),
            self.0.service.clone(),
            self.0.ask_within,
        );
        let checking = Lowers::new(&self.0, |inner| &inner.checking);
        runtime.spawn(async move {
            // Ends with the connection, or with its runtime: a later
            // question starts it again.
            let _checking = checking;
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let suspect = || weak.upgrade().map(|inner| SentinelConn(inner).suspect());
            for next in (0..clients.len()).cycle() {
                let subscribed = tokio::time::timeout(within, async {
                    let mut pubsub = clients[next].get_async_pubsub().await.ok()?;
                    pubsub.subscribe(SWITCH_CHANNEL).await.ok()?;
                    Some(pubsub)
                })
                .await
                .ok()
                .flatten();
                let Some(pubsub) = subscribed else {
                    tick.tick().await;
                    suspect()?;
                    continue;
                };
                let mut news = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        message = news.next() => match message {
                            // `<service> <old ip> <old port> <new ip> <new port>`
                            Some(message) => {
                                let payload = message.get_payload_bytes();
                                if payload.split(|b| *b == b' ').next() == Some(service.as_bytes()) {
                                    suspect()?;
                                }
                            }
                            None => break,
                        },
                        _ = tick.tick() => {
                            suspect()?;
                        }
                    }
                }
            }
            Some(())
        });
    }
}

/// Lowers a flag of the connection when dropped: at the end of a task, or
/// its cancellation (its runtime shut down). It holds the connection only
/// weakly, so that a task that runs for as long as the connection lives
/// does not keep it alive.
struct Lowers {
    inner: Weak<Inner>,
    flag: fn(&Inner) -> &AtomicBool,
}

impl Lowers {
    fn new(inner: &Arc<Inner>, flag: fn(&Inner) -> &AtomicBool) -> Lowers {
        Lowers {
            inner: Arc::downgrade(inner),
            flag,
        }
    }
}

impl Drop for Lowers {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            (self.flag)(&inner).store(false, Ordering::SeqCst);
        }
    }
}

/// Whether `e` is how a call to a master that moved fails: its connection
/// dropped or refused, or the server now a replica.
fn moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.master().await?.conn.clone();
            let result = conn.req_packed_command(cmd).await;
            if result.as_ref().is_err_and(moved) {
                self.suspect();
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.master().await?.conn.clone();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if result.as_ref().is_err_and(moved) {
                self.suspect();
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let url = parse("redis+sentinel://:pw@a:1,b/orders/2").unwrap();
        assert_eq!(url.sentinels, ["redis://a:1", "redis://b:26379"]);
        assert_eq!(url.service, "orders");
        assert_eq!(url.master.db(), 2);
        assert_eq!(url.master.password(), Some("pw"));
        let url = parse("redis+sentinel://a:1/orders").unwrap();
        assert_eq!(url.master.db(), 0);
        assert_eq!(url.master.password(), None);
        for (bad, says) in [
            ("redis+sentinel://a:1", "names no service"),
            ("redis+sentinel://a:1/", "names no service"),
            ("redis+sentinel://a:1/s/1/x", "names no service"),
            ("redis+sentinel:///s", "names no sentinel"),
            ("redis+sentinel://a:1/s/x", "not a database number"),
            ("rediss+sentinel://a:1/s", "TLS to sentinels"),
        ] {
            let err = parse(bad).err().expect(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let err = parse("redis+sentinel://:secret@a:1")
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
