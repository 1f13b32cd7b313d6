//! The invalidation backplane: every invalidation that reached Redis is
//! published on the namespace's channel (`<namespace>[bus]`; on a cluster,
//! sharded, on the channel of a group it wrote to, `<namespace>{<group>}[bus]`,
//! and subscribed on every group's), and every instance subscribed applies
//! it to its in-process tier, skipping its own. An instance that is not subscribed (not yet, or its subscription
//! dropped) may have missed messages: it does not serve from its in-process
//! tier until it has subscribed again and emptied it.
//!
//! Being subscribed is not enough: a subscription can stall without a word
//! (a paused server, a dropped route), and the messages it would bring are
//! then late by however long that lasts. So the in-process tier is trusted
//! on a [`Lease`]: each ping the subscription answers, once every message
//! that arrived before the answer is applied, shows that every invalidation
//! published before the ping was sent has been applied, and extends the
//! lease to its bound ([`Config::stale_bound`](crate::Config::stale_bound),
//! 250 ms by default) after that. An instance whose subscription
//! stalls stops serving from process at most that long after the last
//! invalidation it may have missed was published.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::{self, MaybeDone};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryFutureExt};

use super::{Root, SharedTier};
use crate::clock::{self, Ticks};
use crate::l2::sentinel::{SentinelConn, Switches};
use crate::pattern::Pattern;

/// Waits between attempts to subscribe: doubles from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_LAST: Duration = Duration::from_secs(1);
/// The time limit of connecting and subscribing.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(2);
/// A ping unanswered this long (or four leases, if longer) ends the
/// subscription (the lease has long lapsed by then): it is made again, and
/// the in-process tier emptied.
const PING_WITHIN: Duration = Duration::from_secs(1);
/// A subscription that lived at least this long resets the backoff; one
/// that keeps dying at once does not make the cache empty itself in a loop.
const STABLE_AFTER: Duration = Duration::from_secs(2);
/// The subscriber is behind when it finds this many messages waiting one
/// after another, or keeps finding one waiting for this long: the others
/// publish faster than this instance applies (a flood of invalidations, a
/// slow hook). It then drops its subscription, with every message queued
/// behind it, and subscribes again, emptying its in-process tier: the
/// messages waiting in memory are bounded by what arrives in that time.
/// (The lease has lapsed long before: a ping's answer renews it only once
/// the queue is found empty.) Shorter than [`PING_WITHIN`], whose answer
/// can be held up by the same flood.
const BACKLOG_LIMIT: u32 = 10_000;
const BEHIND_LIMIT: Duration = Duration::from_millis(500);
/// While messages are waiting, the subscriber lets the runtime's other
/// tasks run after this many: among them the connection's own task, which
/// reads the messages and the pings' answers, and may be waiting on this
/// worker thread.
const YIELD_EVERY: u32 = 16;

impl SharedTier {
    /// Starts the backplane, once, in the current tokio runtime (nothing
    /// happens outside one).
    pub(crate) fn ensure_backplane(&self) {
        // In step: the task runs (it marks the tier out of step on exit).
        if !self.subscribe || self.in_sync() {
            return;
        }
        let mut task = self.backplane.lock();
        // A task that ended (its runtime shut down, say) is started again.
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (Some(root), Some(source)) = (self.root.get().cloned(), self.source()) else {
            return;
        };
        let subscriber = Subscriber {
            root,
            source,
            instance: self.instance,
            in_sync: Arc::clone(&self.in_sync),
            resyncs: Arc::clone(&self.resyncs),
        };
        *task = Some(runtime.spawn(subscriber.run()).abort_handle());
    }

