//! The cache handle: lookups, single-flight loads, invalidation.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::clock::{self, Clock, ManualClock, Ticks};
use crate::config::{Backend, Config, ConfigError, Engine, NamespaceConfig};
use crate::entry::{AnyValue, Entry, Life, Weigher};
use crate::flight::{Flight, Flights, Held, Join, Joined, Leader};
use crate::health::{Health, HealthStatus};
use crate::hooks::{Event, Hooks, Tier};
use crate::invalidation::{Invalidation, SharedInvalidation};
use crate::l1::{L1Engine, MokaL1, QuickL1, L1};
use crate::outcome::{Outcome, Split};
use crate::pattern::{Pattern, PatternError};
use crate::scope;
use crate::site::{Site, Sites};
use crate::stats::{Counter, Counters, Stats};

mod batch;
mod builder;
mod engine;
mod local;
#[cfg(feature = "redis")]
mod ready;
#[cfg(feature = "redis")]
mod shared_tier;
mod tagging;
mod warm;
#[cfg(feature = "redis")]
use crate::shared::{SharedTier, ValueCodec};
#[cfg(feature = "redis")]
use shared_tier::Led;

pub use builder::CacheBuilder;
pub use engine::TierChoice;
pub(crate) use engine::{Lookup, Policy, Route};
pub use local::{Local, Shareable};
pub(crate) use warm::Warmer;
pub use warm::{WarmOptions, WarmReport, WarmerError, WarmerHealth};

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
    shared: Option<Arc<SharedTier>>,
    /// The root of the named caches (itself for the root): the cache whose
    /// in-process tier an invalidation through the shared tier reaches on
    /// every instance.
    root: std::sync::Weak<Inner>,
    /// The warmers registered on this cache.
    warmers: parking_lot::Mutex<Vec<Arc<Warmer>>>,
    /// The tags invalidated in process, shared with the named caches.
    tag_stamps: Arc<crate::tags::Stamps>,
}

impl Inner {
    fn emit(&self, event: Event<'_>) {
        #[cfg(feature = "tracing")]
        crate::trace::event(&self.name, &event);
        if let Some(hooks) = &self.hooks {
            hooks.on_cache_event(&self.name, &event);
        }
    }
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
                builder.root = Some(self.inner.root.clone());
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

    /// The fresh value of `key`, if it holds one of type `V`: from the
    /// in-process tier, else from the shared tier (Redis, under the `redis`
    /// and `hybrid` backends), whichever instance stored it. A value found
    /// in Redis is kept in process for the rest of its life (`hybrid`).
    ///
    /// `V` is serde, so that what one instance stores another reads; for a
    /// value that cannot be encoded, keep it in this process explicitly
    /// with [`Cache::local`].
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
    pub async fn get<V: Shareable>(&self, key: &str) -> Option<V> {
        self.get_on(key, self.shared_route::<V>()).await
    }

    /// Stores `value` under `key` for `ttl`, in both tiers under `hybrid`
    /// (in Redis only under `redis`): every instance reads it from then
    /// on, and the other instances drop the copy they kept in process. A
    /// load of `key` running meanwhile (here or on another instance) does
    /// not overwrite it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.set("rate:EUR", 1.08f64, Duration::from_secs(300)).await;
    /// assert_eq!(cache.get::<f64>("rate:EUR").await, Some(1.08));
    /// # });
    /// ```
    pub async fn set<V: Shareable>(&self, key: &str, value: V, ttl: Duration) {
        self.set_on(key, value, ttl, self.shared_route::<V>()).await;
    }

