//! The cache handle: lookups, single-flight loads, invalidation.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::clock::{self, Clock, ManualClock, Ticks};
use crate::config::{Backend, Config, ConfigError, Engine, NamespaceConfig};
use crate::entry::{AnyValue, Entry, Weigher};
use crate::flight::{Flight, Flights, Held, Join, Joined, Leader};
use crate::health::{Health, HealthStatus};
use crate::hooks::{Event, Hooks, Tier};
use crate::invalidation::{Invalidation, SharedInvalidation};
use crate::l1::{L1Engine, MokaL1, QuickL1, L1};
use crate::outcome::{Outcome, Plain, Split};
use crate::pattern::{Pattern, PatternError};
use crate::scope;
use crate::site::{Site, Sites};
use crate::stats::{Counter, Counters, Stats};

#[cfg(feature = "redis")]
mod backplane;
#[cfg(feature = "redis")]
mod ready;
#[cfg(feature = "redis")]
mod recovery;
#[cfg(feature = "redis")]
mod shared_tier;
#[cfg(feature = "redis")]
use crate::shared::{Shared, ValueCodec};

/// The name of a cache that is not a named one (the `cache` label of its
/// metrics).
pub(crate) const DEFAULT_NAME: &str = "default";

/// A cache: the in-process tier, single flight, statistics.
///
/// `Cache` is a cheap handle (an `Arc`): clone it freely. `#[cached]`
/// functions use [`Cache::global`] unless a [`Cache::scope`] says otherwise;
/// code that is not annotated uses the handle directly:
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use cache_runtime::Cache;
///
/// let cache = Cache::builder().l1_max_bytes(8 << 20).build().unwrap();
/// cache.set("user:1", "Ada".to_string(), Duration::from_secs(60)).await;
/// assert_eq!(cache.get::<String>("user:1").await.as_deref(), Some("Ada"));
///
/// let n = cache
///     .get_or_insert_with("user:2", Duration::from_secs(60), || async { 7u32 })
///     .await;
/// assert_eq!(n, 7);
///
/// assert_eq!(cache.invalidate("user:*").await.unwrap(), 2);
/// assert!(!cache.exists("user:1").await);
/// # });
/// ```
///
/// # Concurrent calls on one key
///
/// [`Cache::get_or_insert_with`] and every `#[cached]` function make at most
/// one origin call per key at a time in a process. Callers that miss while a
/// call is running wait for its value; they do not wait on a lock held
/// across the call. If the running call's future is dropped (cancelled) or
/// its origin panics, the waiters wake and one of them makes the call
/// instead; nothing hangs. An `Err` is never cached. The waiters of a
/// call that failed get a clone of its error when `#[cached]` sees that the
/// error type is `Clone`; otherwise (and through this handle) each makes its
/// own call at once, so that a failing origin costs a caller at most two
/// origin latencies, never a queue. What those calls return is not stored.
///
/// A call that, while computing a key, asks for the same key (directly or
/// through other cached functions) would wait for itself forever: this is
/// detected and panics with a message naming the key.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    /// `default`, or the name of a named cache: the `cache` label of its
    /// metrics.
    name: Box<str>,
    /// Counters by key template.
    sites: Sites,
    config: Config,
    l1: L1,
    flights: Flights,
    counters: Counters,
    clock: Clock,
    hooks: Option<Arc<dyn Hooks>>,
    /// Every entry weighs at least this, so that the byte bound also bounds
    /// the number of entries to `l1_max_entries`.
    min_weight: u32,
    /// Named caches (namespaces) created from this one.
    children: RwLock<HashMap<Box<str>, Cache>>,
    /// The shared tier (Redis), shared with the named caches.
    #[cfg(feature = "redis")]
    shared: Option<Arc<Shared>>,
    /// With a shared tier: whether the in-process tier may serve (see
    /// `backplane`).
    #[cfg(feature = "redis")]
    in_sync: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Which tiers one load reads and fills.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    /// Keep the value in process.
    pub(crate) l1: bool,
    /// Read and fill the shared tier, with this codec.
    #[cfg(feature = "redis")]
    pub(crate) l2: Option<ValueCodec>,
}

impl Route {
    /// The in-process tier only.
    pub(crate) const L1: Route = Route {
        l1: true,
        #[cfg(feature = "redis")]
        l2: None,
    };
}

/// How long a value stored now lives: fresh for `ttl` (jitter applied),
/// then usable as stale for `stale`, and kept for `keep` after `ttl` (at
/// least `stale`; longer with `fail_safe`) to answer when the origin fails.
#[derive(Clone, Copy, Debug)]
struct Life {
    ttl: Duration,
    stale: Duration,
    keep: Duration,
}

/// What the leader's load settled to, and what it may write to the shared
/// tier: the value to store, if any (see `settle`). The
/// flight stays registered (done) until this drops, so that callers arriving
/// while the leader writes to the shared tier get its value.
struct Settled<'a, O> {
    out: O,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fill: Option<(AnyValue, Life)>,
    _held: Option<Held<'a>>,
}

/// How one load stores its value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub(crate) ttl: Option<Duration>,
    pub(crate) stale: Option<Duration>,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) jitter_percent: u8,
    pub(crate) cache_none: bool,
    /// Measures the heap contents of the values, when they are `Serialize`.
    pub(crate) weigher: Option<Weigher>,
    /// How long after `ttl` a value is kept to answer when the origin
    /// fails (at least the stale window).
    pub(crate) fail_safe: Option<Duration>,
    /// Single flight across instances, through a lock in Redis.
    pub(crate) lock: bool,
}

impl Policy {
    pub(crate) const fn ttl(ttl: Duration) -> Policy {
        Policy {
            ttl: Some(ttl),
            stale: None,
            l1_ttl: None,
            jitter_percent: 0,
            cache_none: false,
            weigher: None,
            fail_safe: None,
            lock: false,
        }
    }
}

/// What a lookup found.
pub(crate) enum Lookup<V> {
    Fresh(V),
    Stale(V),
    Miss,
}

/// What a waiter does after its flight landed.
enum Waited<O> {
    /// The leader's value, or its shared error.
    Done(O),
    /// The leader's origin call failed with an error that cannot be shared,
    /// or its value is of another type (two functions sharing a key): make
    /// one's own call, now.
    CallOrigin,
    /// The leader left or panicked: look again, one caller leads.
    TryAgain,
}

/// What a leader's look in the shared tier left for its origin call: the
/// value Redis kept past its freshness, the lock it holds, the ticket to
/// fill with.
#[derive(Default)]
struct SharedMiss {
    #[cfg(feature = "redis")]
    kept: Option<AnyValue>,
    #[cfg(feature = "redis")]
    lock: Option<shared_tier::LockGuard>,
    #[cfg(feature = "redis")]
    ticket: Option<(shared_tier::Ticket, ValueCodec)>,
}

impl SharedMiss {
    fn take_kept(&mut self) -> Option<AnyValue> {
        #[cfg(feature = "redis")]
        return self.kept.take();
        #[cfg(not(feature = "redis"))]
        None
    }
}

/// One step of a load: a value, or the flight to lead or to wait on.
enum Step<'a, V> {
    Value(V),
    Lead(Leader<'a>),
    Wait(Arc<Flight>),
}

