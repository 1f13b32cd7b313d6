//! The invalidation backplane: every invalidation that reached Redis is
//! published on the namespace's channel (`<namespace>[bus]`), and every
//! instance subscribed to it applies it to its in-process tier, skipping its
//! own. An instance that is not subscribed (not yet, or its subscription
//! dropped) may have missed messages: it does not serve from its in-process
//! tier until it has subscribed again and emptied it.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::{Cache, Inner};
use crate::pattern::Pattern;
use crate::shared::Shared;

/// Waits between attempts to subscribe: doubles from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_LAST: Duration = Duration::from_secs(1);
/// The time limit of connecting and subscribing.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(2);

impl Cache {
    /// Starts the backplane of this cache's shared tier, once, in the
    /// current tokio runtime (nothing happens outside one).
    pub(super) fn ensure_backplane(&self) {
        let Some(shared) = self.inner.shared.as_deref() else {
            return;
        };
        if !shared.subscribe || shared.backplane.get().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (Some(root), Some(client)) = (shared.root.get().cloned(), shared.client()) else {
            return;
        };
        let task = Subscriber {
            root,
            client,
            channel: shared.channel(),
            instance: shared.instance,
            in_sync: Arc::clone(&shared.in_sync),
        };
        shared
            .backplane
            .get_or_init(|| runtime.spawn(task.run()).abort_handle());
    }

    /// Tells the other instances about an invalidation that reached Redis.
    pub(super) async fn publish(&self, shared: &Shared, store: &crate::RedisL2, pattern: &str) {
        let payload = format!("{:016x}:{pattern}", shared.instance);
        if let Err(e) = store.publish(&shared.channel(), payload.as_bytes()).await {
            self.l2_failed("PUBLISH", &e);
        }
    }

    /// Whether this cache's in-process tier is in step with the other
    /// instances: subscribed to their invalidations (always `true` for a
    /// `memory` cache, or with the backplane turned off). A readiness or
    /// health check can report it.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert!(cache.in_sync());
    /// ```
    pub fn in_sync(&self) -> bool {
        self.inner
            .in_sync
            .as_ref()
            .is_none_or(|in_sync| in_sync.load(Ordering::Acquire))
    }

    /// Waits until this cache's in-process tier is in step with the other
    /// instances (subscribed to the backplane), for at most `timeout`;
    /// returns whether it is. Until then a `hybrid` cache serves nothing
    /// from its in-process tier. Always `true` for a `memory` cache.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use cache_runtime::{Backend, Cache};
    /// let cache = Cache::builder()
    ///     .backend(Backend::Hybrid)
    ///     .redis_url("redis://127.0.0.1:6379/0")
    ///     .build()?;
    /// let ready = cache.wait_in_sync(Duration::from_secs(5)).await; // a readiness probe
    /// # Ok(()) }
    /// ```
    pub async fn wait_in_sync(&self, timeout: Duration) -> bool {
        let Some(shared) = self.inner.shared.as_deref() else {
            return true;
        };
        self.ensure_backplane();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if shared.in_sync.load(Ordering::Acquire) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Applies a message of the backplane, unless this instance sent it.
    fn apply(&self, payload: &[u8], instance: u64) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let Some((sender, pattern)) = text.split_once(':') else {
            return;
        };
        if u64::from_str_radix(sender, 16) == Ok(instance) {
            return;
        }
        match Pattern::parse(pattern) {
            Ok(pattern) => {
                self.invalidate_now(&pattern);
            }
            // Not ours to understand (another version): be safe.
            Err(_) => self.clear_local(),
        }
    }
}

/// The backplane's task: subscribes, and resubscribes when the
/// subscription drops, for as long as the cache lives.
struct Subscriber {
    root: Weak<dyn Any + Send + Sync>,
    client: redis::Client,
    channel: String,
    instance: u64,
    in_sync: Arc<AtomicBool>,
}

impl Subscriber {
    fn cache(&self) -> Option<Cache> {
        let inner = self.root.upgrade()?.downcast::<Inner>().ok()?;
        Some(Cache { inner })
    }

    async fn run(self) {
        let mut retry = RETRY_FIRST;
        while self.root.strong_count() > 0 {
            if let Some(pubsub) = self.subscribe().await {
                retry = RETRY_FIRST;
                // What was published while this instance was not subscribed
                // is unknown: start from an empty in-process tier (running
                // loads are marked too, so none stores a value it read
                // before).
                let Some(cache) = self.cache() else { return };
                cache.clear_local();
                self.in_sync.store(true, Ordering::Release);
                drop(cache);
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    let Some(cache) = self.cache() else { return };
                    cache.apply(message.get_payload_bytes(), self.instance);
                }
                // The connection dropped.
                self.in_sync.store(false, Ordering::Release);
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_LAST);
        }
    }

    async fn subscribe(&self) -> Option<redis::aio::PubSub> {
        tokio::time::timeout(SUBSCRIBE_WITHIN, async {
            let mut pubsub = self.client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&self.channel).await.ok()?;
            Some(pubsub)
        })
        .await
        .ok()
        .flatten()
    }
}