    /// Waits until the in-process tier is in step with the other
    /// instances, for at most `timeout`; returns whether it is.
    pub(crate) async fn wait_in_sync(&self, timeout: Duration) -> bool {
        self.ensure_backplane();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.in_sync() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Applies a message of the backplane to `root`, unless this instance
/// (`instance`) sent it: `<sender>:<pattern>` or `<sender>#<tag>`, the
/// sender in hex. One it cannot read empties the in-process tier.
fn apply(root: Arc<dyn Root>, payload: &[u8], instance: u64) {
    let Some((sender, kind, rest)) = std::str::from_utf8(payload).ok().and_then(|text| {
        let at = text.find([':', '#'])?;
        Some((&text[..at], text.as_bytes()[at], &text[at + 1..]))
    }) else {
        return root.clear_local();
    };
    if u64::from_str_radix(sender, 16) == Ok(instance) {
        return;
    }
    match (kind, Pattern::parse(rest)) {
        (b'#', _) if crate::tags::check(rest).is_ok() => root.invalidate_tag_local(rest),
        (b':', Ok(pattern)) => root.invalidate_local(&pattern),
        _ => root.clear_local(),
    }
}

/// Until when the in-process tier may be trusted, on the real clock
/// (whatever clock the cache's freshness reads): renewed by the
/// subscriber, ended when it is not subscribed. Once it lapses or ends,
/// it says when: the start of a degraded period (see
/// [`Lease::lapsed_within`]).
pub(crate) struct Lease {
    until: AtomicU64,
    /// The longest the in-process tier is trusted after the last ping
    /// that showed the subscription alive was sent: the bound on how late
    /// this instance can apply another's invalidation, whatever fails.
    bound: Duration,
}

impl Lease {
    /// A lease that never lapses (no backplane: a single instance), or
    /// one not yet granted, renewed for `bound` at a time.
    pub(crate) fn new(forever: bool, bound: Duration) -> Lease {
        Lease {
            until: AtomicU64::new(if forever { u64::MAX } else { 0 }),
            bound,
        }
    }

    /// How often the subscription is pinged, busy or idle: the lease is
    /// renewed about three times within its length, so that a round trip
    /// or a busy runtime does not let it lapse.
    fn ping_every(&self) -> Duration {
        self.bound * 8 / 25
    }

    /// How long a ping may go unanswered before the subscription is given
    /// up.
    fn ping_within(&self) -> Duration {
        PING_WITHIN.max(self.bound * 4)
    }

    fn now() -> Ticks {
        coarsetime::Instant::now_without_cache_update().as_ticks()
    }

    #[inline]
    pub(crate) fn holds(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until == u64::MAX || Lease::now() < until
    }

    /// Extends the lease to its bound after `from`: every message
    /// published before `from` has been applied.
    fn renew(&self, from: Ticks) {
        self.until.fetch_max(
            from.saturating_add(clock::ticks(self.bound)),
            Ordering::AcqRel,
        );
    }

    /// Ends the lease now (or keeps an earlier end).
    pub(crate) fn end(&self) {
        self.until.fetch_min(Lease::now(), Ordering::AcqRel);
    }

    /// Whether the lease lapsed or ended less than `grace` ago (never
    /// granted: no).
    pub(crate) fn lapsed_within(&self, grace: Duration) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until != 0 && Lease::now() < until.saturating_add(clock::ticks(grace))
    }
}

/// Marks the in-process tier out of step when the subscriber stops, however
/// it stops (its cache dropped, its runtime shut down, a panic).
struct OutOfStepOnExit(Arc<Lease>);

impl Drop for OutOfStepOnExit {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The backplane's task: subscribes, and resubscribes when the
/// subscription drops, for as long as the cache lives.
struct Subscriber {
    root: Weak<dyn Root>,
    /// Where to subscribe.
    source: Source,
    instance: u64,
    in_sync: Arc<Lease>,
    /// Times this subscriber fell behind and resubscribed.
    resyncs: Arc<AtomicU64>,
}

/// Where the backplane subscribes.
pub(crate) enum Source {
    /// The server, and the namespace's channel.
    Server(Box<redis::Client>, String),
    /// The master that Redis Sentinel names, as the store's connection
    /// follows it, and the namespace's channel: a change of master ends
    /// the subscription, and the next is made on the new one.
    Sentinel(SentinelConn, String),
    /// A Redis Cluster: the nodes the URL names, each attempt asking the
    /// next for the layout, and each group's channel, subscribed with
    /// sharded pub/sub (`SSUBSCRIBE`) on the primary that serves its slot.
    Cluster(Vec<redis::Client>, Vec<String>),
}

impl Source {
    /// Subscribes, on the server of the next attempt.
    async fn subscribe(&self, attempt: usize) -> Option<Subscription> {
        async fn within(
            subscribing: impl std::future::Future<Output = Option<Subscription>>,
        ) -> Option<Subscription> {
            tokio::time::timeout(SUBSCRIBE_WITHIN, subscribing)
                .await
                .ok()
                .flatten()
        }
        match self {
            Source::Server(client, channel) => within(Subscription::classic(client, channel)).await,
            Source::Sentinel(conn, channel) => {
                let switches = conn.switches();
                let client = conn.master_client().await.ok()?;
                let mut subscription = within(Subscription::classic(&client, channel)).await?;
                subscription.switches = Some(switches);
                Some(subscription)
            }
            Source::Cluster(seeds, channels) => {
                let seed = &seeds[attempt % seeds.len()];
                within(Subscription::sharded(seed, channels)).await
            }
        }
    }