impl Cache {
    /// A builder with the defaults of [`Config::default`].
    ///
    /// ```
    /// use cache_runtime::Cache;
    /// let cache = Cache::builder().build().unwrap();
    /// assert!(cache.is_enabled());
    /// ```
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// The process-wide cache used by `#[cached]` functions: built on first
    /// use from [`Config::from_env`], unless [`Cache::set_global`] installed
    /// one before.
    ///
    /// # Panics
    /// On first use, if the environment holds an invalid setting (an
    /// unknown `CACHE_BACKEND`, say). Call [`Config::from_env`] at start-up
    /// to handle that error yourself.
    ///
    /// ```
    /// use cache_runtime::Cache;
    /// let cache = Cache::global();
    /// assert!(cache.same_as(Cache::global()));
    /// ```
    pub fn global() -> &'static Cache {
        GLOBAL.get_or_init(|| {
            let config = Config::from_env().unwrap_or_else(|e| {
                panic!("cache_runtime: invalid cache configuration in the environment: {e}")
            });
            CacheBuilder::from_config(config)
                .build()
                .unwrap_or_else(|e| panic!("cache_runtime: cannot build the global cache: {e}"))
        })
    }

    /// Installs `self` as the global cache.
    ///
    /// # Errors
    /// Gives the cache back when the global cache exists already (it is
    /// created by the first `#[cached]` call).
    ///
    /// ```
    /// use cache_runtime::Cache;
    /// let cache = Cache::builder().default_ttl(std::time::Duration::from_secs(30)).build().unwrap();
    /// let _ = cache.set_global();
    /// ```
    pub fn set_global(self) -> Result<(), Cache> {
        GLOBAL.set(self)
    }

    /// The named cache `name` (a namespace with its own bound and default
    /// TTL, see [`NamespaceConfig`]), created on first use.
    ///
    /// ```
    /// use cache_runtime::Cache;
    /// let cache = Cache::builder().build().unwrap();
    /// let lookups = cache.named("lookups");
    /// assert!(lookups.same_as(&cache.named("lookups")));
    /// ```
    pub fn named(&self, name: &str) -> Cache {
        if let Some(child) = self.inner.children.read().get(name) {
            return child.clone();
        }
        let mut children = self.inner.children.write();
        children
            .entry(name.into())
            .or_insert_with(|| {
                let mut builder = CacheBuilder::from_config(self.inner.config.for_namespace(name));
                builder.hooks = self.inner.hooks.clone();
                builder.name = name.into();
                builder.clock = self.inner.clock.clone();
                #[cfg(feature = "redis")]
                {
                    builder.shared = self.inner.shared.clone();
                }
                builder.build_local()
            })
            .clone()
    }

    /// Whether two handles are the same cache.
    ///
    /// ```
    /// use cache_runtime::Cache;
    /// let a = Cache::builder().build().unwrap();
    /// assert!(a.same_as(&a.clone()));
    /// assert!(!a.same_as(&Cache::builder().build().unwrap()));
    /// ```
    pub fn same_as(&self, other: &Cache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether caching is on (`false` means every call reaches the origin).
    ///
    /// ```
    /// use cache_runtime::Cache;
    /// assert!(!Cache::builder().enabled(false).build().unwrap().is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.inner.config.enabled
    }

    /// The settings this cache was built with.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_runtime::Cache;
    /// let cache = Cache::builder().default_ttl(Duration::from_secs(5)).build().unwrap();
    /// assert_eq!(cache.config().default_ttl, Duration::from_secs(5));
    /// ```
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs `future` with `self` standing in for the global cache: every
    /// `#[cached]` and `#[invalidates]` function called while it is polled
    /// uses `self` (and `self.named(..)` for named caches). Tests use this
    /// to run in parallel with caches of their own.
    ///
    /// Tasks spawned from inside the future are not in the scope.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use cache_runtime::{cached, Cache};
    ///
    /// #[cached(ttl = "1m", key = "double:<n>")]
    /// async fn double(n: u64) -> u64 { n * 2 }
    ///
    /// let cache = Cache::builder().build().unwrap();
    /// assert_eq!(cache.scope(double(21)).await, 42);
    /// assert_eq!(cache.stats().sets, 1);
    /// # });
    /// ```
    pub fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
        scope::Scoped::new(self.clone(), future)
    }

    /// Runs `f` with `self` standing in for the global cache; see
    /// [`Cache::scope`].
    ///
    /// ```
    /// use cache_runtime::{cached, Cache};
    ///
    /// #[cached(ttl = "1m", key = "triple:<n>")]
    /// fn triple(n: u32) -> u32 { n * 3 }
    ///
    /// let cache = Cache::builder().build().unwrap();
    /// assert_eq!(cache.scope_sync(|| triple(3)), 9);
    /// assert_eq!(cache.stats().sets, 1);
    /// ```
    pub fn scope_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        scope::enter(self.clone(), f)
    }

    /// The fresh value of `key`, if it holds one of type `V`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.set("user:1", "Ada".to_string(), Duration::from_secs(60)).await;
    /// assert_eq!(cache.get::<String>("user:1").await.as_deref(), Some("Ada"));
    /// assert_eq!(cache.get::<u32>("user:1").await, None); // another type: a miss
    /// assert_eq!(cache.get::<String>("user:2").await, None);
    /// # });
    /// ```
    pub async fn get<V: Clone + Send + Sync + 'static>(&self, key: &str) -> Option<V> {
        match self.lookup::<V>(key, self.inner.sites.handle()) {
            Lookup::Fresh(v) => Some(v),
            _ => {
                #[cfg(feature = "redis")]
                self.ensure_backplane();
                self.count(self.inner.sites.handle(), Counter::Miss, 1);
                None
            }
        }
    }

    /// Stores `value` under `key` for `ttl`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.set("rate:EUR", 1.08f64, Duration::from_secs(300)).await;
    /// assert_eq!(cache.get::<f64>("rate:EUR").await, Some(1.08));
    /// # });
    /// ```
    pub async fn set<V: Clone + Send + Sync + 'static>(&self, key: &str, value: V, ttl: Duration) {
        let weight = Entry::weight_of(key, &value, None);
        let policy = Policy::ttl(ttl);
        let entry = self.entry(Arc::new(value), weight, self.life(&policy), &policy);
        self.store(key, entry, self.inner.sites.handle());
    }

    /// The fresh value of `key`, or the value `init` computes, stored for
    /// `ttl`. Concurrent calls on one key run `init` once; see
    /// "Concurrent calls on one key" above.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let ttl = Duration::from_secs(60);
    /// assert_eq!(cache.get_or_insert_with("n", ttl, || async { 1u8 }).await, 1);
    /// assert_eq!(cache.get_or_insert_with("n", ttl, || async { 2u8 }).await, 1); // cached
    /// # });
    /// ```
    pub async fn get_or_insert_with<V, F, Fut>(&self, key: &str, ttl: Duration, init: F) -> V
    where
        V: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let policy = Policy::ttl(ttl);
        self.load(
            self.lookup(key, self.inner.sites.handle()),
            key,
            self.inner.sites.handle(),
            "get_or_insert_with",
            &policy,
            Route::L1,
            || async { Plain(init().await) },
        )
        .await
        .0
    }

    /// Like [`Cache::get_or_insert_with`] for a fallible `init`: an `Ok`
    /// is stored for `ttl`, an `Err` is returned and never stored.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let ttl = Duration::from_secs(60);
    /// let failed = cache.try_get_or_insert_with("k", ttl, || async { Err::<u32, _>("down") }).await;
    /// assert_eq!(failed, Err("down"));
    /// let ok = cache.try_get_or_insert_with("k", ttl, || async { Ok::<u32, &str>(1) }).await;
    /// assert_eq!(ok, Ok(1));
    /// # });
    /// ```
    pub async fn try_get_or_insert_with<V, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        init: F,
    ) -> Result<V, E>
    where
        V: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let policy = Policy::ttl(ttl);
        self.load(
            self.lookup(key, self.inner.sites.handle()),
            key,
            self.inner.sites.handle(),
            "try_get_or_insert_with",
            &policy,
            Route::L1,
            init,
        )
        .await
    }

    /// Stores every `(key, value)` of `entries` for `ttl`, for example at
    /// start-up from a list of hot keys; returns how many it stored.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let hot = (1..=3u32).map(|id| (format!("user:{id}"), id * 10));
    /// assert_eq!(cache.warm(hot, Duration::from_secs(300)).await, 3);
    /// assert_eq!(cache.get::<u32>("user:2").await, Some(20));
    /// # });
    /// ```
    pub async fn warm<K, V, I>(&self, entries: I, ttl: Duration) -> u64
    where
        K: AsRef<str>,
        V: Clone + Send + Sync + 'static,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut stored = 0;
        for (key, value) in entries {
            self.set(key.as_ref(), value, ttl).await;
            stored += 1;
        }
        stored
    }

    /// Removes `key`; `true` if it held a value. A load of `key` that is
    /// running does not store its value afterwards.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.set("k", 1u8, Duration::from_secs(60)).await;
    /// assert!(cache.delete("k").await);
    /// assert!(!cache.delete("k").await);
    /// # });
    /// ```
    pub async fn delete(&self, key: &str) -> bool {
        // With a shared tier, the pattern that names this key alone takes
        // the path of every invalidation (this process, Redis, this process
        // again, and the other instances).
        #[cfg(feature = "redis")]
        if self.has_l2() {
            let exact = Pattern::parse(&Pattern::escape(key)).expect("an escaped key parses");
            return self.invalidate_everywhere(&exact).await.local > 0;
        }
        self.remove_key(key)
    }

    /// Whether `key` holds a fresh value (of any type).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert!(!cache.exists("k").await);
    /// cache.set("k", (), Duration::from_secs(60)).await;
    /// assert!(cache.exists("k").await);
    /// # });
    /// ```
    pub async fn exists(&self, key: &str) -> bool {
        if !self.in_sync() {
            return false;
        }
        let now = self.inner.clock.now();
        self.inner
            .l1
            .read(key, |e| now < e.fresh_until)
            .unwrap_or(false)
    }

    /// Removes every key `pattern` matches (Redis glob syntax, see
    /// [`Pattern`]) from this cache and its named caches, and returns how
    /// many it removed. Loads of matching keys that are running do not
    /// store their values afterwards.
    ///
    /// # Errors
    /// A malformed pattern (an unclosed `[`, a trailing `\`, empty).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// for page in 0..3 {
    ///     cache.set(&format!("orders:list:acme:p{page}"), page, Duration::from_secs(60)).await;
    /// }
    /// assert_eq!(cache.invalidate("orders:list:acme:*").await.unwrap(), 3);
    /// assert!(cache.invalidate("orders:[acme").await.is_err()); // malformed: an error
    /// # });
    /// ```
    pub async fn invalidate(&self, pattern: &str) -> Result<u64, PatternError> {
        Ok(self.invalidate_report(pattern).await?.local)
    }

    /// As [`Cache::invalidate`], and says what it did in each tier: the
    /// entries removed in process, and how the shared tier (Redis) took it:
    /// keys removed, a prefix invalidated in one write (uncounted), keys
    /// removed by a scan, or an error (which is also counted in
    /// [`Stats::l2_errors`] and reported to the hooks). See
    /// [`Invalidation`].
    ///
    /// # Errors
    /// A malformed pattern, as [`Cache::invalidate`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let report = cache.invalidate_report("order:*").await.unwrap();
    /// println!("{report}"); // "0 removed in process; no shared tier"
    /// # });
    /// ```
    pub async fn invalidate_report(&self, pattern: &str) -> Result<Invalidation, PatternError> {
        Ok(self.invalidate_everywhere(&Pattern::parse(pattern)?).await)
    }

    /// Applies `pattern` to this process, to the shared tier, and to this
    /// process again. The first pass cannot be lost when the caller's
    /// future is dropped while Redis answers; the last removes what a load
    /// that started in between brought back from the shared tier before the
    /// shared tier had the invalidation.
    pub(crate) async fn invalidate_everywhere(&self, pattern: &Pattern) -> Invalidation {
        #[cfg(feature = "redis")]
        if self.has_l2() {
            let scope = self.local_scope();
            let local = scope.invalidate_now(pattern);
            let shared = self.l2_invalidate(pattern).await;
            return Invalidation {
                local: local + scope.invalidate_now(pattern),
                shared,
            };
        }
        let local = self.invalidate_now(pattern);
        Invalidation {
            local,
            shared: SharedInvalidation::NotConfigured,
        }
    }

    /// As [`Cache::invalidate_everywhere`], from a plain `fn`.
    pub(crate) fn invalidate_everywhere_blocking(&self, pattern: &Pattern) -> u64 {
        #[cfg(feature = "redis")]
        if self.has_l2() {
            let scope = self.local_scope();
            let removed = scope.invalidate_now(pattern);
            self.l2_invalidate_blocking(pattern);
            return removed + scope.invalidate_now(pattern);
        }
        self.invalidate_now(pattern)
    }

    /// Removes every entry of this cache and of its named caches.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.set("a", 1u8, Duration::from_secs(60)).await;
    /// cache.named("lookups").set("b", 2u8, Duration::from_secs(60)).await;
    /// cache.clear().await;
    /// assert!(!cache.exists("a").await && !cache.named("lookups").exists("b").await);
    /// # });
    /// ```
    pub async fn clear(&self) {
        #[cfg(feature = "redis")]
        if self.has_l2() {
            // The shared tier's namespace is the root's and every named
            // cache's: so is what this process empties.
            let scope = self.local_scope();
            scope.clear_local();
            self.l2_clear().await;
            scope.clear_local();
            return;
        }
        self.clear_local();
    }

    fn clear_local(&self) {
        // Running loads first, as for any invalidation: a load that finished
        // between the two steps would otherwise store into the emptied tier.
        self.inner
            .flights
            .invalidate_matching(&Pattern::parse("*").expect("`*` is a pattern"));
        self.inner.l1.clear();
        for child in self.children() {
            child.clear_local();
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
    #[inline]
    pub fn in_sync(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(in_sync) = &self.inner.in_sync {
            return in_sync.load(std::sync::atomic::Ordering::Acquire);
        }
        true
    }

    /// The cache whose in-process tier an invalidation through the shared
    /// tier reaches on every other instance: the root of the named caches.
    /// Invalidating here from it too keeps this process like the others.
    #[cfg(feature = "redis")]
    fn local_scope(&self) -> Cache {
        self.inner
            .shared
            .as_deref()
            .and_then(|shared| Cache::from_root(shared.root.get()?))
            .unwrap_or_else(|| self.clone())
    }

    /// The root cache of a shared tier, while it lives.
    #[cfg(feature = "redis")]
    fn from_root(root: &std::sync::Weak<dyn Any + Send + Sync>) -> Option<Cache> {
        let inner = root.upgrade()?.downcast::<Inner>().ok()?;
        Some(Cache { inner })
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.get_or_insert_with("k", Duration::from_secs(60), || async { 1u8 }).await;
    /// cache.get_or_insert_with("k", Duration::from_secs(60), || async { 1u8 }).await;
    /// let stats = cache.stats();
    /// assert_eq!((stats.hits, stats.misses, stats.loads, stats.entries), (1, 1, 1, 1));
    /// # });
    /// ```
    pub fn stats(&self) -> Stats {
        let sites = self.inner.sites.all();
        let sum = |counter| self.sum(&sites, counter);
        Stats {
            hits: sum(Counter::Hit),
            misses: sum(Counter::Miss),
            loads: sum(Counter::Load),
            sets: sum(Counter::Set),
            deletes: sum(Counter::Delete),
            errors: sum(Counter::Error),
            stale_served: sum(Counter::StaleServed),
            entries: self.inner.l1.entry_count(),
            l1_bytes: self.inner.l1.weighted_size(),
            l2_hits: sum(Counter::L2Hit),
            l2_misses: sum(Counter::L2Miss),
            l2_sets: sum(Counter::L2Set),
            l2_errors: sum(Counter::L2Error),
            l2_undecodable: sum(Counter::L2Undecodable),
            l2_fills_rejected: sum(Counter::L2FillRejected),
            l2_skipped: sum(Counter::L2Skipped),
            fail_safe_served: sum(Counter::FailSafe),
            origin_timeouts: sum(Counter::OriginTimeout),
            ..self.shared_stats()
        }
    }

    /// The shared tier's part of [`Cache::stats`]: the breaker and the
    /// queue of invalidations, common to a cache and its named caches.
    fn shared_stats(&self) -> Stats {
        #[cfg(feature = "redis")]
        if let Some(shared) = self.inner.shared.as_deref() {
            let pending = shared.pending.lock();
            return Stats {
                breaker: shared.breaker.state(),
                breaker_opens: shared.breaker.opened(),
                invalidations_queued: pending.queued,
                invalidations_pending: pending.len() as u64,
                invalidation_queue_overflows: pending.overflows,
                ..Stats::default()
            };
        }
        Stats::default()
    }

    /// Checks the cache's tiers: pings Redis (unless the circuit breaker is
    /// open: no call goes to Redis then), and reports the breaker, the
    /// in-process tier and whether it is in step with the other instances.
    /// A `Degraded` cache still serves every call, from the in-process tier
    /// and the origin.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cache_runtime::{Cache, HealthStatus};
    /// let cache = Cache::builder().build().unwrap();
    /// assert_eq!(cache.health().await.status, HealthStatus::Healthy);
    /// # });
    /// ```
    pub async fn health(&self) -> Health {
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let mut health = Health {
            status: HealthStatus::Healthy,
            backend: self.inner.config.backend,
            l1_entries: self.inner.l1.entry_count(),
            l1_bytes: self.inner.l1.weighted_size(),
            redis_rtt: None,
            redis_error: None,
            breaker: None,
            in_sync: self.in_sync(),
            pending_invalidations: 0,
        };
        #[cfg(feature = "redis")]
        self.shared_health(&mut health).await;
        health
    }

    /// `default`, or the name this cache was made with by
    /// [`Cache::named`].
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert_eq!(cache.name(), "default");
    /// assert_eq!(cache.named("lookups").name(), "lookups");
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The counters of `template`'s calls in this cache.
    pub(crate) fn site(&self, template: &'static str) -> Arc<Site> {
        self.inner.sites.get(template)
    }

    pub(crate) fn sites(&self) -> Vec<Arc<Site>> {
        self.inner.sites.all()
    }

    /// The named caches made from this one, by name.
    pub(crate) fn named_caches(&self) -> Vec<Cache> {
        let mut children = self.children();
        children.sort_by(|a, b| a.name().cmp(b.name()));
        children
    }

    /// Whether this cache has a shared tier (Redis).
    pub(crate) fn has_l2(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.inner.shared.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// The metrics of this cache and its named caches in the Prometheus
    /// text format, for a `/metrics` endpoint. Counters are labelled by
    /// `cache` (`default`, or the name given to [`Cache::named`]) and
    /// `template`: the key template of the `#[cached]` function
    /// (`"order:<tenant>:<id>"`), or `-` for calls through this handle;
    /// never a resolved key, so there are as many series as templates.
    ///
    /// | metric | labels | what |
    /// |---|---|---|
    /// | `cache_hits_total` | cache, template, tier (`l1`, `l2`) | calls answered from the cache |
    /// | `cache_misses_total` | cache, template | calls with no fresh value in process |
    /// | `cache_sets_total` | cache, template | values stored in process |
    /// | `cache_origin_calls_total` | cache, template | origin calls |
    /// | `cache_stale_served_total`, `cache_fail_safe_served_total`, `cache_origin_timeouts_total`, `cache_l2_misses_total` | cache, template | as in [`Stats`] |
    /// | `cache_deletes_total` | cache | keys removed |
    /// | `cache_errors_total` | cache, kind (`l2`, `l2_undecodable`, `internal`) | errors of the cache, never the origin's |
    /// | `cache_l2_sets_total`, `cache_l2_fills_rejected_total`, `cache_l2_skipped_total` | cache | the Redis tier |
    /// | `cache_items`, `cache_bytes` | cache | the in-process tier now |
    /// | `cache_breaker_state`, `cache_breaker_opens_total`, `cache_invalidations_pending` | cache, state | with Redis only |
    /// | `cache_operation_duration_seconds` | cache, template, operation (`origin`) | histogram of origin call times |
    ///
    /// Counting costs a hit nothing more than [`Cache::stats`] does (a
    /// store to this thread's own counters); rendering sums them.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.get_or_insert_with("user:1", Duration::from_secs(60), || async { 1u8 }).await;
    /// cache.get_or_insert_with("user:1", Duration::from_secs(60), || async { 1u8 }).await;
    /// let text = cache.prometheus_text();
    /// assert!(text.contains(r#"cache_hits_total{cache="default",template="-",tier="l1"} 1"#));
    /// assert!(text.contains(r#"cache_items{cache="default"} 1"#));
    /// # });
    /// ```
    pub fn prometheus_text(&self) -> String {
        crate::prometheus::render(self)
    }

    fn children(&self) -> Vec<Cache> {
        self.inner.children.read().values().cloned().collect()
    }

    fn emit(&self, event: Event<'_>) {
        #[cfg(feature = "tracing")]
        crate::trace::event(&self.inner.name, &event);
        if let Some(hooks) = &self.inner.hooks {
            hooks.on_cache_event(&self.inner.name, &event);
        }
    }

    /// Looks `key` up in the in-process tier. Counts fresh hits only; the
    /// caller counts the rest once it knows what it served.
    #[inline]
    pub(crate) fn lookup<V: Clone + 'static>(&self, key: &str, site: &Site) -> Lookup<V> {
        // Not in step with the other instances: the in-process tier may hold
        // what they invalidated meanwhile.
        if !self.in_sync() {
            return Lookup::Miss;
        }
        let now = self.inner.clock.now();
        let found = self.inner.l1.read(key, |entry| {
            if now >= entry.stale_until {
                return Lookup::Miss;
            }
            // A value of another type (two functions sharing a key template)
            // is a miss; the load overwrites it.
            match entry.value.downcast_ref::<V>() {
                None => Lookup::Miss,
                Some(value) if now < entry.fresh_until => Lookup::Fresh(value.clone()),
                Some(value) => Lookup::Stale(value.clone()),
            }
        });
        match found {
            Some(fresh @ Lookup::Fresh(_)) => {
                self.count(site, Counter::Hit, 1);
                if self.inner.hooks.is_some() {
                    self.emit(Event::Hit {
                        template: site.template,
                        tier: Tier::L1,
                    });
                }
                fresh
            }
            Some(other) => other,
            None => Lookup::Miss,
        }
    }

    /// [`lookup`](Self::lookup) for a function whose values take `route`:
    /// one that keeps nothing in process does not look there for a hit (it
    /// could only miss, or find what another writer put under its key).
    #[inline]
    pub(crate) fn lookup_on<V: Clone + 'static>(
        &self,
        route: Route,
        key: &str,
        site: &Site,
    ) -> Lookup<V> {
        if route.l1 {
            self.lookup(key, site)
        } else {
            Lookup::Miss
        }
    }

    /// Decides what this caller does next for `key`.
    /// `found` is what a lookup of `key` just returned.
    fn step<V: Clone + Send + Sync + 'static>(
        &self,
        found: Lookup<V>,
        key: &str,
        site: &Site,
        function: &str,
        route: Route,
    ) -> Step<'_, V> {
        let stale = match found {
            Lookup::Fresh(v) => return Step::Value(v),
            Lookup::Stale(v) => Some(v),
            Lookup::Miss => None,
        };
        #[cfg(feature = "redis")]
        self.ensure_backplane();
        match self.inner.flights.join(key) {
            Join::Leader(leader) => {
                // A load may have finished between the lookup and the join.
                if let Lookup::Fresh(v) = self.lookup_on::<V>(route, key, site) {
                    let _ = leader.finish(Arc::new(v.clone()), || false);
                    return Step::Value(v);
                }
                self.count(site, Counter::Miss, 1);
                self.emit(Event::Miss {
                    template: site.template,
                });
                Step::Lead(leader)
            }
            Join::Waiter(flight) => {
                if let Some(v) = stale {
                    // Stale-while-revalidate: another caller is refreshing.
                    self.count(site, Counter::Hit, 1);
                    self.count(site, Counter::StaleServed, 1);
                    self.emit(Event::StaleServed {
                        template: site.template,
                    });
                    return Step::Value(v);
                }
                if flight.is_led_here() {
                    panic!(
                        "cache_runtime: `{function}` asked for key `{key}` while computing that same key; \
                         it would wait for itself forever. Give the inner call a different key, or call \
                         the uncached code directly."
                    );
                }
                Step::Wait(flight)
            }
        }
    }

    /// What a waiter does once the flight it joined has landed.
    fn joined<O: Outcome>(&self, joined: Joined, site: &Site) -> Waited<O> {
        let answer = match joined {
            Joined::Value(value) => match value.downcast_ref::<O::Value>() {
                Some(value) => Waited::Done(O::from_value(value.clone())),
                // Another function's value under the same key. Its flight
                // may stay registered a while (see `Leader::finish_held`):
                // trying again would find it again.
                None => Waited::CallOrigin,
            },
            Joined::Failed(error) => match error.as_ref().and_then(O::from_error) {
                Some(shared) => Waited::Done(shared),
                None => Waited::CallOrigin,
            },
            Joined::Retry => return Waited::TryAgain,
        };
        self.count(site, Counter::Miss, 1);
        self.emit(Event::Miss {
            template: site.template,
        });
        answer
    }

    /// Counts an origin call about to start; returns when it started.
    fn origin_call(&self, site: &Site) -> Instant {
        self.count(site, Counter::Load, 1);
        Instant::now()
    }

    fn origin_returned(&self, site: &Site, started: Instant) {
        let elapsed = started.elapsed();
        site.origin.record(elapsed);
        self.emit(Event::OriginCall {
            template: site.template,
            elapsed,
        });
    }

    /// Counts on the template's site (the cache's total is the sum of its
    /// sites: see [`Cache::sum`]), so a hit counts once.
    #[inline]
    fn count(&self, site: &Site, counter: Counter, n: u64) {
        site.counters.add(counter, n);
    }

    /// A counter of this cache: what it counted itself and what its sites
    /// counted.
    fn sum(&self, sites: &[Arc<Site>], counter: Counter) -> u64 {
        self.inner.counters.sum(counter) + sites.iter().map(|site| site.sum(counter)).sum::<u64>()
    }

    /// The miss path of an async load: lead or join the flight for `key`.
    #[allow(clippy::too_many_arguments)] // the load's key, labels and policy
    pub(crate) async fn load<O, F, Fut>(
        &self,
        found: Lookup<O::Value>,
        key: &str,
        site: &Site,
        function: &str,
        policy: &Policy,
        route: Route,
        origin: F,
    ) -> O
    where
        O: Outcome,
        F: FnOnce() -> Fut,
        Fut: Future<Output = O>,
    {
        let mut origin = Some(origin);
        // The caller's lookup serves the first step; a retry looks again.
        let mut first = Some(found);
        loop {
            let found = first
                .take()
                .unwrap_or_else(|| self.lookup_on(route, key, site));
            match self.step(found, key, site, function, route) {
                Step::Value(v) => return O::from_value(v),
                Step::Lead(leader) => {
                    // The leader looks in the shared tier before it calls
                    // the origin; waiters wait for either.
                    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
                    let mut miss = SharedMiss::default();
                    #[cfg(feature = "redis")]
                    if let Some(codec) = route.l2 {
                        // Boxed, as the origin call below: a hit's future
                        // stays small (moved and freed on every call).
                        // (A `let`: a temporary would live, unboxed, across
                        // the await.)
                        let lead = Box::pin(self.l2_lead::<O::Value>(key, site, codec, policy));
                        match lead.await {
                            (shared_tier::Found::Value(value, deadlines, len), _) => {
                                // `l2_lookup` checked the type.
                                if let Some(value) = self.settle_l2_hit(
                                    leader, key, site, policy, route, value, deadlines, len,
                                ) {
                                    return O::from_value(value);
                                }
                                continue;
                            }
                            (shared_tier::Found::Miss(ticket, kept), lock) => {
                                miss = SharedMiss {
                                    kept,
                                    lock,
                                    ticket: ticket.zip(Some(codec)),
                                };
                            }
                        }
                    }
                    let origin = origin.take().expect("a caller leads at most once");
                    let lead =
                        Box::pin(self.lead_origin(leader, key, site, policy, route, origin, miss));
                    return lead.await;
                }
                Step::Wait(flight) => match self.joined::<O>(flight.wait().await, site) {
                    Waited::Done(out) => return self.or_kept(out, key, site),
                    // Not stored: this call is in no flight, so an
                    // invalidation could not stop a stale fill from it.
                    Waited::CallOrigin => {
                        self.origin_call(site);
                        let call = Box::pin(origin.take().expect("unused origin")());
                        let out = call.await;
                        return self.or_kept(out, key, site);
                    }
                    Waited::TryAgain => {}
                },
            }
        }
    }

    /// The leader's origin call, after the shared tier (if any) missed:
    /// settles its outcome, and fills the shared tier unless an
    /// invalidation came after `miss`'s read.
    #[allow(clippy::too_many_arguments)] // the load's key, labels and policy
    async fn lead_origin<O, F, Fut>(
        &self,
        leader: Leader<'_>,
        key: &str,
        site: &Site,
        policy: &Policy,
        route: Route,
        origin: F,
        mut miss: SharedMiss,
    ) -> O
    where
        O: Outcome,
        F: FnOnce() -> Fut,
        Fut: Future<Output = O>,
    {
        let started = self.origin_call(site);
        #[cfg(feature = "tracing")]
        let out = {
            use tracing::Instrument;
            let span = tracing::debug_span!(target: "cache_runtime", "cache.origin", cache = %self.inner.name, template = site.template);
            leader.lead_future(origin()).instrument(span).await
        };
        #[cfg(not(feature = "tracing"))]
        let out = leader.lead_future(origin()).await;
        self.origin_returned(site, started);
        if out.is_failure() {
            // What the shared tier kept is no answer once an invalidation
            // covered this flight.
            let shared_kept = miss.take_kept().filter(|_| !leader.is_invalidated());
            if let Some(v) = self.kept_answer::<O::Value>(key, site, shared_kept) {
                // The waiters get it too; it is not stored again.
                let _ = leader.finish(Arc::new(v.clone()), || false);
                #[cfg(feature = "redis")]
                if let Some(lock) = &mut miss.lock {
                    lock.vacate = true;
                }
                return O::from_value(v);
            }
        }
        let settled = self.settle(leader, key, site, policy, route, out);
        #[cfg(feature = "redis")]
        {
            let mut stored = false;
            if let (Some((ticket, codec)), Some((value, life))) = (miss.ticket, &settled.fill) {
                stored = self.l2_fill(key, ticket, &**value, codec, *life).await;
            }
            // Released by a task, off the answer.
            if let Some(mut lock) = miss.lock {
                lock.vacate = !stored;
            }
        }
        settled.out
    }

    /// The miss path of a blocking load (plain `fn`s).
    pub(crate) fn load_blocking<O, F>(
        &self,
        found: Lookup<O::Value>,
        key: &str,
        site: &Site,
        function: &str,
        policy: &Policy,
        origin: F,
    ) -> O
    where
        O: Outcome,
        F: FnOnce() -> O,
    {
        let mut origin = Some(origin);
        // The caller's lookup serves the first step; a retry looks again.
        let mut first = Some(found);
        loop {
            let found = first.take().unwrap_or_else(|| self.lookup(key, site));
            match self.step(found, key, site, function, Route::L1) {
                Step::Value(v) => return O::from_value(v),
                Step::Lead(leader) => {
                    let origin = origin.take().expect("a caller leads at most once");
                    let started = self.origin_call(site);
                    let out = leader.lead(origin);
                    self.origin_returned(site, started);
                    if out.is_failure() {
                        if let Some(v) = self.kept_answer::<O::Value>(key, site, None) {
                            let _ = leader.finish(Arc::new(v.clone()), || false);
                            return O::from_value(v);
                        }
                    }
                    return self.settle(leader, key, site, policy, Route::L1, out).out;
                }
                Step::Wait(flight) => match self.joined::<O>(flight.wait_blocking(), site) {
                    Waited::Done(out) => return self.or_kept(out, key, site),
                    Waited::CallOrigin => {
                        self.origin_call(site);
                        let out = origin.take().expect("unused origin")();
                        return self.or_kept(out, key, site);
                    }
                    Waited::TryAgain => {}
                },
            }
        }
    }

    /// `out`, unless it is the origin's failure and an older value is kept
    /// (see [`Cache::kept_answer`]).
    fn or_kept<O: Outcome>(&self, out: O, key: &str, site: &Site) -> O {
        if !out.is_failure() {
            return out;
        }
        match self.kept_answer::<O::Value>(key, site, None) {
            Some(value) => O::from_value(value),
            None => out,
        }
    }

    /// The answer of a call whose origin failed, instead of its error: an
    /// older value of the key when one is kept (within `stale`, or
    /// `fail_safe`) and no invalidation removed it since. The in-process
    /// tier is looked at now, so an invalidation that came while the origin
    /// ran has removed it; `shared_kept` is what the shared tier held, when
    /// no invalidation covered the flight since it was read. Counted, and
    /// told to the hooks.
    fn kept_answer<V: Clone + 'static>(
        &self,
        key: &str,
        site: &Site,
        shared_kept: Option<AnyValue>,
    ) -> Option<V> {
        let kept = self.kept::<V>(key).or_else(|| {
            let value = shared_kept?;
            value.downcast_ref::<V>().cloned()
        })?;
        self.count(site, Counter::FailSafe, 1);
        self.emit(Event::FailSafe {
            template: site.template,
        });
        Some(kept)
    }

    /// Counts a caller answered with the value at hand because its origin
    /// call took longer than `timeout` (the call goes on).
    pub(crate) fn origin_timed_out(&self, site: &Site) {
        self.count(site, Counter::OriginTimeout, 1);
        self.count(site, Counter::StaleServed, 1);
        self.emit(Event::StaleServed {
            template: site.template,
        });
    }

    /// The value the in-process tier keeps for `key`, fresh, stale or only
    /// kept for failures.
    pub(crate) fn kept<V: Clone + 'static>(&self, key: &str) -> Option<V> {
        self.with_kept(key, V::clone)
    }

    /// Whether the in-process tier keeps a value of type `V` for `key` (no
    /// clone).
    pub(crate) fn is_kept<V: 'static>(&self, key: &str) -> bool {
        self.with_kept::<V, _>(key, |_| ()).is_some()
    }

    fn with_kept<V: 'static, R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        if !self.in_sync() {
            return None;
        }
        let now = self.inner.clock.now();
        self.inner
            .l1
            .read(key, |entry| {
                (now < entry.keep_until())
                    .then(|| entry.value.downcast_ref::<V>().map(f))
                    .flatten()
            })
            .flatten()
    }

    /// Publishes the leader's outcome and stores it when it is cacheable.
    fn settle<'a, O: Outcome>(
        &'a self,
        leader: Leader<'a>,
        key: &str,
        site: &Site,
        policy: &Policy,
        route: Route,
        out: O,
    ) -> Settled<'a, O> {
        match out.split(policy.cache_none) {
            Split::Store(v) => {
                let life = self.life(policy);
                let shared: AnyValue = Arc::new(v.clone());
                // Out of step with the other instances, the in-process tier
                // serves nothing, and is emptied before it serves again.
                let entry = (route.l1 && self.in_sync()).then(|| {
                    let weight = self.weigh(&leader, key, &v, policy);
                    self.entry(Arc::clone(&shared), weight, life, policy)
                });
                let insert = || entry.is_some_and(|entry| self.inner.l1.insert(key, entry));
                let (stored, held) = leader.finish_held(Arc::clone(&shared), insert);
                if stored == Some(true) {
                    self.stored(site);
                }
                // The shared tier is filled even when an invalidation covered
                // the flight (then nothing was stored in process): its fill
                // checks the generation the leader read before its origin
                // call against every invalidation that reached Redis, and one
                // that did not (Redis away) keeps the breaker open, so no fill
                // goes out until it is replayed. What covered the flight may
                // also be no invalidation at all: the backplane emptying the
                // in-process tier as it subscribes.
                let fill = Some((shared, life));
                Settled {
                    out: O::from_value(v),
                    fill,
                    _held: Some(held),
                }
            }
            Split::Share(v) => {
                let _ = leader.finish(Arc::new(v.clone()), || false);
                Settled {
                    out: O::from_value(v),
                    fill: None,
                    _held: None,
                }
            }
            Split::Fail(out, error) => {
                leader.fail(error);
                Settled {
                    out,
                    fill: None,
                    _held: None,
                }
            }
        }
    }

    /// The weight of a value about to be stored. The weigher runs the
    /// value's `Serialize`, user code: marked as this flight's leader (a
    /// `Serialize` that asks for this key panics instead of waiting on
    /// itself), and a panic of it costs only the measure (the value weighs
    /// its inline size, and an error is counted), never the caller's value.
    fn weigh<V: Any + Send + Sync>(
        &self,
        leader: &Leader<'_>,
        key: &str,
        value: &V,
        policy: &Policy,
    ) -> u32 {
        let Some(weigher) = policy.weigher else {
            return Entry::weight_of(key, value, None);
        };
        let measured = leader.lead(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Entry::weight_of(key, value, Some(weigher))
            }))
        });
        measured.unwrap_or_else(|_| {
            self.inner.counters.add(Counter::Error, 1);
            Entry::weight_of(key, value, None)
        })
    }

    fn store(&self, key: &str, entry: Entry, site: &Site) {
        if self.inner.l1.insert(key, entry) {
            self.stored(site);
        }
    }

    /// Counts a stored value and tells the hooks (never under a lock: a
    /// hook may call back into the cache).
    fn stored(&self, site: &Site) {
        self.count(site, Counter::Set, 1);
        self.emit(Event::Set {
            template: site.template,
        });
    }

    /// How long a value stored now under `policy` lives.
    fn life(&self, policy: &Policy) -> Life {
        let ttl = policy.ttl.unwrap_or(self.inner.config.default_ttl);
        let (stale, keep) = self.stale_and_keep(policy);
        Life {
            ttl: jittered(ttl, policy.jitter_percent),
            stale,
            keep,
        }
    }

    /// How long past its freshness a value of `policy` is served while it
    /// refreshes (`stale`), and kept to answer a failing origin.
    fn stale_and_keep(&self, policy: &Policy) -> (Duration, Duration) {
        let stale = policy.stale.unwrap_or(self.inner.config.stale_ttl);
        (
            stale,
            policy.fail_safe.map_or(stale, |keep| keep.max(stale)),
        )
    }

    /// The in-process entry of a value stored now for `life`.
    fn entry(&self, value: AnyValue, weight: u32, life: Life, policy: &Policy) -> Entry {
        let Life { ttl, stale, keep } = life;
        let l1_ttl = policy.l1_ttl.map_or(ttl, |l1| l1.min(ttl));
        let now: Ticks = self.inner.clock.now();
        let fresh_until = now.saturating_add(clock::ticks(l1_ttl));
        let after_ttl = |span: Duration| {
            if span.is_zero() {
                fresh_until
            } else {
                now.saturating_add(clock::ticks(ttl.saturating_add(span)))
            }
        };
        let stale_until = after_ttl(stale);
        Entry {
            value,
            fresh_until,
            stale_until,
            weight: weight.max(self.inner.min_weight),
            kept_secs: Entry::kept_secs(stale_until, after_ttl(keep)),
        }
    }

    fn remove_key(&self, key: &str) -> bool {
        self.inner.flights.invalidate_key(key);
        let removed = self.inner.l1.remove(key);
        if removed {
            self.inner.counters.add(Counter::Delete, 1);
        }
        removed
    }

    /// Applies `pattern` to this cache and its named caches.
    pub(crate) fn invalidate_now(&self, pattern: &Pattern) -> u64 {
        let removed = match pattern.exact_key() {
            Some(key) => u64::from(self.remove_key(key)),
            None => {
                self.inner.flights.invalidate_matching(pattern);
                let n = self.inner.l1.remove_matching(pattern);
                self.inner.counters.add(Counter::Delete, n);
                n
            }
        };
        self.emit(Event::Invalidate {
            pattern: pattern.as_str(),
            removed,
        });
        removed
            + self
                .children()
                .iter()
                .map(|c| c.invalidate_now(pattern))
                .sum::<u64>()
    }
}