    /// The fresh value of each of `keys`, in order, as [`Cache::get`]
    /// reads one: from process, then the keys it misses from Redis in one
    /// round trip (one `MGET` per cluster slot group), with the same
    /// coherence checks. A key twice is read once.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.set("user:1", "Ada".to_string(), Duration::from_secs(60)).await;
    /// let found = cache.get_many::<String, _>(["user:1", "user:2"]).await;
    /// assert_eq!(found, [Some("Ada".to_string()), None]);
    /// # });
    /// ```
    pub async fn get_many<V, K>(&self, keys: impl IntoIterator<Item = K>) -> Vec<Option<V>>
    where
        V: Shareable,
        K: AsRef<str>,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let (unique, at) = distinct(&keys);
        let values = self
            .get_many_on::<V>(&unique, self.shared_route::<V>())
            .await;
        at.into_iter().map(|at| values[at].clone()).collect()
    }

    /// Stores every `(key, value)` of `entries` for `ttl`, as
    /// [`Cache::set`] stores one, the writes to Redis sent together
    /// (pipelined on one connection) instead of one after another; returns
    /// how many it stored.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let rates = [("rate:EUR", 1.08f64), ("rate:GBP", 1.27)];
    /// assert_eq!(cache.set_many(rates, Duration::from_secs(300)).await, 2);
    /// assert_eq!(cache.get::<f64>("rate:GBP").await, Some(1.27));
    /// # });
    /// ```
    pub async fn set_many<K, V, I>(&self, entries: I, ttl: Duration) -> u64
    where
        K: AsRef<str>,
        V: Shareable,
        I: IntoIterator<Item = (K, V)>,
    {
        self.set_many_on(entries, ttl, self.shared_route::<V>())
            .await
    }

    /// The fresh value of `key`, or the value `init` computes, stored for
    /// `ttl`, through both tiers as [`Cache::get`] and [`Cache::set`].
    /// Concurrent calls on one key run `init` once in a process (see
    /// "Concurrent calls on one key" above), and once across the instances
    /// with [`CacheBuilder::lock`]: a value another instance stored is read
    /// from Redis, not computed again.
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
        V: Shareable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let route = self.shared_route::<V>();
        self.get_or_insert_on(key, ttl, route, init).await
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
        V: Shareable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let route = self.shared_route::<V>();
        self.try_get_or_insert_on(key, ttl, route, init).await
    }

    /// Stores every `(key, value)` of `entries` for `ttl` through both
    /// tiers, as [`Cache::set`], for example at start-up from a list of
    /// hot keys; returns how many it stored. Under `hybrid`, what is warmed
    /// before this instance has subscribed to the others' invalidations is
    /// in Redis, so the first calls find it there.
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
        V: Shareable,
        I: IntoIterator<Item = (K, V)>,
    {
        let route = self.shared_route::<V>();
        self.warm_on(entries, ttl, route).await
    }

    /// The in-process tier of this cache alone, for values that cannot go
    /// to Redis (not serde: a handle, a compiled template, an `Rc`-free
    /// but unserializable type) or should not: the same methods as the
    /// handle, which never reach the shared tier. Invalidations still
    /// reach these values, from this instance and from the others.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// struct Compiled(Vec<u8>); // not serde
    ///
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let local = cache.local();
    /// local.set("tpl:home", Arc::new(Compiled(vec![1])), Duration::from_secs(60)).await;
    /// assert!(local.get::<Arc<Compiled>>("tpl:home").await.is_some());
    /// assert_eq!(cache.invalidate("tpl:*").await.unwrap(), 1);
    /// # });
    /// ```
    pub fn local(&self) -> Local<'_> {
        Local { cache: self }
    }

    /// Removes `key` from both tiers and from every instance's in-process
    /// tier; `true` if it held a value in either tier. A load of `key`
    /// that is running does not store its value afterwards.
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
        if !self.fits(key, self.inner.sites.handle()) {
            return false; // nothing is ever stored under it
        }
        // The pattern that names this key alone takes the path of every
        // invalidation (this process, Redis, this process again, and the
        // other instances).
        let exact = Pattern::parse(&Pattern::escape(key)).expect("an escaped key parses");
        self.invalidate_everywhere(&exact).await.removed > 0
    }

    /// Whether `key` holds a fresh value (of any type), in process or in
    /// the shared tier.
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
        if !self.fits(key, self.inner.sites.handle()) {
            return false;
        }
        if self.in_sync() {
            let now = self.inner.clock.now();
            if self.read_l1(key, |e| now < e.fresh_until) == Some(true) {
                return true;
            }
        }
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            return shared.exists(&*self.inner, key).await;
        }
        false
    }

    /// Removes every key `pattern` matches (Redis glob syntax, see
    /// [`Pattern`]) from this cache and its named caches, in both tiers and
    /// on every instance, and returns how many keys it removed (see
    /// [`Invalidation::removed`]: a key held in both tiers counts once; a
    /// prefix invalidated in Redis in one write, or an invalidation queued
    /// while Redis is away, counts what this process removed:
    /// [`Cache::invalidate_report`] says which). Loads of matching keys that are running do not
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
        Ok(self.invalidate_report(pattern).await?.removed)
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
        if let Some(shared) = &self.inner.shared {
            let scope = self.local_scope();
            let local = scope.invalidate_now(pattern);
            let done = shared.invalidate(&*self.inner, pattern).await;
            return Invalidation::new(local + scope.invalidate_now(pattern), done);
        }
        Invalidation::new(
            self.invalidate_now(pattern),
            SharedInvalidation::NotConfigured,
        )
    }

    /// As [`Cache::invalidate_everywhere`], from a plain `fn`.
    pub(crate) fn invalidate_everywhere_blocking(&self, pattern: &Pattern) -> Invalidation {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            let scope = self.local_scope();
            let local = scope.invalidate_now(pattern);
            let done = shared.invalidate_blocking(&*self.inner, pattern);
            return Invalidation::new(local + scope.invalidate_now(pattern), done);
        }
        Invalidation::new(
            self.invalidate_now(pattern),
            SharedInvalidation::NotConfigured,
        )
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
        if let Some(shared) = &self.inner.shared {
            // The shared tier's namespace is the root's and every named
            // cache's: so is what this process empties.
            let scope = self.local_scope();
            scope.clear_local();
            shared.clear(&*self.inner).await;
            scope.clear_local();
            return;
        }
        self.clear_local();
    }

    pub(crate) fn clear_local(&self) {
        // Running loads first, as for any invalidation: a load that finished
        // between the two steps would otherwise store into the emptied tier.
        self.inner.flights.invalidate_all();
        self.inner.l1.clear();
        for child in self.children() {
            child.clear_local();
        }
    }

    /// Whether this cache's in-process tier is in step with the other
    /// instances: subscribed to their invalidations, and the subscription
    /// shown alive within the stale bound ([`Config::stale_bound`](crate::Config::stale_bound),
    /// 250 ms by default; always `true` for a `memory`
    /// cache, or with the backplane turned off). While it is not, nothing
    /// is served from the in-process tier. A readiness or health check can
    /// report it.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert!(cache.in_sync());
    /// ```
    #[inline]
    pub fn in_sync(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            return shared.in_sync();
        }
        true
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
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            return shared.wait_in_sync(timeout).await;
        }
        let _ = timeout;
        true
    }

    /// The cache whose in-process tier an invalidation through the shared
    /// tier reaches on every other instance: the root of the named caches.
    /// Invalidating here from it too keeps this process like the others.
    #[cfg(feature = "redis")]
    fn local_scope(&self) -> Cache {
        match self.inner.root.upgrade() {
            Some(inner) => Cache { inner },
            None => self.clone(),
        }
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
            refreshes_ahead: sum(Counter::RefreshAhead),
            warmed: sum(Counter::Warmed),
            tag_invalidations: sum(Counter::TagInvalidation),
            local_only_functions: self.local_only_templates().len() as u64,
            keys_too_long: sites
                .iter()
                .map(|site| {
                    site.keys_too_long
                        .load(std::sync::atomic::Ordering::Relaxed)
                })
                .sum(),
            ..self.shared_stats()
        }
    }

    /// The shared tier's part of [`Cache::stats`].
    fn shared_stats(&self) -> Stats {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            return shared.stats();
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
            redis_master: None,
            redis_replicas: None,
            breaker: None,
            in_sync: self.in_sync(),
            pending_invalidations: 0,
            local_only: self.local_only_templates(),
            corrupt_seen: 0,
            last_corrupt: None,
            warmers: self.warmers_health(),
        };
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            shared.health(&*self.inner, &mut health).await;
        }
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

    /// The templates of this cache and its named caches whose values stay
    /// in process for want of serde (see [`Health::local_only`]).
    fn local_only_templates(&self) -> Vec<String> {
        let mut templates: Vec<String> = std::iter::once(self.clone())
            .chain(self.children())
            .flat_map(|cache| cache.sites())
            .filter(|site| site.local_only.load(std::sync::atomic::Ordering::Relaxed))
            .map(|site| site.template.to_owned())
            .collect();
        templates.sort();
        templates.dedup();
        templates
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
    /// | `cache_stale_served_total`, `cache_fail_safe_served_total`, `cache_origin_timeouts_total`, `cache_refreshes_ahead_total`, `cache_l2_misses_total` | cache, template | as in [`Stats`] |
    /// | `cache_deletes_total` | cache | keys removed |
    /// | `cache_tag_invalidations_total` | cache | tags invalidated in process |
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
        self.inner.emit(event);
    }
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

/// `keys` without repeats, and where each of `keys` is among them.
fn distinct<'k>(keys: &[&'k str]) -> (Vec<&'k str>, Vec<usize>) {
    let mut unique: Vec<&str> = Vec::with_capacity(keys.len());
    let mut index: HashMap<&str, usize, foldhash::fast::RandomState> = HashMap::default();
    let at = keys
        .iter()
        .map(|&key| {
            *index.entry(key).or_insert_with(|| {
                unique.push(key);
                unique.len() - 1
            })
        })
        .collect();
    (unique, at)
}