    /// How many servers the attempts go round.
    fn len(&self) -> usize {
        match self {
            Source::Cluster(seeds, _) => seeds.len(),
            Source::Server(..) | Source::Sentinel(..) => 1,
        }
    }
}

/// A subscription made: its messages' payloads in the order they were
/// published (the stream ends when the subscription does), a ping whose
/// answer comes after every message published before it was sent, and,
/// behind Sentinel, the changes of master.
struct Subscription {
    messages: BoxStream<'static, Vec<u8>>,
    ping: Box<dyn Fn() -> PingReply + Send>,
    switches: Option<Switches>,
}

impl Subscription {
    /// `SUBSCRIBE channel` on a connection of its own.
    async fn classic(client: &redis::Client, channel: &str) -> Option<Subscription> {
        let mut pubsub = client.get_async_pubsub().await.ok()?;
        pubsub.subscribe(channel).await.ok()?;
        let (sink, messages) = pubsub.split();
        Some(Subscription {
            messages: messages
                .map(|message| message.get_payload_bytes().to_vec())
                .boxed(),
            ping: Box::new(move || {
                let mut sink = sink.clone();
                Box::pin(async move { sink.ping::<redis::Value>().await.map(drop) })
            }),
            switches: None,
        })
    }

    /// On a cluster: `SSUBSCRIBE` each channel on the primary that serves
    /// its slot (`CLUSTER NODES`, asked of `seed`), one RESP3 connection a
    /// primary, their messages merged. A message on a shard channel goes
    /// from the primary that took it to its subscribers, never over the
    /// cluster bus, so no bus link can drop one. Each ping asks every
    /// connection's node its `ROLE`: an answer from each shows that it
    /// delivered what it took before, and that it is still a primary (a
    /// replica also takes `SSUBSCRIBE`, but hears of messages only through
    /// replication, which can lag or break: a layout asked of a node that
    /// had not yet heard of a failover could name one). The subscription
    /// ends when any connection drops, a node gives up a channel
    /// (`sunsubscribe`: its slot moved, or it became a replica) or calls
    /// itself a replica; the next one asks the layout again.
    async fn sharded(seed: &redis::Client, channels: &[String]) -> Option<Subscription> {
        let mut conn = seed.get_multiplexed_async_connection().await.ok()?;
        let layout: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await
            .ok()?;
        let shards = crate::l2::cluster::parse_nodes(&layout);
        let mut by_node: Vec<((String, u16), Vec<&str>)> = Vec::new();
        for channel in channels {
            let slot = crate::l2::cluster::slot_of(channel);
            let node = shards.iter().find(|shard| shard.serves(slot))?.addr.clone();
            match by_node.iter_mut().find(|(at, _)| *at == node) {
                Some((_, on)) => on.push(channel),
                None => by_node.push((node, vec![channel])),
            }
        }
        let (pushes, mut received) = tokio::sync::mpsc::unbounded_channel();
        // No response timeout: a ping's answer may wait behind many
        // messages; the subscriber gives up on it by itself.
        let config = redis::AsyncConnectionConfig::new()
            .set_push_sender(pushes)
            .set_response_timeout(None);
        let mut nodes = Vec::with_capacity(by_node.len());
        for ((host, port), on) in by_node {
            let info = node_info(seed.get_connection_info(), host, port);
            let client = redis::Client::open(info).ok()?;
            let mut node = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .ok()?;
            for channel in on {
                // Confirmed by a push (`ssubscribe`), or refused (`MOVED`:
                // the layout changed meanwhile).
                let confirmed: redis::Value = redis::cmd("SSUBSCRIBE")
                    .arg(channel)
                    .query_async(&mut node)
                    .await
                    .ok()?;
                if !matches!(
                    confirmed,
                    redis::Value::Push {
                        kind: redis::PushKind::SSubscribe,
                        ..
                    }
                ) {
                    return None;
                }
            }
            nodes.push(node);
        }
        let messages = futures_util::stream::poll_fn(move |cx| received.poll_recv(cx))
            .take_while(|push| {
                let ended = matches!(
                    push.kind,
                    redis::PushKind::SUnsubscribe | redis::PushKind::Disconnection
                );
                future::ready(!ended)
            })
            .filter_map(|push| {
                let message = redis::Msg::from_push_info(push);
                future::ready(message.map(|message| message.get_payload_bytes().to_vec()))
            });
        Some(Subscription {
            messages: messages.boxed(),
            ping: Box::new(move || {
                let pings = nodes.iter().map(|node| {
                    let mut node = node.clone();
                    async move {
                        let answer: redis::Value =
                            redis::cmd("ROLE").query_async(&mut node).await?;
                        let primary = match &answer {
                            redis::Value::Array(role) => matches!(
                                role.first(),
                                Some(redis::Value::BulkString(name)) if name == b"master"
                            ),
                            _ => false,
                        };
                        if primary {
                            return Ok(());
                        }
                        // A replica now, or a push taken for the answer (the
                        // node gave up a channel): this subscription is over.
                        Err(redis::RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "not the answer of a primary to ROLE",
                        )))
                    }
                });
                Box::pin(future::try_join_all(pings).map_ok(drop))
            }),
            switches: None,
        })
    }
}