/// `ttl` shortened by a random share of up to `percent`%, so that keys
/// filled together do not expire together.
fn jittered(ttl: Duration, percent: u8) -> Duration {
    if percent == 0 {
        return ttl;
    }
    let max_cut = ttl.as_nanos() * u128::from(percent.min(100)) / 100;
    let cut = fastrand::u128(0..=max_cut);
    ttl - Duration::from_nanos(u64::try_from(cut).unwrap_or(u64::MAX))
}

static GLOBAL: OnceLock<Cache> = OnceLock::new();

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("enabled", &self.inner.config.enabled)
            .field("backend", &self.inner.config.backend)
            .field("engine", &self.inner.config.engine)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Cache`]; start from [`Cache::builder`].
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::{Cache, Engine, NamespaceConfig};
///
/// let cache = Cache::builder()
///     .default_ttl(Duration::from_secs(120))
///     .l1_max_bytes(32 << 20)
///     .engine(Engine::Moka)
///     .namespace("lookups", NamespaceConfig::new().default_ttl(Duration::from_secs(3600)))
///     .build()
///     .unwrap();
/// assert_eq!(cache.named("lookups").config().default_ttl, Duration::from_secs(3600));
/// ```
#[must_use]
pub struct CacheBuilder {
    config: Config,
    name: Box<str>,
    hooks: Option<Arc<dyn Hooks>>,
    clock: Clock,
    /// Store settings given in code, over those of the configuration.
    #[cfg(feature = "redis")]
    redis: Option<crate::l2::redis::RedisL2Builder>,
    /// The parent's shared tier, for a named cache.
    #[cfg(feature = "redis")]
    shared: Option<Arc<Shared>>,
}

