//! The invalidation backplane: every invalidation that reached Redis is
//! published on the namespace's channel (`<namespace>[bus]`), and every
//! instance subscribed to it applies it to its in-process tier, skipping its
//! own. An instance that is not subscribed (not yet, or its subscription
//! dropped) may have missed messages: it does not serve from its in-process
//! tier until it has subscribed again and emptied it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};

use super::{Root, SharedTier};
use crate::pattern::Pattern;

/// Waits between attempts to subscribe: doubles from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_LAST: Duration = Duration::from_secs(1);
/// The time limit of connecting and subscribing, and of a liveness ping.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(2);
/// How often an idle subscription is pinged: a connection that died
/// without a word (a dropped route, a paused server) is noticed within
/// this plus the ping's time limit, and the in-process tier is not trusted
/// from then on.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_WITHIN: Duration = Duration::from_secs(1);
/// A subscription that lived at least this long resets the backoff; one
/// that keeps dying at once does not make the cache empty itself in a loop.
const STABLE_AFTER: Duration = Duration::from_secs(2);
/// The subscriber is behind when it finds this many messages waiting one
/// after another, or keeps finding one waiting for this long: the others
/// publish faster than this instance applies (a flood of invalidations, a
/// slow hook). It then drops its subscription, with every message queued
/// behind it, and subscribes again, emptying its in-process tier: the
/// messages waiting in memory are bounded by what arrives in that time,
/// and no invalidation is applied later than that.
const BACKLOG_LIMIT: u32 = 10_000;
const BEHIND_LIMIT: Duration = Duration::from_secs(1);
/// While messages are waiting, the subscriber lets the runtime's other
/// tasks run after this many.
const YIELD_EVERY: u32 = 256;

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
        let (Some(root), Some(clients)) = (self.root.get().cloned(), self.clients()) else {
            return;
        };
        let subscriber = Subscriber {
            root,
            clients,
            channel: self.channel.clone(),
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
/// (`instance`) sent it. One it cannot read empties the in-process tier.
fn apply(root: Arc<dyn Root>, payload: &[u8], instance: u64) {
    let parsed = std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.split_once(':'))
        .and_then(|(sender, pattern)| Some((sender, Pattern::parse(pattern).ok()?)));
    match parsed {
        Some((sender, _)) if u64::from_str_radix(sender, 16) == Ok(instance) => {}
        Some((_, pattern)) => root.invalidate_local(&pattern),
        None => root.clear_local(),
    }
}

/// Marks the in-process tier out of step when the subscriber stops, however
/// it stops (its cache dropped, its runtime shut down, a panic).
struct OutOfStepOnExit(Arc<AtomicBool>);

impl Drop for OutOfStepOnExit {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The backplane's task: subscribes, and resubscribes when the
/// subscription drops, for as long as the cache lives.
struct Subscriber {
    root: Weak<dyn Root>,
    /// The server, or the cluster nodes the URL names: each attempt to
    /// subscribe takes the next.
    clients: Vec<redis::Client>,
    channel: String,
    instance: u64,
    in_sync: Arc<AtomicBool>,
    /// Times this subscriber fell behind and resubscribed.
    resyncs: Arc<AtomicU64>,
}

/// Why a subscription ended.
enum Ended {
    /// It dropped, stopped answering, or its cache is gone.
    Lost,
    /// This instance fell behind the messages (see [`BACKLOG_LIMIT`]).
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
        let mut attempt = fastrand::usize(..self.clients.len());
        while self.root.strong_count() > 0 {
            let client = &self.clients[attempt % self.clients.len()];
            attempt += 1;
            if let Some(pubsub) = Self::subscribe(client, &self.channel).await {
                let since = tokio::time::Instant::now();
                // What was published while this instance was not subscribed
                // is unknown: start from an empty in-process tier (running
                // loads are marked too, so none stores a value it read
                // before).
                let Some(root) = self.root() else { return };
                root.clear_local();
                self.in_sync.store(true, Ordering::Release);
                let ended = self.listen(pubsub).await;
                self.in_sync.store(false, Ordering::Release);
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

    /// Applies messages until the subscription ends or stops answering, or
    /// this instance falls behind them.
    async fn listen(&self, pubsub: redis::aio::PubSub) -> Ended {
        let (mut sink, mut messages) = pubsub.split();
        // Messages found waiting one after another, and since when.
        let mut waiting = 0;
        let mut behind_since = tokio::time::Instant::now();
        loop {
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
                    tokio::select! {
                        message = messages.next() => message,
                        () = tokio::time::sleep(PING_EVERY) => {
                            let alive = tokio::time::timeout(PING_WITHIN, sink.ping::<redis::Value>()).await;
                            if !matches!(alive, Ok(Ok(_))) {
                                return Ended::Lost;
                            }
                            continue;
                        }
                    }
                }
            };
            let Some(message) = message else {
                return Ended::Lost;
            };
            let Some(root) = self.root() else {
                return Ended::Lost;
            };
            // A hook that panics must not take the subscription with it.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                apply(
                    Arc::clone(&root),
                    message.get_payload_bytes(),
                    self.instance,
                );
            }));
            if applied.is_err() {
                root.clear_local();
            }
        }
    }

    async fn subscribe(client: &redis::Client, channel: &str) -> Option<redis::aio::PubSub> {
        tokio::time::timeout(SUBSCRIBE_WITHIN, async {
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(channel).await.ok()?;
            Some(pubsub)
        })
        .await
        .ok()
        .flatten()
    }
}