/// The connection settings of `seed` (its password, TLS, database),
/// pointed at the cluster node `host:port`, speaking RESP3 (sharded
/// messages come as pushes). A node that does not know its own address
/// names none (`""`, or `?` for an unknown endpoint): the seed's host is
/// kept then.
fn node_info(seed: &redis::ConnectionInfo, host: String, port: u16) -> redis::ConnectionInfo {
    use redis::ConnectionAddr;
    let host = if host == "?" { String::new() } else { host };
    let addr = match seed.addr() {
        ConnectionAddr::TcpTls {
            host: seed_host,
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: if host.is_empty() {
                seed_host.clone()
            } else {
                host
            },
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        ConnectionAddr::Tcp(seed_host, _) if host.is_empty() => {
            ConnectionAddr::Tcp(seed_host.clone(), port)
        }
        _ => ConnectionAddr::Tcp(host, port),
    };
    let redis = seed
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    seed.clone().set_addr(addr).set_redis_settings(redis)
}

/// The subscription's pings: one in flight at a time, sent every
/// [`Lease::ping_every`], awaited alongside the messages (its answer comes after
/// every message published before it, which may be many).
struct Ping {
    send: Box<dyn Fn() -> PingReply + Send>,
    every: Duration,
    within: Duration,
    next: tokio::time::Instant,
    /// The ping in flight: when it was sent, on the lease's clock and the
    /// runtime's, and its answer.
    in_flight: Option<(Ticks, tokio::time::Instant, MaybeDone<PingReply>)>,
    /// Whether a message came since the ping in flight was sent: then an
    /// answer that does not come is held up behind the messages (this
    /// instance is behind), not lost.
    messages_since: bool,
}

type PingReply =
    std::pin::Pin<Box<dyn std::future::Future<Output = redis::RedisResult<()>> + Send>>;

impl Ping {
    fn new(send: Box<dyn Fn() -> PingReply + Send>, lease: &Lease) -> Ping {
        let every = lease.ping_every();
        Ping {
            send,
            every,
            within: lease.ping_within(),
            next: tokio::time::Instant::now() + every,
            in_flight: None,
            messages_since: false,
        }
    }

    /// Sends the next ping when it is due, and takes its answer if it has
    /// come: `Some(sent)` for an answer, `Err` for a ping failed or
    /// unanswered within [`Lease::ping_within`].
    fn check(&mut self) -> Result<Option<Ticks>, Ended> {
        let now = tokio::time::Instant::now();
        if self.in_flight.is_none() && now >= self.next {
            self.in_flight = Some((Lease::now(), now, future::maybe_done((self.send)())));
            self.messages_since = false;
        }
        let Some((sent, at, reply)) = &mut self.in_flight else {
            return Ok(None);
        };
        let answer = match reply.now_or_never() {
            Some(()) => std::pin::Pin::new(reply).take_output(),
            None => None,
        };
        match answer {
            Some(Ok(_)) => {
                let sent = *sent;
                self.in_flight = None;
                self.next = now + self.every;
                Ok(Some(sent))
            }
            Some(Err(_)) => Err(Ended::Lost),
            None if now.duration_since(*at) >= self.within => Err(if self.messages_since {
                Ended::Behind
            } else {
                Ended::Lost
            }),
            None => Ok(None),
        }
    }

    /// Returns when there is something to do: a ping to send, an answer
    /// come, or one overdue.
    async fn due(&mut self) {
        match &mut self.in_flight {
            None => tokio::time::sleep_until(self.next).await,
            // The answer is kept for `check` to take.
            Some((_, at, reply)) => {
                let _ = tokio::time::timeout_at(*at + self.within, reply).await;
            }
        }
    }
}

/// Why a subscription ended.
enum Ended {
    /// It dropped, stopped answering, or its cache is gone.
    Lost,
    /// This instance fell behind the messages (see [`BACKLOG_LIMIT`]), or
    /// a ping's answer was held up behind them for [`Lease::ping_within`].
    Behind,
}

impl Subscriber {
    fn root(&self) -> Option<Arc<dyn Root>> {
        self.root.upgrade()
    }

    async fn run(self) {
        let _guard = OutOfStepOnExit(Arc::clone(&self.in_sync));
        let mut retry = RETRY_FIRST;
        // Instances start at different nodes of a cluster, so that their
        // subscriptions spread.
        let mut attempt = fastrand::usize(..self.source.len());
        while self.root.strong_count() > 0 {
            let subscribed = self.source.subscribe(attempt).await;
            attempt += 1;
            if let Some(subscription) = subscribed {
                let since = tokio::time::Instant::now();
                // What was published while this instance was not subscribed
                // is unknown: start from an empty in-process tier (running
                // loads are marked too, so none stores a value it read
                // before).
                let Some(root) = self.root() else { return };
                let subscribed = Lease::now();
                root.clear_local();
                self.in_sync.renew(subscribed);
                let ended = self.listen(subscription).await;
                self.in_sync.end();
                if since.elapsed() >= STABLE_AFTER {
                    retry = RETRY_FIRST;
                }
                if let Ended::Behind = ended {
                    // The server answers: subscribe again at once.
                    self.resyncs.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_LAST);
        }
    }

    /// Applies messages until the subscription ends or stops answering,
    /// this instance falls behind them, or the master changes; renews the
    /// lease on every ping answered.
    async fn listen(&self, subscription: Subscription) -> Ended {
        let Subscription {
            mut messages,
            ping,
            mut switches,
        } = subscription;
        // Messages found waiting one after another, and since when.
        let mut waiting = 0;
        let mut behind_since = tokio::time::Instant::now();
        let mut ping = Ping::new(ping, &self.in_sync);
        // When the last ping answered was sent: the lease runs from there
        // once the messages queued before its answer are applied, that is
        // once the queue is next found empty.
        let mut answered = None;
        loop {
            match ping.check() {
                Err(ended) => return ended,
                Ok(Some(sent)) => answered = Some(sent),
                Ok(None) => {}
            }
            // A message already queued is taken without waiting (and
            // without the runtime's budget, which would make the queue look
            // empty when it is not).
            let queued = tokio::task::unconstrained(messages.next()).now_or_never();
            let message = match queued {
                Some(message) => {
                    if waiting == 0 {
                        behind_since = tokio::time::Instant::now();
                    }
                    waiting += 1;
                    if waiting > BACKLOG_LIMIT || behind_since.elapsed() > BEHIND_LIMIT {
                        return Ended::Behind;
                    }
                    if waiting % YIELD_EVERY == 0 {
                        tokio::task::yield_now().await;
                    }
                    message
                }
                None => {
                    waiting = 0;
                    if let Some(sent) = answered.take() {
                        self.in_sync.renew(sent);
                    }
                    tokio::select! {
                        message = messages.next() => message,
                        () = ping.due() => continue,
                        () = switched(&mut switches) => return Ended::Lost,
                    }
                }
            };
            let Some(payload) = message else {
                return Ended::Lost;
            };
            ping.messages_since = true;
            let Some(root) = self.root() else {
                return Ended::Lost;
            };
            // A hook that panics must not take the subscription with it.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                apply(Arc::clone(&root), &payload, self.instance);
            }));
            if applied.is_err() {
                root.clear_local();
            }
        }
    }
}

/// Returns at the next change of master, if the subscription is to one that
/// Sentinel names; never otherwise.
async fn switched(switches: &mut Option<Switches>) {
    match switches {
        Some(switches) => switches.changed().await,
        None => std::future::pending().await,
    }
}