impl CacheBuilder {
    fn new() -> Self {
        Self::from_config(Config::default())
    }

    /// Starts from `config` (for example [`Config::from_env`]).
    ///
    /// ```
    /// use cache_runtime::{CacheBuilder, Config};
    /// let config = Config::from_lookup(|name| (name == "CACHE_DEFAULT_TTL").then(|| "5m".into())).unwrap();
    /// let cache = CacheBuilder::from_config(config).build().unwrap();
    /// assert_eq!(cache.config().default_ttl.as_secs(), 300);
    /// ```
    pub fn from_config(config: Config) -> Self {
        CacheBuilder {
            config,
            name: DEFAULT_NAME.into(),
            hooks: None,
            clock: Clock::default(),
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// `false` makes every cached function call its origin.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().enabled(false).build().unwrap();
    /// assert!(!cache.is_enabled());
    /// ```
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// TTL of functions that give none.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().default_ttl(Duration::from_secs(30)).build().unwrap();
    /// assert_eq!(cache.config().default_ttl, Duration::from_secs(30));
    /// ```
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }

    /// Stale window of functions that give none.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().stale_ttl(Duration::from_secs(300)).build().unwrap();
    /// assert_eq!(cache.config().stale_ttl, Duration::from_secs(300));
    /// ```
    pub fn stale_ttl(mut self, stale: Duration) -> Self {
        self.config.stale_ttl = stale;
        self
    }

    /// Byte bound of the in-process tier.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().l1_max_bytes(16 << 20).build().unwrap();
    /// assert_eq!(cache.config().l1_max_bytes, 16 << 20);
    /// ```
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.config.l1_max_bytes = bytes;
        self
    }

    /// Entry bound of the in-process tier, on top of the byte bound.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().l1_max_entries(10_000).build().unwrap();
    /// assert_eq!(cache.config().l1_max_entries, 10_000);
    /// ```
    pub fn l1_max_entries(mut self, entries: u64) -> Self {
        self.config.l1_max_entries = entries;
        self
    }

    /// The in-process engine.
    ///
    /// ```
    /// use cache_runtime::{Cache, Engine};
    /// let cache = Cache::builder().engine(Engine::Moka).build().unwrap();
    /// assert_eq!(cache.config().engine, Engine::Moka);
    /// ```
    pub fn engine(mut self, engine: Engine) -> Self {
        self.config.engine = engine;
        self
    }

    /// Settings of the named cache `name`.
    ///
    /// ```
    /// use cache_runtime::{Cache, NamespaceConfig};
    /// let cache = Cache::builder()
    ///     .namespace("reports", NamespaceConfig::new().enabled(false))
    ///     .build()
    ///     .unwrap();
    /// assert!(!cache.named("reports").is_enabled());
    /// ```
    pub fn namespace(mut self, name: &str, settings: NamespaceConfig) -> Self {
        self.config
            .namespaces
            .insert(name.to_ascii_lowercase().replace('_', "-"), settings);
        self
    }

    /// Observer of every event.
    ///
    /// ```
    /// use cache_runtime::{Cache, Event, Hooks};
    /// struct PrintSets;
    /// impl Hooks for PrintSets {
    ///     fn on_event(&self, event: &Event<'_>) {
    ///         if let Event::Set { template, .. } = event {
    ///             println!("stored a value of {template}");
    ///         }
    ///     }
    /// }
    /// let cache = Cache::builder().hooks(PrintSets).build().unwrap();
    /// ```
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// A manual clock, for tests of expiry.
    ///
    /// ```
    /// use cache_runtime::{testing::ManualClock, Cache};
    /// let clock = ManualClock::new();
    /// let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    /// ```
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// Where values live: in process (`Memory`, the default), in Redis
    /// (`Redis`), or in process in front of Redis (`Hybrid`). The Redis
    /// backends need [`redis_url`](CacheBuilder::redis_url) and the `redis`
    /// feature.
    ///
    /// ```
    /// use cache_runtime::{Backend, Cache};
    /// let builder = Cache::builder().backend(Backend::Hybrid);
    /// assert!(builder.build().is_err()); // no REDIS_URL
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.config.backend = backend;
        self
    }

    /// The Redis of the `redis` and `hybrid` backends:
    /// `redis://[:password@]host:port[/db]`.
    ///
    /// ```
    /// use cache_runtime::{Backend, Cache};
    /// let builder = Cache::builder().backend(Backend::Hybrid).redis_url("redis://127.0.0.1:6379/0");
    /// # drop(builder);
    /// ```
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = Some(url.into());
        self
    }

    /// This application's namespace in Redis (default `cache`): its keys
    /// are `<prefix>:<key>`, and `clear` removes only those. ASCII, without
    /// `* ? [ ] \ :` or spaces.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().key_prefix("orders-svc").build().unwrap();
    /// assert_eq!(cache.config().key_prefix, "orders-svc");
    /// assert!(cache_runtime::Cache::builder().key_prefix("a:b").build().is_err());
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// Writes values longer than `bytes` (encoded) to Redis LZ4-compressed.
    /// Needs the `compression` feature: without it, `build` fails.
    ///
    /// ```
    /// let built = cache_runtime::Cache::builder().l2_compress_above(16 << 10).build();
    /// assert_eq!(built.is_ok(), cfg!(feature = "compression"));
    /// ```
    pub fn l2_compress_above(mut self, bytes: u64) -> Self {
        self.config.l2_compress_above = Some(bytes);
        self
    }

    /// Whether to subscribe to the other instances' invalidations (default
    /// `true`). With it, an invalidation on any instance removes the key
    /// from every instance's in-process tier, and an instance serves from
    /// its in-process tier only while subscribed (after a gap it empties it
    /// first). Turn it off only when no other instance shares the key
    /// prefix: the in-process tier is then trusted as in the `memory`
    /// backend.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().backplane(false).build().unwrap();
    /// assert!(!cache.config().backplane);
    /// ```
    pub fn backplane(mut self, on: bool) -> Self {
        self.config.backplane = on;
        self
    }

    /// The circuit breaker around Redis: it opens after `failures`
    /// consecutive failed calls (or at once when an invalidation fails),
    /// and probes Redis every `cooldown` until it answers and the
    /// invalidations queued meanwhile went through (default: 5, 1 s). While
    /// it is not closed no call waits on Redis: reads are misses, fills are
    /// skipped, invalidations are queued.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder()
    ///     .breaker(3, Duration::from_millis(500))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.config().breaker_failures, 3);
    /// ```
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.config.breaker_failures = failures;
        self.config.breaker_cooldown = cooldown;
        self
    }

    /// Single flight across instances for every function whose values
    /// reach Redis, as `#[cached(lock = true)]` does for one (default:
    /// off). A cold key then costs one origin call in the whole fleet: the
    /// instance that takes the key's lock in Redis calls the origin, the
    /// others wait for its value in Redis. The holder renews its lock while
    /// its call runs; `lock_ttl` (default 10 s) is how soon a holder that
    /// died frees it, and callers wait at most ten times that.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder()
    ///     .lock(true)
    ///     .lock_ttl(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// assert!(cache.config().lock);
    /// ```
    pub fn lock(mut self, on: bool) -> Self {
        self.config.lock = on;
        self
    }

    /// The lifetime of a distributed lock, renewed while its holder's call
    /// runs; see [`CacheBuilder::lock`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().lock_ttl(Duration::from_secs(3)).build().unwrap();
    /// assert_eq!(cache.config().lock_ttl, Duration::from_secs(3));
    /// ```
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.config.lock_ttl = ttl;
        self
    }

    /// How many invalidations that could not reach Redis are kept for
    /// replay (default 10,000); past this the whole namespace is
    /// invalidated in Redis on recovery instead, and the overflow is
    /// counted in [`Stats::invalidation_queue_overflows`].
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().pending_invalidations(100).build().unwrap();
    /// assert_eq!(cache.config().pending_invalidations, 100);
    /// ```
    pub fn pending_invalidations(mut self, bound: u64) -> Self {
        self.config.pending_invalidations = bound;
        self
    }

    /// The time limit of each Redis command (default 250 ms): past it the
    /// call goes on without Redis.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().redis_timeout(Duration::from_millis(100)).build().unwrap();
    /// assert_eq!(cache.config().redis_timeout, Duration::from_millis(100));
    /// ```
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.config.redis_timeout = timeout;
        self
    }

    /// How values are encoded in Redis (default bincode).
    ///
    /// ```
    /// use cache_runtime::{Cache, Codec};
    /// let cache = Cache::builder().codec(Codec::Json).build().unwrap();
    /// assert_eq!(cache.config().codec, Codec::Json);
    /// ```
    pub fn codec(mut self, codec: crate::Codec) -> Self {
        self.config.codec = codec;
        self
    }

    /// The Redis store with settings of its own (timeouts, SCAN batch
    /// size, longest TTL); its URL and namespace replace `redis_url` and
    /// `key_prefix`. Turns the `memory` backend into `hybrid`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_runtime::{Backend, Cache, RedisL2};
    ///
    /// let store = RedisL2::builder("redis://127.0.0.1:6379/0", "orders-svc")
    ///     .timeout(Duration::from_millis(100));
    /// // Nothing connects until the first call, inside a tokio runtime.
    /// let cache = Cache::builder().redis(store).build().unwrap();
    /// assert_eq!(cache.config().backend, Backend::Hybrid);
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, store: crate::l2::redis::RedisL2Builder) -> Self {
        if self.config.backend == Backend::Memory {
            self.config.backend = Backend::Hybrid;
        }
        self.config.redis_url = Some(store.url().to_owned());
        self.config.key_prefix = store.namespace().to_owned();
        self.redis = Some(store);
        self
    }

    /// Builds the cache. Nothing connects to Redis here: the connection is
    /// made on first use, inside the tokio runtime of the caller, so a
    /// service starts while Redis is down.
    ///
    /// # Errors
    /// Settings that do not fit together (a zero byte bound, a Redis
    /// backend without a URL, a malformed URL or key prefix), or a Redis
    /// backend in a build without the `redis` feature.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert!(cache_runtime::Cache::builder().l1_max_bytes(0).build().is_err());
    /// ```
    pub fn build(self) -> Result<Cache, ConfigError> {
        self.config.validate()?;
        if self.config.backend == Backend::Memory {
            return Ok(self.build_local());
        }
        #[cfg(feature = "redis")]
        {
            let mut this = self;
            let shared = Arc::new(this.shared_tier()?);
            this.shared = Some(Arc::clone(&shared));
            let cache = this.build_local();
            let root: std::sync::Weak<dyn Any + Send + Sync> = Arc::downgrade(&cache.inner) as _;
            let _ = shared.root.set(root);
            Ok(cache)
        }
        #[cfg(not(feature = "redis"))]
        Err(ConfigError::new(
            "CACHE_BACKEND",
            "this build has no Redis support: enable the `redis` feature of cache-runtime, or use memory",
        ))
    }

    #[cfg(feature = "redis")]
    fn shared_tier(&mut self) -> Result<Shared, ConfigError> {
        let config = &self.config;
        let url = config.redis_url.clone().unwrap_or_default();
        let store = self.redis.take().unwrap_or_else(|| {
            crate::l2::redis::RedisL2::builder(url, config.key_prefix.clone())
                .timeout(config.redis_timeout)
        });
        store
            .check()
            .map_err(|e| ConfigError::new("REDIS_URL", e.to_string()))?;
        // validate() bounds the value size to 512 MiB.
        let max_bytes = usize::try_from(config.l2_max_value_bytes).unwrap_or(usize::MAX);
        let mut envelope = crate::Envelope::new(config.codec).max_bytes(max_bytes);
        if let Some(threshold) = config.l2_compress_above {
            envelope = envelope.compress_above(usize::try_from(threshold).unwrap_or(usize::MAX));
        }
        let resilience = crate::shared::Resilience {
            breaker: crate::breaker::Breaker::new(config.breaker_failures, config.breaker_cooldown),
            pending_bound: usize::try_from(config.pending_invalidations).unwrap_or(usize::MAX),
            lock_all: config.lock,
            lock_ttl: config.lock_ttl,
        };
        Ok(Shared::new(
            store,
            envelope,
            config.backend == Backend::Hybrid,
            config.backplane,
            resilience,
        ))
    }

    fn build_local(self) -> Cache {
        let config = self.config;
        let l1 = match config.engine {
            Engine::QuickCache => {
                L1::Quick(QuickL1::new(config.l1_max_bytes, config.l1_max_entries))
            }
            Engine::Moka => L1::Moka(MokaL1::new(config.l1_max_bytes, self.clock.clone())),
        };
        let min_weight = config.l1_max_bytes.div_ceil(config.l1_max_entries.max(1));
        Cache {
            inner: Arc::new(Inner {
                name: self.name,
                sites: Sites::new(),
                min_weight: u32::try_from(min_weight).unwrap_or(u32::MAX),
                config,
                l1,
                flights: Flights::new(),
                counters: Counters::new(),
                clock: self.clock,
                hooks: self.hooks,
                children: RwLock::new(HashMap::new()),
                #[cfg(feature = "redis")]
                in_sync: self
                    .shared
                    .as_ref()
                    .filter(|s| s.subscribe)
                    .map(|s| Arc::clone(&s.in_sync)),
                #[cfg(feature = "redis")]
                shared: self.shared,
            }),
        }
    }
}
